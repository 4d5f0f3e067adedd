"""sercore.ops: values and gradients equal to the lax reference; models train the same with them."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax

from sercore import ops
from sercore.errors import ConfigError

DN = ("NHWC", "HWIO", "NHWC")
RTOL, ATOL = 1e-5, 1e-4


def _ref_conv(x, w, padding):
    return lax.conv_general_dilated(x, w, (1, 1), padding.upper(), dimension_numbers=DN)


def _ref_pool(x, window, padding):
    dims = (1, *window, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, dims, padding.upper())


def _grads(f, *args):
    # A non-uniform cotangent so every output position carries a different weight.
    def loss(*a):
        y = f(*a)
        return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))
    return jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))(*args)   # one compile, not one per op


@pytest.mark.parametrize("shape,kernel,padding", [
    ((2, 16, 25, 1), (3, 3), "same"),      # first LFLB: one input channel, odd width
    ((2, 7, 10, 3), (5, 3), "same"),
    ((1, 8, 11, 4), (3, 3), "valid"),
    ((2, 6, 9, 3), (2, 4), "same"),        # even kernels: extra padding at the end, as XLA's SAME
    # wide inputs (kh * kw * c_in > 64): the filter gradient's grouped product, 1, 2 and 4 groups
    ((3, 6, 9, 8), (3, 3), "same"),
    ((6, 5, 7, 16), (2, 3), "valid"),
    ((8, 4, 10, 12), (3, 2), "same"),
])
def test_conv2d_matches_lax(shape, kernel, padding):
    kx, kw, kb = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (*kernel, shape[-1], 6)) * 0.3
    b = jax.random.normal(kb, (6,))
    np.testing.assert_allclose(ops.conv2d(x, w, b, padding=padding), _ref_conv(x, w, padding) + b,
                               rtol=RTOL, atol=ATOL)
    got = _grads(lambda x, w, b: ops.conv2d(x, w, b, padding=padding), x, w, b)
    want = _grads(lambda x, w, b: _ref_conv(x, w, padding) + b, x, w, b)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,c_out,padding", [
    ((2, 16, 25, 16), 24, "same"),     # odd width: the last tile column hangs over the edge
    ((2, 9, 11, 20), 16, "valid"),
    ((1, 5, 6, 16), 32, "same"),       # fewer rows than one tile's input
    ((2, 1, 3, 16), 16, "same"),       # one row (the last LFLB's map)
    ((3, 8, 8, 17), 16, "same"),       # whole tiles
])
def test_winograd_conv_matches_lax(shape, c_out, padding):
    # 3 x 3 kernels with >= 16 channels in and out run as Winograd F(4x4, 3x3) on CPU: values and
    # both gradients must match the direct convolution to float32 rounding (about 1e-5 of the
    # largest value at worst), and the switch must really select it.
    assert ops._winograd_applies((3, 3, shape[-1], c_out)) == (jax.default_backend() == "cpu")
    kx, kw = jax.random.split(jax.random.key(14))
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (3, 3, shape[-1], c_out)) * 0.2
    y, ref = ops.conv2d(x, w, padding=padding), _ref_conv(x, w, padding)
    assert y.shape == ref.shape
    np.testing.assert_array_less(np.abs(y - ref).max(), 3e-5 * np.abs(ref).max())
    got = _grads(lambda x, w: ops.conv2d(x, w, padding=padding), x, w)
    want = _grads(lambda x, w: _ref_conv(x, w, padding), x, w)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_array_less(np.abs(g - r).max(), 3e-5 * np.abs(r).max())
    # The direct path through the same op agrees as well (the switch the bench uses to count FLOPs).
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ops, "WINOGRAD", False)
        assert not ops._winograd_applies((3, 3, shape[-1], c_out))
        direct = ops.conv2d(x, w, padding=padding)
    np.testing.assert_array_less(np.abs(y - direct).max(), 3e-5 * np.abs(direct).max())


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 9, 11, 16), (3, 3), 2, "same"),      # odd sizes: XLA puts the 'same' padding on both sides
    ((2, 8, 8, 16), (3, 3), 2, "same"),       # even sizes: one row/column at the end only
    ((2, 7, 10, 3), (3, 3), 2, "valid"),
    ((1, 8, 9, 4), (2, 3), (2, 3), "same"),
    ((2, 9, 10, 8), (1, 1), 2, "same"),       # the ResNet's projection shortcut: subsampled, then 1 x 1
    ((2, 8, 6, 8), (1, 1), (2, 1), "valid"),
])
def test_strided_conv2d_matches_lax(shape, kernel, strides, padding):
    kx, kw, kb = jax.random.split(jax.random.key(21), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (*kernel, shape[-1], 20)) * 0.2
    b = jax.random.normal(kb, (20,))
    s = (strides, strides) if isinstance(strides, int) else strides

    def ref(x, w, b):
        return lax.conv_general_dilated(x, w, s, padding.upper(), dimension_numbers=DN) + b

    def new(x, w, b):
        return ops.conv2d(x, w, b, padding=padding, strides=strides)

    np.testing.assert_allclose(new(x, w, b), ref(x, w, b), rtol=RTOL, atol=ATOL)
    for g, r in zip(_grads(new, x, w, b), _grads(ref, x, w, b)):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


def test_winograd_conv_under_vmap_and_jit():
    x = jax.random.normal(jax.random.key(15), (2, 3, 6, 9, 16))     # (folds, B, H, W, C)
    w = jax.random.normal(jax.random.key(16), (2, 3, 3, 16, 16)) * 0.2
    f = lambda x, w: jnp.sum(jnp.sin(ops.conv2d(x, w)))
    g = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1))))(x, w)
    r = jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(_ref_conv(x, w, "same"))), argnums=(0, 1)))(x, w)
    for a, b in zip(g, r):
        np.testing.assert_array_less(np.abs(a - b).max(), 3e-5 * np.abs(b).max())


def test_elu_matches_expm1_to_float32_rounding():
    # Both sides of the switch from the Taylor series to exp(z) - 1 at -1/8, tiny and large |z|.
    z = np.concatenate([-np.logspace(-12, 2, 20001), np.linspace(-20, 5, 20001), [0.0, -0.125, 0.125]])
    z = z.astype(np.float32)
    want = np.where(z > 0, z, np.expm1(z.astype(np.float64)))
    got = np.asarray(jax.jit(ops.elu)(jnp.asarray(z)), np.float64)
    np.testing.assert_allclose(got, want, rtol=5e-7, atol=0)
    np.testing.assert_allclose(got, np.asarray(jax.nn.elu(jnp.asarray(z))), rtol=1e-6, atol=0)
    g = jax.grad(lambda z: ops.elu(z).sum())(jnp.asarray(z))
    np.testing.assert_allclose(g, np.where(z > 0, 1.0, np.exp(z.astype(np.float64))), rtol=1e-6, atol=1e-30)


def test_batch_chunk_takes_a_divisor_of_the_batch_for_large_maps_on_cpu_only(monkeypatch):
    big = (64, 126, 64)                                    # zhao2d's second block: 2 MB per example
    assert ops.batch_chunk((32, *big)) == 4
    assert ops.batch_chunk((6, *big)) == 3                 # the largest divisor up to CHUNK
    assert ops.batch_chunk((4, *big)) == 2                 # a chunk is less than the batch
    assert ops.batch_chunk((7, *big)) == ops.batch_chunk((1, *big)) == 0   # no divisor: whole batch
    assert ops.batch_chunk((32, 16, 32, 64)) == 0          # 4 x 128 KiB: small enough for cache
    monkeypatch.setattr(ops, "CHUNK", 0)
    assert ops.batch_chunk((32, *big)) == 0
    monkeypatch.setattr(ops, "CHUNK", 4)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert ops.batch_chunk((32, *big)) == 0


@pytest.mark.parametrize("shape,padding", [
    ((6, 9, 11, 16), "same"),          # 2 chunks of 3; dx written over dy's buffer
    ((8, 10, 7, 16), "valid"),         # 2 chunks of 4; dx larger than dy: stacked
])
def test_winograd_conv_in_chunks_matches_lax(monkeypatch, shape, padding):
    # Large maps run their Winograd convolution a few examples at a time (forward pass, and the
    # backward pass with the tiles recomputed); here a small map is made to.
    monkeypatch.setattr(ops, "CHUNK_MIN_BYTES", 0)
    assert ops.batch_chunk(shape) in (3, 4)
    kx, kw = jax.random.split(jax.random.key(17))
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (3, 3, shape[-1], 24)) * 0.2
    f = lambda x, w: ops.conv2d(x, w, padding=padding)        # noqa: E731
    got_y, got = f(x, w), _grads(f, x, w)
    want_y, want = _ref_conv(x, w, padding), _grads(lambda x, w: _ref_conv(x, w, padding), x, w)
    np.testing.assert_array_less(np.abs(got_y - want_y).max(), 3e-5 * np.abs(want_y).max())
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_array_less(np.abs(g - r).max(), 3e-5 * np.abs(r).max())
    # Under vmap (seeds or folds trained together) the chunks are those of each model's batch.
    xs, ws = jnp.stack([x, -x]), jnp.stack([w, 0.5 * w])
    loss = lambda x, w: jnp.sum(jnp.sin(f(x, w)))          # noqa: E731
    g = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(xs, ws)
    r = jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(_ref_conv(x, w, padding))), argnums=(0, 1)))(xs, ws)
    for a, b in zip(g, r):
        np.testing.assert_array_less(np.abs(a - b).max(), 3e-5 * np.abs(b).max())


@pytest.mark.parametrize("model_name,input_shape", [("zhao2d", (16, 40, 1)), ("zhao1d", (512, 1)),
                                                    ("td_cnn_lstm", (16, 48, 1))])
def test_models_evaluate_the_same_in_batch_chunks(monkeypatch, model_name, input_shape):
    """In evaluation the LFLBs with large maps run a few examples at a time: the same outputs."""
    from sercore import models

    model = models.create(model_name, num_classes=3, input_shape=input_shape, seed=0)
    model.eval()
    x = jax.random.normal(jax.random.key(18), (8, *input_shape))
    whole = nnx.jit(lambda m, x: m(x))(model, x)
    monkeypatch.setattr(ops, "CHUNK_MIN_BYTES", 0)
    chunks, lax_map = [], jax.lax.map
    monkeypatch.setattr(jax.lax, "map", lambda f, xs: chunks.append(xs.shape) or lax_map(f, xs))
    chunked = nnx.jit(lambda m, x: m(x))(model, x)
    assert len(chunks) == 1 and chunks[0][1] == 4                   # examples (windows) 4 at a time
    np.testing.assert_allclose(chunked, whole, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv1d_matches_lax(padding):
    x = jax.random.normal(jax.random.key(1), (2, 50, 3))
    w = jax.random.normal(jax.random.key(2), (3, 3, 4))
    ref = lambda x, w: lax.conv_general_dilated(x, w, (1,), padding.upper(), dimension_numbers=("NWC", "WIO", "NWC"))
    np.testing.assert_allclose(ops.conv1d(x, w, padding=padding), ref(x, w), rtol=RTOL, atol=ATOL)
    for g, r in zip(_grads(lambda x, w: ops.conv1d(x, w, padding=padding), x, w), _grads(ref, x, w)):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,window", [
    ((1, 8, 251, 2), (2, 2)),     # zhao2d block 1: 251 frames -> 126, one pad column
    ((2, 16, 32, 3), (4, 4)),
    ((1, 1, 2, 2), (4, 4)),       # the last block of zhao2d: every window mostly padding
    ((2, 13, 10, 3), (4, 2)),     # poolfix: smaller time pool
])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("strided", [False, True])
def test_max_pool2d_matches_reduce_window(shape, window, padding, strided):
    # Rounded values: many ties per window, where the gradient must go to the first maximum
    # (row-major), as select_and_scatter does.
    x = jnp.round(2 * jax.random.normal(jax.random.key(3), shape)) / 2
    if padding == "valid" and min(shape[1] // window[0], shape[2] // window[1]) == 0:
        pytest.skip("no whole window")
    y = ops.max_pool2d(x, window, padding, strided=strided)
    ref = _ref_pool(x, window, padding)
    assert y.shape == ref.shape == (shape[0], ops.pool_output_size(shape[1], window[0], padding),
                                    ops.pool_output_size(shape[2], window[1], padding), shape[3])
    np.testing.assert_array_equal(y, ref)
    (g,), (r,) = (_grads(lambda x: ops.max_pool2d(x, window, padding, strided=strided), x),
                  _grads(lambda x: _ref_pool(x, window, padding), x))
    np.testing.assert_array_equal(g, r)


def test_max_pool_matches_flax_and_1d():
    x = jax.random.normal(jax.random.key(4), (2, 37, 5))
    np.testing.assert_array_equal(ops.max_pool1d(x, 4), nnx.max_pool(x, (4,), strides=(4,), padding="SAME"))
    np.testing.assert_array_equal(ops.max_pool1d(x, 4, "valid"), nnx.max_pool(x, (4,), strides=(4,), padding="VALID"))
    np.testing.assert_array_equal(ops.max_pool1d(x, 4, strided=True), ops.max_pool1d(x, 4))
    x2 = jnp.round(jax.random.normal(jax.random.key(5), (2, 9, 11, 3)))
    (g,) = _grads(lambda x: ops.max_pool2d(x, 2), x2)
    (r,) = _grads(lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2), padding="SAME"), x2)
    np.testing.assert_array_equal(g, r)


def test_jit_and_vmap():
    x = jax.random.normal(jax.random.key(6), (3, 2, 8, 10, 2))    # (folds, B, H, W, C)
    w = jax.random.normal(jax.random.key(7), (3, 3, 3, 2, 4))
    f = lambda x, w: jnp.sum(ops.max_pool2d(ops.conv2d(x, w), (2, 2)) ** 2)
    g = jax.jit(jax.vmap(jax.grad(f, argnums=1)))(x, w)
    r = jax.vmap(jax.grad(lambda x, w: jnp.sum(_ref_pool(_ref_conv(x, w, "same"), (2, 2), "same") ** 2), argnums=1))(x, w)
    np.testing.assert_allclose(g, r, rtol=RTOL, atol=1e-3)


def _ref_bn_elu_pool(c, conv_bias, scale, bias, window, padding):
    """The unfused chain: conv bias, flax BatchNorm in training mode, ELU, lax.reduce_window max-pool."""
    bn = nnx.BatchNorm(c.shape[-1], momentum=0.9, epsilon=1e-3, use_running_average=False, rngs=nnx.Rngs(0))
    bn.scale[...], bn.bias[...] = scale, bias
    z = bn(c + conv_bias)
    pooled = _ref_pool(jax.nn.elu(z)[:, None] if c.ndim == 3 else jax.nn.elu(z),
                       (1, window) if c.ndim == 3 else window, padding)
    # The batch statistics with flax's formula, differentiable (flax stops their gradient on the way
    # to its running averages; the LFLB test below compares those).
    axes = tuple(range(c.ndim - 1))
    mean = (c + conv_bias).mean(axes)
    var = jnp.maximum(0.0, ((c + conv_bias) ** 2).mean(axes) - mean ** 2)
    return (pooled[:, 0] if c.ndim == 3 else pooled), mean, var


@pytest.mark.parametrize("shape,window,padding", [
    ((4, 8, 251, 3), (2, 2), "same"),     # zhao2d block 1 layout: odd width, one pad column
    ((3, 16, 32, 5), (4, 4), "same"),
    ((2, 13, 10, 4), (4, 2), "valid"),    # poolfix-style window, tail cropped
    ((2, 1, 2, 6), (4, 4), "same"),       # the last block: windows mostly padding
    ((3, 50, 4), 4, "same"),              # 1-D (raw audio LFLB)
])
def test_batch_norm_elu_pool_matches_unfused_chain(shape, window, padding):
    kc, kb, ks, kt = jax.random.split(jax.random.key(11), 4)
    c = jax.random.normal(kc, shape) * 2 + 0.3
    c = c.at[..., 0].set(jnp.round(c[..., 0]))          # a channel with many ties inside windows
    ch = shape[-1]
    conv_bias, scale, bias = jax.random.normal(kb, (ch,)), jax.random.uniform(ks, (ch,)) + 0.5, jax.random.normal(kt, (ch,))
    # The fused op pools c * sign(scale) before normalising: a falling channel (scale < 0) pools the
    # minimum of c; a flat one (scale == 0) has the same values (its scale gradient is checked below).
    scale = scale.at[1].multiply(-1.0)
    flat = 3 if ch > 3 else None
    if flat is not None:
        scale = scale.at[flat].set(0.0)
    got = ops.batch_norm_elu_pool(c, conv_bias, scale, bias, window, padding)
    want = _ref_bn_elu_pool(c, conv_bias, scale, bias, window, padding)
    for g, r in zip(got, want):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)

    def fused(c, conv_bias, scale, bias):
        y, mean, var = ops.batch_norm_elu_pool(c, conv_bias, scale, bias, window, padding)
        return jnp.concatenate([y.ravel(), 0.3 * mean, 0.2 * var])     # the statistics' gradients too

    def plain(c, conv_bias, scale, bias):
        y, mean, var = _ref_bn_elu_pool(c, conv_bias, scale, bias, window, padding)
        return jnp.concatenate([y.ravel(), 0.3 * mean, 0.2 * var])

    got, want = _grads(fused, c, conv_bias, scale, bias), _grads(plain, c, conv_bias, scale, bias)
    if flat is not None:
        # At scale == 0 the output has a kink in scale (every tap ties): the plain chain routes to
        # the first tap, the fused op takes the right-hand derivative, i.e. the window's largest c:
        # sum over windows of dL/dy * ELU'(bias) * xhat(max c). Check that, then drop the entry.
        c4, window4, pads, _ = ops._pool_geometry(c, window, padding)
        tiles = ops._pool_view(c4[..., flat, None], window4, pads)
        c_max = tiles.max(axis=(2, 4))[..., 0]
        y = ops.batch_norm_elu_pool(c, conv_bias, scale, bias, window, padding)[0]
        dy = jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))[..., flat]
        mean, var = _ref_bn_elu_pool(c, conv_bias, scale, bias, window, padding)[1:]
        xhat = (c_max.reshape(dy.shape) + conv_bias[flat] - mean[flat]) / jnp.sqrt(var[flat] + 1e-3)
        elu_grad = jnp.where(bias[flat] > 0, 1.0, jnp.exp(bias[flat]))
        np.testing.assert_allclose(got[2][flat], jnp.sum(dy * elu_grad * xhat), rtol=1e-4, atol=1e-4)
        got = (*got[:2], got[2].at[flat].set(0.0), *got[3:])
        want = (*want[:2], want[2].at[flat].set(0.0), *want[3:])
    for g, r in zip(got, want):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in", [2, 4])   # conv fused into the pool (18 patch entries); conv, then the fused op
def test_lflb_fused_activation_matches_the_plain_chain_in_both_modes(monkeypatch, c_in):
    from sercore.models import blocks

    assert ops.conv_pool_applies((3, 3, c_in, 5)) == (c_in == 2)
    x = jax.random.normal(jax.random.key(12), (4, 12, 21, c_in))
    outs, stats = [], []
    for fused in (True, False):
        monkeypatch.setattr(blocks, "FUSED", fused)
        layer = blocks.LFLB(c_in, 5, pool=(2, 4), rngs=nnx.Rngs(0))
        layer.conv.bias[...] = jnp.arange(5.0)                  # a bias that shifts the running mean
        layer.bn.scale[...] = jnp.array([1.0, -0.5, 2.0, 0.7, -1.3])   # falling channels pool the minimum
        layer.train()
        outs.append(layer(x))
        stats.append((layer.bn.mean[...], layer.bn.var[...]))
        layer.eval()
        outs.append(layer(x))
    for a, b in zip(outs[:2], outs[2:]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    for a, b in zip(stats[0], stats[1]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6)
    assert not np.allclose(stats[0][0], 0)


def _ref_conv_bn_elu_pool(x, w, conv_bias, scale, bias, window, conv_padding, pool_padding):
    """lax's convolution (no bias), then the unfused BatchNorm -> ELU -> reduce_window chain."""
    if x.ndim == 3:
        c = _ref_conv(x[:, None], w[None], conv_padding)[:, 0]
    else:
        c = _ref_conv(x, w, conv_padding)
    return _ref_bn_elu_pool(c, conv_bias, scale, bias, window, pool_padding)


@pytest.mark.parametrize("shape,kernel,window,conv_padding,pool_padding", [
    ((4, 8, 251, 1), (3, 3), (2, 2), "same", "same"),     # zhao2d block 1: odd width, one pad column
    ((3, 9, 13, 3), (3, 3), (2, 4), "same", "valid"),     # log-mel + deltas (27 patch entries), tail cropped
    ((2, 7, 10, 1), (3, 3), (4, 4), "valid", "same"),     # windows mostly padding at the end
    ((2, 6, 9, 2), (2, 2), (2, 1), "same", "same"),       # even kernel, a pool along one axis only
    ((2, 2, 3, 1), (3, 3), (4, 4), "same", "same"),       # one window, larger than the map
    ((3, 50, 1), (3,), 4, "same", "same"),                # 1-D (raw audio LFLB)
])
def test_conv_bn_elu_pool_matches_conv_and_unfused_chain(shape, kernel, window, conv_padding, pool_padding):
    keys = jax.random.split(jax.random.key(21), 5)
    c_in, c_out = shape[-1], 6
    x = jax.random.normal(keys[0], shape) * 2 + 0.5
    x = x.at[:, ::2].set(jnp.round(x[:, ::2]))                 # repeated values: ties inside windows
    w = jax.random.normal(keys[1], (*kernel, c_in, c_out)) * 0.4
    conv_bias, bias = jax.random.normal(keys[2], (c_out,)), jax.random.normal(keys[3], (c_out,))
    scale = (jax.random.uniform(keys[4], (c_out,)) + 0.5).at[1].multiply(-1.0)   # a falling channel
    args = (x, w, conv_bias, scale, bias)
    geometry = (window, conv_padding, pool_padding)
    got = ops.conv_bn_elu_pool(*args, *geometry)
    want = _ref_conv_bn_elu_pool(*args, *geometry)
    for g, r in zip(got, want):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)

    def joined(f):
        def out(*a):
            y, mean, var = f(*a, *geometry)
            return jnp.concatenate([y.ravel(), 0.3 * mean, 0.2 * var])     # the statistics' gradients too
        return out

    # Every input's gradient, the input's included (XLA drops it in a model, where x is data).
    got, want = _grads(joined(ops.conv_bn_elu_pool), *args), _grads(joined(_ref_conv_bn_elu_pool), *args)
    for name, g, r in zip(["x", "w", "conv_bias", "scale", "bias"], got, want):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.abs(r).max()), err_msg=name)
    # Evaluation's forward-only pool of the convolution.
    pooled = ops.conv_max_pool(x, w, *geometry)
    c = _ref_conv(x[:, None], w[None], conv_padding)[:, 0] if x.ndim == 3 else _ref_conv(x, w, conv_padding)
    ref = _ref_pool(c[:, None], (1, window), pool_padding)[:, 0] if x.ndim == 3 else _ref_pool(c, window, pool_padding)
    np.testing.assert_allclose(pooled, ref, rtol=RTOL, atol=ATOL)


def test_conv_bn_elu_pool_statistics_hold_for_inputs_far_from_zero():
    # The statistics come from the patches' Gram matrix, E[c^2] - E[c]^2: without centring, an
    # input with mean 80x its spread (dB values, say) loses digits to cancellation. Compare with
    # float64 NumPy (the op centres the patches, so it is more exact than the plain float32 chain
    # here), and the gradients with the plain chain.
    rng = np.random.default_rng(5)
    x = rng.normal(40.0, 0.5, (16, 64, 125, 1)).astype(np.float32)
    w = np.abs(rng.normal(0, 0.3, (3, 3, 1, 8))).astype(np.float32)       # channels that sum the input
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    c = sum(xp[:, i:i + 64, j:j + 125, :1] * w[i, j, 0].astype(np.float64) for i in range(3) for j in range(3))
    args = (jnp.asarray(x), jnp.asarray(w), jnp.zeros(8), jnp.ones(8), jnp.zeros(8))
    _, mean, var = ops.conv_bn_elu_pool(*args, (2, 2))
    np.testing.assert_allclose(mean, c.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(var, c.var((0, 1, 2)), rtol=1e-5)    # the plain float32 chain: about 1e-4
    loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a, (2, 2), "same", "same")[0]))   # noqa: E731
    got = jax.grad(loss(ops.conv_bn_elu_pool), argnums=(1, 3, 4))(*args)
    want = jax.grad(loss(_ref_conv_bn_elu_pool), argnums=(1, 3, 4))(*args)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.abs(r).max()))


def test_conv_bn_elu_pool_under_vmap_and_jit():
    x = jax.random.normal(jax.random.key(22), (3, 2, 8, 11, 1))           # 3 independent batches
    w = jax.random.normal(jax.random.key(23), (3, 3, 1, 4))
    scale, bias = jnp.array([1.0, -0.5, 2.0, 0.3]), jnp.zeros(4)

    def loss(op, x, w):
        y, mean, var = op(x, w, jnp.zeros(4), scale, bias, (2, 2), "same", "same")
        return jnp.sum(y * y) + jnp.sum(mean) + jnp.sum(var)

    got = jax.jit(jax.vmap(jax.value_and_grad(lambda x, w: loss(ops.conv_bn_elu_pool, x, w), argnums=1),
                           in_axes=(0, None)))(x, w)
    for k in range(3):
        want = jax.value_and_grad(lambda w: loss(_ref_conv_bn_elu_pool, x[k], w))(w)
        np.testing.assert_allclose(got[0][k], want[0], rtol=1e-5)
        np.testing.assert_allclose(got[1][k], want[1], rtol=1e-4, atol=1e-4)


def test_conv_pool_applies_to_small_patches_on_cpu_only_and_has_a_switch(monkeypatch):
    assert ops.conv_pool_applies((3, 3, 1, 64)) and ops.conv_pool_applies((3, 3, 3, 32))
    assert ops.conv_pool_applies((3, 1, 64))                     # 1-D, raw audio
    assert not ops.conv_pool_applies((3, 3, 4, 64))              # 36 patch entries: the later blocks
    monkeypatch.setattr(ops, "CONV_POOL", False)
    assert not ops.conv_pool_applies((3, 3, 1, 64))
    monkeypatch.setattr(ops, "CONV_POOL", True)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not ops.conv_pool_applies((3, 3, 1, 64))


@pytest.mark.parametrize("call", [
    lambda: ops.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 3, 1))),         # channel mismatch
    lambda: ops.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 1)), padding="full"),
    lambda: ops.max_pool2d(jnp.ones((4, 4, 2)), 2),                              # no batch axis
    lambda: ops.max_pool2d(jnp.ones((1, 4, 4, 2)), 2, padding="causal"),
    lambda: ops.batch_norm_elu_pool(jnp.ones((4, 2)), None, jnp.ones(2), jnp.zeros(2), 2),   # no spatial axis
    lambda: ops.batch_norm_elu_pool(jnp.ones((1, 4, 4, 2)), None, jnp.ones(2), jnp.zeros(2), (16, 16)),
    lambda: ops.conv_max_pool(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 4)), 2),          # channel mismatch
    lambda: ops.conv_max_pool(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 4)), 8, "valid", "valid"),  # no window
    lambda: ops.conv_bn_elu_pool(jnp.ones((4, 1)), jnp.ones((3, 1, 2)), None, jnp.ones(2), jnp.zeros(2), 2),
])
def test_bad_input_raises_config_error(call):
    with pytest.raises(ConfigError):
        call()


def _train_losses(model_name, x, y, steps=4, **model_kwargs):
    from sercore import models

    model = models.create(model_name, num_classes=3, input_shape=x.shape[1:], seed=0, **model_kwargs)
    model.train()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(steps)]
    return np.array(losses), nnx.state(model, nnx.Param)


@pytest.mark.parametrize("model_name,input_shape,model_kwargs", [
    ("zhao2d", (16, 40, 1), {}), ("zhao1d", (512, 1), {}), ("zhao1d_bilstm", (512, 1), {}),
    ("dcnn_blstm_attn", (16, 48, 3), {"segment_frames": 16, "segment_step": 8}),     # strided ResNet convs
])
def test_models_train_the_same_with_fast_ops(monkeypatch, model_name, input_shape, model_kwargs):
    """No loss of accuracy: same seed, same batches -> the same loss curve and weights as the
    straightforward nnx.Conv + lax.reduce_window implementation, within float32 tolerance."""
    from sercore.models import blocks

    x = jax.random.normal(jax.random.key(8), (6, *input_shape))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    monkeypatch.setattr(ops, "CHUNK_MIN_BYTES", 0)        # Winograd convolutions in 2 chunks of 3
    fast_losses, fast_params = _train_losses(model_name, x, y, **model_kwargs)
    with monkeypatch.context() as m:
        m.setattr(blocks, "FUSED", False)
        m.setattr(blocks, "conv", lambda layer, x, with_bias=True: layer(x))
        m.setattr(blocks, "max_pool", lambda x, window, padding="SAME": lax.reduce_window(
            x, -jnp.inf, lax.max, (1, *window, 1), (1, *window, 1), padding.upper()))
        plain_losses, plain_params = _train_losses(model_name, x, y, **model_kwargs)
    assert np.all(np.isfinite(fast_losses)) and fast_losses[-1] < fast_losses[0]
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-3, atol=1e-5)
    # Conv biases feed BatchNorm, so their true gradient is 0 and both runs see only rounding noise,
    # which Adam scales up to steps of up to lr: weights can differ by up to lr * steps there.
    for a, b in zip(jax.tree.leaves(fast_params), jax.tree.leaves(plain_params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2 * 1e-3 * len(fast_losses))
