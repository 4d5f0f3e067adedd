"""Convolution, max-pooling and the fused LFLB activation, written so that XLA:CPU runs them fast.

The paper nets spend nearly all their training time in a few places that XLA:CPU compiles poorly:
the convolution's filter gradient (a convolution whose window is the whole feature map), max-pooling's
``select_and_scatter``, and the chain BatchNorm -> ELU -> max-pool on the first block's map
(32 x 128 x 251 x 64 floats, 263 MB per batch), which the unfused chain reads and writes about a
dozen times. The functions here compute the same values and gradients another way:

* :func:`conv2d` -- a 3 x 3 kernel with 16 or more input and output channels (every LFLB after the
  first) runs as Winograd F(4x4, 3x3) on CPU: 36 matrix products on transformed 6 x 6 input tiles,
  4x fewer multiplies than the direct convolution; its input gradient is the same algorithm on the
  output gradient with the flipped kernel, its filter gradient 36 products of the forward pass's
  transformed tiles with the transformed output gradient. Otherwise the forward pass is
  ``lax.conv_general_dilated`` (a one-channel input: kh * kw fused multiply-adds), the input
  gradient a forward convolution of the output gradient with the flipped, transposed kernel, and
  the filter gradient a few matrix products that contract the long (batch * positions) axis of
  both operands in place (see ``_filter_grad``).
* :func:`max_pool2d` -- forward is ``lax.reduce_window``; the backward pass compares each of the
  ph * pw taps of every window (strided slices) with the window max and routes the gradient to the
  first maximum (row-major order inside the window), exactly as ``jax.grad`` of
  ``lax.reduce_window`` (``select_and_scatter``) does, ties included.
* :func:`batch_norm_elu_pool` -- an LFLB's BatchNorm (training mode) -> ELU -> max-pool as one op
  with a custom backward pass. BatchNorm + ELU is monotonic per channel, so it pools the conv output
  first and normalises only the pooled map; the full map is read twice forward (statistics, pool)
  and once backward, the winning tap of each window kept as int8. LFLBs use it in training mode;
  in evaluation they pool first too (``max_pool2d`` of ``c * sign(scale)``, then BatchNorm + ELU).
* :func:`conv_bn_elu_pool` -- a first LFLB (a kernel with at most 27 taps x input channels: 3 x 3 on a
  log-mel or log-mel + deltas, 3 on a waveform), on CPU: the convolution fused into the pool, so the
  block's output map is never written. BatchNorm's statistics come from the Gram matrix of the input's
  patches, the pool computes each window's taps from the input, and the filter gradient folds
  BatchNorm's backward pass into one product of each window's input neighbourhood with the pooled
  gradient. In evaluation, :func:`conv_max_pool` (the pool of the convolution, forward only).
* :func:`batch_chunk` -- on CPU, a Winograd convolution of a large map (zhao2d's second block) runs
  4 examples at a time in a loop, forward and backward, so its transformed tiles largely stay in cache;
  in evaluation an LFLB stack runs its large-map blocks that way (``LFLBStack``).
* :func:`elu` -- ELU to float32 rounding without XLA:CPU's slow expm1.

The convolution and pool are drop-in replacements, with float32-rounding-level differences only
(Winograd: about 2e-6 relative, 1e-5 at worst per element), for
``lax.conv_general_dilated`` and ``flax.nnx.max_pool`` on NHWC tensors, and the fused ops for
``nnx.BatchNorm`` + ``nnx.elu`` + ``max_pool2d`` (after the convolution, or with it; tests compare
values and gradients);
:func:`conv1d`, :func:`max_pool1d` and the fused ops also take (batch, time, channels) tensors. Everything is jittable,
vmappable and differentiable (first order).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> x = jnp.ones((2, 128, 251, 1))                     # (batch, mel, frame, channel)
>>> w = jnp.ones((3, 3, 1, 64)) / 9                    # HWIO
>>> y = max_pool2d(conv2d(x, w), (2, 2), padding="same")
>>> y.shape
(2, 64, 126, 64)
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .errors import ConfigError

__all__ = ["conv2d", "conv1d", "max_pool2d", "max_pool1d", "pool_output_size", "batch_norm_elu_pool",
           "pool_first_sign", "conv_bn_elu_pool", "conv_max_pool", "conv_pool_applies", "batch_chunk", "map_chunks",
           "elu"]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------
def _conv_pads(kernel_size: tuple[int, int], padding: str) -> tuple[tuple[int, int], ...]:
    """Explicit (low, high) zero padding per spatial axis for a stride-1 convolution."""
    padding = padding.lower()
    if padding == "valid":
        return tuple((0, 0) for _ in kernel_size)
    if padding == "same":
        # XLA's SAME for stride 1: total k - 1, the odd one out goes at the end.
        return tuple(((k - 1) // 2, (k - 1) - (k - 1) // 2) for k in kernel_size)
    raise ConfigError(f"padding must be 'same' or 'valid', got {padding!r}")


def _conv(x, w, pads):
    kh, kw, c_in, _ = w.shape
    if c_in == 1 and kh * kw <= 25:
        # One input channel (a log-mel or a waveform): kh * kw broadcast multiply-adds, which XLA
        # fuses into one loop that writes the output once; 1.6x faster than its convolution here.
        x_pad = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        h_out, w_out = x_pad.shape[1] - kh + 1, x_pad.shape[2] - kw + 1
        return sum(x_pad[:, i:i + h_out, j:j + w_out, :] * w[i, j, 0] for i in range(kh) for j in range(kw))
    if _winograd_applies(w.shape):
        return _winograd_conv(x, w, pads)[0]
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_DIMENSION_NUMBERS)


# Winograd F(4x4, 3x3) (Lavin & Gray, "Fast algorithms for convolutional neural networks", 2016):
# each 4 x 4 output tile is A^T [(G w G^T) * (B^T d B)] A for the 6 x 6 input tile d around it, so a
# 3 x 3 convolution becomes 36 matrix products (tiles x c_in) @ (c_in x c_out), 4x fewer multiplies
# than the direct convolution, plus the transforms with these small matrices (interpolation points
# 0, +-1, +-2 and infinity), which are sums of strided slices. float32 results differ from the
# direct convolution by about 2e-6 relative (1e-5 at worst per element): rounding, not a change
# of the function.
_WINO_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float32)
_WINO_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float32)
_WINO_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                    np.float32)
#: Use Winograd for 3 x 3 convolutions with at least WINOGRAD_MIN_CHANNELS in and out channels
#: (on CPU). A switch for tests and for counting the direct convolution's FLOPs, not a tuning knob.
WINOGRAD = True
WINOGRAD_MIN_CHANNELS = 16
_HIGHEST = lax.Precision.HIGHEST


def _winograd_applies(w_shape) -> bool:
    """3 x 3 kernels with at least WINOGRAD_MIN_CHANNELS in and out channels, on CPU.

    On a GPU the vendor's convolution (which picks its own algorithm, Winograd included) is used.
    """
    kh, kw, c_in, c_out = w_shape
    return (WINOGRAD and (kh, kw) == (3, 3) and min(c_in, c_out) >= WINOGRAD_MIN_CHANNELS
            and jax.default_backend() == "cpu")


def _combine(m, parts):
    """``stack([sum_j m[i, j] * parts[j] for i])`` for a small constant matrix m, zeros skipped.

    Each output is a sum of a few (strided) slices, which XLA fuses into the loop that writes the
    stacked result: one pass that reads the slices and writes whole arrays. (As a matrix product
    with m the slices are first copied side by side, and XLA:CPU is slow at that.)
    """
    rows = []
    for row in np.asarray(m):
        acc = None
        for coef, part in zip(row.tolist(), parts):
            if coef == 0:
                continue
            term = part if coef == 1 else (-part if coef == -1 else part * coef)
            acc = term if acc is None else acc + term
        rows.append(acc)
    return jnp.stack(rows)


def _winograd_pad(x, pads):
    """x zero-padded by ``pads`` and on to whole 4 x 4 output tiles, and the (th, tw) tile grid."""
    b, h, w, c = x.shape
    (h_lo, h_hi), (w_lo, w_hi) = pads
    th, tw = -(-(h + h_lo + h_hi - 2) // 4), -(-(w + w_lo + w_hi - 2) // 4)
    return jnp.pad(x, ((0, 0), (h_lo, 4 * th + 2 - h - h_lo), (w_lo, 4 * tw + 2 - w - w_lo), (0, 0))), (th, tw)


def _tile_transform(m, xp, offset, tiles):
    """m d m^T for every tile d of xp (tiles start every 4 rows and columns from ``offset``).

    Returns (k * k, B * th * tw, C) for m of shape (k, n), index (row point, column point): the
    tiles' columns, then their rows, each output point a sum of up to four strided slices. Columns
    first, because the column slices (stride 4 * C) are the slow ones to read: taken from the input
    they add up to 1.5x its size, taken after the row step 2.25x.
    """
    (th, tw), (r0, c0), n = tiles, offset, m.shape[1]
    cols = _combine(m, [xp[:, :, c0 + j:c0 + j + 4 * tw:4] for j in range(n)])           # (k, B, Hp, tw, C)
    rows = _combine(m, [cols[:, :, r0 + i:r0 + i + 4 * th:4] for i in range(n)])         # (k, k, B, th, tw, C)
    return rows.reshape(m.shape[0] ** 2, -1, xp.shape[-1])


def _winograd_input(xp, tiles):
    """V = B^T d B for every 6 x 6 tile of the padded input xp (B, 4 th + 2, 4 tw + 2, C): (36, B * th * tw, C)."""
    return _tile_transform(_WINO_BT, xp, (0, 0), tiles)


def _winograd_output(m, b, tiles, size):
    """A^T M A for every tile of M (36, B * th * tw, C_out), interleaved into (B, H_out, W_out, C_out)."""
    (th, tw), c = tiles, m.shape[-1]
    m = m.reshape(6, 6, b, th, tw, c)
    s = _combine(_WINO_AT, [m[i] for i in range(6)])                      # (4 row, 6 col, ...)
    y = _combine(_WINO_AT, [s[:, j] for j in range(6)])                   # (4 col, 4 row, ...)
    return y.transpose(2, 3, 1, 4, 0, 5).reshape(b, 4 * th, 4 * tw, c)[:, :size[0], :size[1]]


def _winograd_output_transpose(dyp, offset, tiles):
    """The transpose of :func:`_winograd_output`: A dY A^T for every 4 x 4 tile, (36, B * th * tw, C).

    ``dyp`` holds dy zero-padded, starting at ``offset``: the input gradient's padded copy, which
    XLA writes out anyway. (Transposing dy itself, XLA fuses the computation of dy, BatchNorm's
    backward pass in an LFLB, into the transpose, and that loop runs several times slower.)
    """
    return _tile_transform(_WINO_AT.T, dyp, offset, tiles)


def _winograd_filter(w):
    """U = G w G^T for a (3, 3, C_in, C_out) kernel: (36, C_in, C_out)."""
    u = jnp.einsum("ai,bj,ijco->abco", _WINO_G, _WINO_G, w, precision=_HIGHEST).astype(w.dtype)
    return u.reshape(36, *w.shape[2:])


def _winograd_conv(x, w, pads, u=None):
    """Stride-1 3 x 3 convolution by Winograd F(4x4, 3x3): y, the transformed input V, padded x."""
    h_out, w_out = x.shape[1] + sum(pads[0]) - 2, x.shape[2] + sum(pads[1]) - 2
    xp, tiles = _winograd_pad(x, pads)
    v = _winograd_input(xp, tiles)
    u = _winograd_filter(w) if u is None else u
    m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))               # 36 products (tiles, C) @ (C, C_out)
    return _winograd_output(m, x.shape[0], tiles, (h_out, w_out)), v, xp


# Batch chunks (CPU). A Winograd convolution of a large map writes its transformed input tiles
# (2.25x the input) and its 36 products (2.25x the output) to memory and reads them back: on
# zhao2d's second block that is over 100 MB per pass, and the transforms run at memory speed. A
# few examples at a time in a loop, each chunk's arrays are 8x smaller and largely stay in cache
# (16 MB of L3 here): the forward pass maps the chunks, and the backward pass recomputes each
# chunk's tiles from x (kept instead of the tiles, 2.25x smaller) and adds up the filter gradient
# over the chunks. zhao2d ran fastest with chunks of 4 (against 2, 8 and whole batches).
# Not on a GPU, where a loop over chunks would only serialise the work.
#: Examples per chunk (0: whole batches). A switch for tests and for counting FLOPs, not a tuning knob.
CHUNK = 4
#: Chunk only a batch whose chunks hold at least this many bytes of input; smaller maps stay in
#: cache anyway, and their matrix products would get too small to run fast.
CHUNK_MIN_BYTES = 1 << 20


def batch_chunk(x_shape, itemsize: int = 4) -> int:
    """Examples per chunk for a batch of shape ``x_shape`` (batch first), or 0 to take it whole.

    The largest divisor of the batch up to :data:`CHUNK` (at least 2, and less than the batch),
    on CPU, where a chunk's input is at least :data:`CHUNK_MIN_BYTES`.
    """
    b = x_shape[0]
    if not CHUNK or jax.default_backend() != "cpu":
        return 0
    n = next((d for d in range(min(CHUNK, b - 1), 1, -1) if b % d == 0), 0)
    return n if n and n * math.prod(x_shape[1:]) * itemsize >= CHUNK_MIN_BYTES else 0


def _split_batch(x, n):
    """(B, ...) -> (B / n, n, ...)."""
    return x.reshape(x.shape[0] // n, n, *x.shape[1:])


def _merge_batch(x):
    """(B / n, n, ...) -> (B, ...)."""
    return x.reshape(-1, *x.shape[2:])


def map_chunks(f, x: jax.Array, n: int) -> jax.Array:
    """``f(x)`` computed ``n`` examples at a time in a loop, for an ``f`` that treats the examples of
    its batch (the leading axis of ``x``, a multiple of ``n``) independently; see :func:`batch_chunk`."""
    return _merge_batch(lax.map(f, _split_batch(x, n)))


def _winograd_backward(v, dy, u_flip, dx_pads):
    """dx and dU (36, C_in, C_out) of a Winograd convolution from its transformed input tiles v.

    dx is the same algorithm on the padded dy with the flipped kernel (``u_flip`` its transform);
    that padded copy also gives dM = A dY A^T per tile position, and dU = V^T dM.
    """
    tiles = (-(-dy.shape[1] // 4), -(-dy.shape[2] // 4))                  # the forward pass's tile grid
    dx, _, dyp = _winograd_conv(dy, None, dx_pads, u_flip)
    dm = _winograd_output_transpose(dyp, (dx_pads[0][0], dx_pads[1][0]), tiles)
    return dx, lax.dot_general(v, dm, (((1,), (1,)), ((0,), (0,))))


def _winograd_bwd_chunked(xs, w, pads, dy):
    """dx and dw of the chunked forward pass, one chunk at a time (tiles recomputed from x).

    Where dx has dy's shape ('same' padding), the loop writes each chunk's dx over its dy, which
    is read just before: XLA reuses dy's buffer instead of zero-filling a new one.
    """
    c_in, c_out = w.shape[2:]
    w_flip, dx_pads = _input_grad_kernel(w, pads)
    u_flip = _winograd_filter(w_flip)
    dys = _split_batch(dy, xs.shape[1])

    def chunk(du, xc, dyc):
        dxc, du_c = _winograd_backward(_winograd_input(*_winograd_pad(xc, pads)), dyc, u_flip, dx_pads)
        return du + du_c, dxc

    du = jnp.zeros((36, c_in, c_out), jnp.result_type(xs.dtype, dy.dtype))
    if xs.shape == dys.shape:
        def body(i, carry):
            du, buf = carry
            du, dxc = chunk(du, xs[i], buf[i])
            return du, lax.dynamic_update_index_in_dim(buf, dxc, i, 0)
        du, dxs = lax.fori_loop(0, xs.shape[0], body, (du, dys))
    else:
        du, dxs = lax.scan(lambda du, xd: chunk(du, *xd), du, (xs, dys))
    return _merge_batch(dxs), _winograd_filter_grad(du, c_in, c_out)


def _winograd_filter_grad(du, c_in, c_out):
    """dw = G^T dU G from the 36 products' gradient dU (36, C_in, C_out)."""
    return jnp.einsum("ai,bj,abco->ijco", _WINO_G, _WINO_G, du.reshape(6, 6, c_in, c_out), precision=_HIGHEST)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d(x, w, pads):
    return _conv(x, w, pads)


def _conv2d_fwd(x, w, pads):
    if _winograd_applies(w.shape):
        n = batch_chunk(x.shape, x.dtype.itemsize)
        if n:
            # The residual is x split into its chunks (5-D): the backward pass goes chunk by chunk too.
            u = _winograd_filter(w)
            return map_chunks(lambda xc: _winograd_conv(xc, None, pads, u)[0], x, n), (_split_batch(x, n), w, None)
        # Keep the transformed input, not x: the filter gradient is computed from it.
        y, v, _ = _winograd_conv(x, w, pads)
        return y, (None, w, v)
    return _conv(x, w, pads), (x, w, None)


def _input_grad_kernel(w, pads):
    """Kernel and padding of a stride-1 convolution's input gradient, a forward ("full") correlation
    of dy: the kernel flipped, in and out channels swapped; the padding mirrors the forward one."""
    kh, kw = w.shape[:2]
    (ph_lo, ph_hi), (pw_lo, pw_hi) = pads
    return (jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2),
            ((kh - 1 - ph_lo, kh - 1 - ph_hi), (kw - 1 - pw_lo, kw - 1 - pw_hi)))


def _conv2d_bwd(pads, residuals, dy):
    x, w, v = residuals
    kh, kw, c_in, c_out = w.shape
    if v is None and x.ndim == 5:                                         # Winograd in chunks
        dx, dw = _winograd_bwd_chunked(x, w, pads, dy)
        return dx.astype(x.dtype), dw.astype(w.dtype)
    w_flip, dx_pads = _input_grad_kernel(w, pads)
    if v is None:
        dx = _conv(dy, w_flip, dx_pads)
        return dx.astype(x.dtype), _filter_grad(x, dy, kh, kw, pads).astype(w.dtype)
    # Winograd, with V kept from the forward pass: dw = G^T (V^T dM) G.
    dx, du = _winograd_backward(v, dy, _winograd_filter(w_flip), dx_pads)
    return dx.astype(v.dtype), _winograd_filter_grad(du, c_in, c_out).astype(w.dtype)


def _filter_grad(x, dy, kh, kw, pads):
    """dw[i, j] = sum over batch and positions of x_padded[.., h + i, w + j, :]^T dy[.., h, w, :].

    Written as matrix products that contract the long (batch * positions) axis of both operands in
    place (no transposed copy of dy), instead of XLA:CPU's convolution whose window is the whole
    feature map (5-10x slower):

    * few input channels (the first LFLB: kh * kw * c_in <= 64): one product with the im2col
      matrix of x, which is small, so dy (the large operand) is read once;
    * otherwise: the kw column shifts of x side by side as channels (B, Hp, Wo, kw * c_in), and
      the kh row shifts of dy, zero-padded to Hp rows, side by side (B, Hp, Wo, kh * c_out); one
      product contracts examples and positions and gives every (i, j) block of dw at once. Each
      operand is copied once, instead of one strided copy per kernel row. The examples go in up to
      4 groups, a batched product whose partial sums are added at the end: faster than one
      product (the groups run in parallel) and than one per example (whose B partial dw would be
      264 MB for td_cnn_lstm's 448 windows).
    """
    (ph_lo, ph_hi), (pw_lo, pw_hi) = pads
    b, h_out, w_out, c_out = dy.shape
    c_in = x.shape[-1]
    x_pad = jnp.pad(x, ((0, 0), (ph_lo, ph_hi), (pw_lo, pw_hi), (0, 0)))
    if kh * kw * c_in <= 64:
        cols = jnp.concatenate([x_pad[:, i:i + h_out, j:j + w_out, :] for i in range(kh) for j in range(kw)],
                               axis=-1).reshape(-1, kh * kw * c_in)
        dw = lax.dot_general(cols, dy.reshape(-1, c_out), (((0,), (0,)), ((), ())))
        return dw.reshape(kh, kw, c_in, c_out)
    h_pad = x_pad.shape[1]                                   # = h_out + kh - 1
    x_cols = jnp.concatenate([x_pad[:, :, j:j + w_out, :] for j in range(kw)], axis=-1)      # [j, c_in]
    dy_rows = jnp.concatenate([jnp.pad(dy, ((0, 0), (i, h_pad - h_out - i), (0, 0), (0, 0))) for i in range(kh)],
                              axis=-1)                                                       # [i, c_out]
    groups = math.gcd(b, 4)
    dw = lax.dot_general(x_cols.reshape(groups, -1, kw * c_in), dy_rows.reshape(groups, -1, kh * c_out),
                         (((1,), (1,)), ((0,), (0,)))).sum(0)                                # (kw*c_in, kh*c_out)
    return dw.reshape(kw, c_in, kh, c_out).transpose(2, 0, 1, 3)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, padding: str = "same",
           strides: int | tuple[int, int] = 1) -> jax.Array:
    """2-D convolution, stride 1, NHWC input and HWIO kernel, with a fast backward pass.

    Parameters
    ----------
    x : jax.Array, shape (batch, height, width, c_in)
        Input, e.g. (batch, n_mels, n_frames, channels).
    w : jax.Array, shape (kh, kw, c_in, c_out)
        Kernel (cross-correlation, like ``flax.nnx.Conv`` and ``lax.conv_general_dilated``).
    b : jax.Array, shape (c_out,), optional
        Bias added to every position.
    padding : {"same", "valid"}
        "same" keeps height and width (zero padding, the extra row/column at the end for even
        kernels, as XLA's ``SAME``); "valid" uses no padding.
    strides : int or (int, int)
        Output stride per spatial axis, with XLA's placement of the ``SAME`` padding for strided
        convolutions (as ``flax.nnx.Conv(strides=...)``). A strided 1 x 1 kernel is the stride-1 one
        on the subsampled input (so it has the fast backward pass); larger strided kernels are XLA's
        strided convolution.

    Returns
    -------
    jax.Array, shape (batch, height', width', c_out)
        height' = height for "same", height - kh + 1 for "valid" (likewise width'); with strides s,
        ceil(height / s) ("same") or floor((height - kh) / s) + 1 ("valid").

    Notes
    -----
    On CPU a 3 x 3 kernel with at least ``WINOGRAD_MIN_CHANNELS`` (16) input and output channels
    is computed by Winograd F(4x4, 3x3), forward and backward (values within about 1e-5 of the
    direct convolution); other kernels, and every kernel on a GPU, by XLA's convolution.

    See Also
    --------
    conv1d : the same on (batch, time, channels).
    """
    if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ConfigError(f"conv2d expects x (B, H, W, C) and w (kh, kw, C, C_out); got {x.shape} and {w.shape}")
    strides = (strides, strides) if isinstance(strides, int) else tuple(int(v) for v in strides)
    if strides == (1, 1):
        y = _conv2d(x, w, _conv_pads(w.shape[:2], padding))
    else:
        y = _strided_conv2d(x, w, padding, strides)
    if b is not None:
        y = y + b
    return y


def _strided_pads(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(low, high) zero padding of one axis for a stride-``s`` convolution, as XLA places it."""
    padding = padding.lower()
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    raise ConfigError(f"padding must be 'same' or 'valid', got {padding!r}")


def _strided_conv2d(x, w, padding, strides):
    """A strided convolution with XLA's padding: 1 x 1 as ``_conv2d`` on the subsampled input."""
    kh, kw = w.shape[:2]
    (sh, sw), pads = strides, ((0, 0), (0, 0))
    if (kh, kw) != (1, 1):
        pads = (_strided_pads(x.shape[1], kh, sh, padding), _strided_pads(x.shape[2], kw, sw, padding))
    elif any(_strided_pads(n, 1, s, padding) != (0, 0) for n, s in zip(x.shape[1:3], strides)):
        raise ConfigError(f"a 1 x 1 strided convolution needs no padding; got {x.shape} at strides {strides}")
    if (kh, kw) == (1, 1):
        return _conv2d(x[:, ::sh, ::sw], w, pads)                 # a 1 x 1 kernel: subsample first
    # Larger kernels: XLA's strided convolution and its own gradients. (Winograd at stride 1, then
    # subsampled, computes 4 outputs per one kept at stride 2: 3x slower on dcnn's 32 -> 64 block.)
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DIMENSION_NUMBERS)


def conv1d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, padding: str = "same") -> jax.Array:
    """1-D convolution, stride 1, on (batch, time, c_in) with kernel (k, c_in, c_out).

    Computed as :func:`conv2d` on a height-1 image, so it has the same fast backward pass.

    Returns
    -------
    jax.Array, shape (batch, time', c_out)
    """
    if x.ndim != 3 or w.ndim != 3:
        raise ConfigError(f"conv1d expects x (B, T, C) and w (k, C, C_out); got {x.shape} and {w.shape}")
    return conv2d(x[:, None], w[None], b, padding=padding)[:, 0]


# --------------------------------------------------------------------------------------------
# max pooling (window == stride)
# --------------------------------------------------------------------------------------------
def pool_output_size(n: int, window: int, padding: str = "same") -> int:
    """Output length of a max-pool with stride == window: ceil(n / window) ("same") or floor ("valid")."""
    padding = padding.lower()
    if padding == "same":
        return -(-n // window)
    if padding == "valid":
        return n // window
    raise ConfigError(f"padding must be 'same' or 'valid', got {padding!r}")


def _pool_pads(n: int, window: int, padding: str) -> tuple[int, int]:
    """(low, high) padding (negative = crop) so the axis splits into whole windows, as XLA's SAME/VALID."""
    n_out = pool_output_size(n, window, padding)
    total = n_out * window - n
    if total >= 0:                       # SAME: pad, the odd one out at the end
        return total // 2, total - total // 2
    return 0, total                      # VALID: drop the tail that fills no window


def _pad_for_pool(x, pads):
    """Pad (B, H, W, C) with -inf, or crop where a pad is negative, by ((h_lo, h_hi), (w_lo, w_hi))."""
    (h_lo, h_hi), (w_lo, w_hi) = pads
    if not any((h_lo, h_hi, w_lo, w_hi)):
        return x
    return lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), (h_lo, h_hi, 0), (w_lo, w_hi, 0), (0, 0, 0)))


def _reduce_window_max(x, ph, pw):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, ph, pw, 1), (1, ph, pw, 1), "VALID")


def _as_tiles(x, ph, pw):
    """View (B, H, W, C) as (B, H / ph, ph, W / pw, pw, C) tiles (a free, row-major reshape)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // ph, ph, w // pw, pw, c)


def _taps(tiles):
    """The ph * pw taps of (B, Ho, ph, Wo, pw, C) tiles as (B, Ho, Wo, C) strided views, row-major."""
    ph, pw = tiles.shape[2], tiles.shape[4]
    return [tiles[:, :, k // pw, :, k % pw, :] for k in range(ph * pw)]


def _strided_max(x, ph, pw):
    """The same tile max as elementwise maxima of the ph * pw strided views of x."""
    return functools.reduce(jnp.maximum, _taps(_as_tiles(x, ph, pw)))


def _window_max(x, ph, pw, strided):
    return (_strided_max if strided else _reduce_window_max)(x, ph, pw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _tiled_max(x, ph, pw, strided):
    """Max over non-overlapping ph x pw tiles of x (B, H, W, C); H % ph == W % pw == 0."""
    return _window_max(x, ph, pw, strided)


def _tiled_max_fwd(x, ph, pw, strided):
    y = _window_max(x, ph, pw, strided)
    return y, (x, y)


def _tiled_max_bwd(ph, pw, strided, residuals, dy):
    # Route dy to the first maximum of each tile (row-major order inside the tile), like
    # select_and_scatter, with ph * pw strided slices and elementwise ops only: tap (i, j) of
    # every tile gets dy where it equals the tile max and no earlier tap did.
    x, y = residuals
    b, h, w, c = x.shape
    x_tiles = _as_tiles(x, ph, pw)
    zero = jnp.zeros((), dy.dtype)
    taken = jnp.zeros(y.shape, dtype=bool)
    rows = []
    for i in range(ph):
        taps = []
        for j in range(pw):
            hit = (x_tiles[:, :, i, :, j, :] == y) & ~taken
            taken = taken | hit
            taps.append(jnp.where(hit, dy, zero))
        rows.append(jnp.stack(taps, axis=3))                           # (B, Ho, Wo, pw, C)
    return (jnp.stack(rows, axis=2).reshape(b, h, w, c),)              # (B, Ho, ph, Wo, pw, C) -> x


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


def max_pool2d(x: jax.Array, window: tuple[int, int] | int, padding: str = "same", *,
               strided: bool = False) -> jax.Array:
    """Max-pool an NHWC tensor with stride equal to the window, with a fast backward pass.

    Parameters
    ----------
    x : jax.Array, shape (batch, height, width, channels)
    window : (ph, pw) or int
        Window (and stride) along height and width, e.g. (2, 2), or (4, 2) for a "pooling fix"
        that keeps more time resolution.
    padding : {"same", "valid"}
        "same": output ceil(height / ph) x ceil(width / pw); the axis is padded with -inf, the
        odd one out at the end (XLA's SAME). "valid": floor, the tail that fills no window is dropped.
    strided : bool
        Compute the forward pass as elementwise maxima of the ph * pw strided views of x instead
        of ``lax.reduce_window``: XLA then fuses a cheap elementwise producer of x (a convolution's
        output times a sign, as in an LFLB's pool-first evaluation) into the pool loop. Values and
        gradients are the same. Off by default: XLA:CPU also fuses an expensive producer (ELU's exp)
        into that loop and runs it slowly (td_cnn_lstm inference 3x slower here), while
        ``reduce_window`` is fused with a preceding convolution by XLA's ynn backend.

    Returns
    -------
    jax.Array, shape (batch, height', width', channels)

    Notes
    -----
    Values equal ``flax.nnx.max_pool(x, window, strides=window, padding=padding.upper())``. The
    gradient goes to the first maximum of each window in row-major order, which is what
    ``jax.grad`` of ``lax.reduce_window`` (``select_and_scatter``) does, so gradients agree too,
    ties included.
    """
    if isinstance(window, int):
        window = (window, window)
    ph, pw = (int(v) for v in window)
    if x.ndim != 4 or ph < 1 or pw < 1:
        raise ConfigError(f"max_pool2d expects x (B, H, W, C) and a positive window; got {x.shape}, {window}")
    pads = (_pool_pads(x.shape[1], ph, padding), _pool_pads(x.shape[2], pw, padding))
    return _tiled_max(_pad_for_pool(x, pads), ph, pw, bool(strided))


def max_pool1d(x: jax.Array, window: int, padding: str = "same", *, strided: bool = False) -> jax.Array:
    """Max-pool (batch, time, channels) with stride == window; see :func:`max_pool2d`.

    Returns
    -------
    jax.Array, shape (batch, ceil(time / window) or floor, channels)
    """
    if x.ndim != 3:
        raise ConfigError(f"max_pool1d expects x (B, T, C); got {x.shape}")
    return max_pool2d(x[:, None], (1, int(window)), padding, strided=strided)[:, 0]



# --------------------------------------------------------------------------------------------
# BatchNorm (training mode) -> ELU -> max-pool, fused
# --------------------------------------------------------------------------------------------
def _pool_view(a, window, pads):
    """Pad/crop ``a`` (B, H, W, C) for pooling and view it as (B, Ho, ph, Wo, pw, C) tiles."""
    return _as_tiles(_pad_for_pool(a, pads), *window)


def pool_first_sign(scale: jax.Array, dtype=jnp.float32) -> jax.Array:
    """+1 where BatchNorm's ``scale`` is >= 0, -1 where it is < 0: BatchNorm + ELU rises (falls) in c.

    Pooling ``c * sign`` and multiplying the result by ``sign`` again gives, per channel, the c whose
    activation is the window maximum; an LFLB normalises only that pooled map.
    """
    return jnp.where(scale < 0, -1.0, 1.0).astype(dtype)


def elu(z: jax.Array) -> jax.Array:
    """ELU, ``jax.nn.elu`` to float32 rounding (at most 3e-7 relative, as XLA's expm1), faster on CPU.

    XLA:CPU's expm1 runs at about half the speed of its exp: zhao2d's first block spent as long in
    ELU as in its pooled convolution. Below -1/8 this takes exp(z) - 1 (rounding error at most
    1e-7 absolute where |ELU| > 0.117), above it the Taylor series to z^5 (truncation below 6e-9).
    """
    neg = jnp.where(z > 0, 0.0, z)
    taylor = neg * (1 + neg * (1 / 2 + neg * (1 / 6 + neg * (1 / 24 + neg * (1 / 120)))))
    return jnp.where(z > 0, z, jnp.where(neg > -0.125, taylor, jnp.exp(neg) - 1))


def _bn_act(c, mean, var, scale, bias, epsilon):
    """ELU(BatchNorm(c)) with the given statistics, in flax.nnx.BatchNorm's order of operations."""
    return elu((c - mean) * (lax.rsqrt(var + epsilon) * scale) + bias)


def _batch_stats(c):
    """Mean and (biased, "fast") variance over all axes but the last, as flax.nnx.BatchNorm computes them."""
    axes = tuple(range(c.ndim - 1))
    mean, mean2 = c.mean(axes), (c * c).mean(axes)
    return mean, jnp.maximum(0.0, mean2 - mean * mean)


def _tile_max(tiles):
    """Max over the ph x pw taps of (B, Ho, ph, Wo, pw, C) tiles, and the (int8) tap of the first maximum."""
    y, *rest = _taps(tiles)
    first = jnp.zeros(y.shape, jnp.int8)
    for k, tap in enumerate(rest, start=1):
        larger = tap > y
        y, first = jnp.where(larger, tap, y), jnp.where(larger, jnp.int8(k), first)
    return y, first


def _pool_geometry(c, window, padding):
    """(c as 4-D, (ph, pw), pads, one_d) for :func:`batch_norm_elu_pool`, with input checks."""
    one_d = c.ndim == 3
    if one_d:
        c, window = c[:, None], (1, int(window if isinstance(window, int) else window[0]))
    elif isinstance(window, int):
        window = (window, window)
    ph, pw = (int(v) for v in window)
    if c.ndim != 4 or ph < 1 or pw < 1 or ph * pw > 127:
        raise ConfigError(f"batch_norm_elu_pool expects c (B, H, W, C) or (B, T, C) and a window of 1-127 taps; "
                          f"got {c.shape}, {window}")
    pads = (_pool_pads(c.shape[1], ph, padding), _pool_pads(c.shape[2], pw, padding))
    return c, (ph, pw), pads, one_d


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _bn_elu_pool(c, conv_bias, scale, bias, window, pads, epsilon):
    return _bn_elu_pool_fwd(c, conv_bias, scale, bias, window, pads, epsilon)[0]


def _bn_elu_pool_fwd(c, conv_bias, scale, bias, window, pads, epsilon):
    # BatchNorm removes a per-channel constant, so the conv bias only shifts the batch mean:
    # statistics and normalisation use c itself and the (never stored) c + bias is not formed.
    mean, var = _batch_stats(c)
    # BatchNorm's affine map and ELU are monotonic per channel (rising where scale >= 0, falling
    # where scale < 0), so the window maximum of the activation is the activation of the window's
    # largest (or smallest) c: pool c * sign first, then normalise and apply ELU on the pooled map
    # only, a quarter or less of the full one. The pool keeps the first maximum of each window
    # ("a later tap wins only if strictly larger", row-major), as select_and_scatter does; its
    # index (int8) is all the backward pass needs.
    sign = pool_first_sign(scale, c.dtype)
    key, first = _tile_max(_pool_view(c * sign, window, pads))
    c_max = key * sign                    # the winning c (exact: sign is +-1)
    return ((_bn_act(c_max, mean, var, scale, bias, epsilon), mean + conv_bias, var),
            (c, scale, bias, mean, var, c_max, first))


def _pooled_output_grad(dy, c_max, mean, var, scale, bias, epsilon):
    """The gradient g at BatchNorm's output on the pooled map, and 1 / std.

    The pooled gradient dy goes through ELU (derivative 1 above 0, exp(z) below) at the winning
    taps only, so BatchNorm's parameter gradients are sums of g over the pooled map.
    """
    rstd = lax.rsqrt(var + epsilon)
    z = (c_max - mean) * (rstd * scale) + bias
    return dy * jnp.where(z > 0, 1.0, jnp.exp(z)), rstd


def _route_to_first(g, first, window, pads):
    """The pooled gradient g (B, Ho, Wo, C) placed at each window's first maximum: the full map's gradient."""
    (ph, pw), ((h_lo, h_hi), (w_lo, w_hi)) = window, pads
    b, ho, wo, ch = g.shape
    shape6 = (b, ho, ph, wo, pw, ch)
    tap = lax.broadcasted_iota(jnp.int8, shape6, 2) * jnp.int8(pw) + lax.broadcasted_iota(jnp.int8, shape6, 4)
    routed = jnp.where(tap == first[:, :, None, :, None, :], g[:, :, None, :, None, :], 0.0)
    return lax.pad(routed.reshape(b, ho * ph, wo * pw, ch), jnp.array(0, g.dtype),
                   ((0, 0, 0), (-h_lo, -h_hi, 0), (-w_lo, -w_hi, 0), (0, 0, 0)))


def _bn_elu_pool_bwd(window, pads, epsilon, residuals, cotangents):
    c, scale, bias, mean, var, c_max, first = residuals
    dy, dmean, dvar = cotangents
    n = c.size // c.shape[-1]
    # BatchNorm's parameter gradients are sums over the pooled map; one pass over the full map then
    # routes the gradient to the first maximum of each window and applies BatchNorm's training-mode
    # backward, everything recomputed from c elementwise (XLA fuses it into one loop).
    g, rstd = _pooled_output_grad(dy, c_max, mean, var, scale, bias, epsilon)
    axes = tuple(range(dy.ndim - 1))
    dbias, dscale = g.sum(axes), (g * ((c_max - mean) * rstd)).sum(axes)
    routed = _route_to_first(g, first, window, pads)
    centred = c - mean
    dc = (scale * rstd) * (routed - dbias / n - centred * (rstd * dscale / n)) + dmean / n + dvar * (2.0 / n) * centred
    # The conv bias reaches the outputs only through the returned mean (BatchNorm cancels it in the
    # normalised values), so its gradient is exactly the mean's cotangent: 0 in a model, where the
    # statistics only feed the running averages (autodiff of the unfused chain gives rounding noise).
    return dc, dmean, dscale, dbias


_bn_elu_pool.defvjp(_bn_elu_pool_fwd, _bn_elu_pool_bwd)


def batch_norm_elu_pool(c: jax.Array, conv_bias: jax.Array | None, scale: jax.Array, bias: jax.Array,
                        window: tuple[int, ...] | int, padding: str = "same", *,
                        epsilon: float = 1e-3) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``max_pool(elu(batch_norm(c + conv_bias)))`` in training mode, with a fused backward pass.

    The activation after a convolution in every LFLB. On a large map (zhao2d's first block is
    32 x 128 x 251 x 64 floats, 263 MB, per batch) the unfused chain reads and writes the map about
    a dozen times, and XLA:CPU's max-pool gradient (``select_and_scatter``) is slow. Here the
    forward pass reads the map twice (statistics; a max-pool of ``c * sign(scale)`` that also records
    which tap of each window won) and normalises + applies ELU to the pooled map only, which is
    exact because BatchNorm's affine map and ELU are monotonic per channel; the backward pass
    computes BatchNorm's parameter gradients on the pooled map and reads the full map once.

    Parameters
    ----------
    c : jax.Array, shape (B, H, W, C) or (B, T, C)
        The convolution's output without its bias.
    conv_bias : jax.Array, shape (C,), or None
        The convolution's bias (added before the statistics, so running means match the unfused layer).
    scale, bias : jax.Array, shape (C,)
        BatchNorm's learned scale (gamma) and offset (beta).
    window : (ph, pw) or int
        Pool window (= stride); an int for (B, T, C) input.
    padding : {"same", "valid"}
        As :func:`max_pool2d`.
    epsilon : float
        BatchNorm's epsilon (sercore uses Keras' 1e-3).

    Returns
    -------
    pooled : jax.Array, shape (B, H', W', C) or (B, T', C)
    mean, var : jax.Array, shape (C,)
        The batch statistics (biased variance, E[x^2] - E[x]^2 clipped at 0, as flax's BatchNorm),
        for the running averages.

    Notes
    -----
    Values and gradients equal ``max_pool2d(jax.nn.elu(y))`` with ``y`` from
    ``flax.nnx.BatchNorm(use_running_average=False)`` to float32 rounding. The pool gradient goes to
    the first maximum of each window (row-major), ties in ``c`` included, as ``select_and_scatter``
    does. Two different ``c`` in a window whose activations round to the same float (ELU saturates
    at -1 below z of about -17) count as a tie in the plain chain but not here: the gradient goes to
    the larger ``c`` instead of the earlier tap, an equally valid subgradient. Where ``scale`` is
    exactly 0 the pooled output has a kink in ``scale``; its gradient here is the right-hand
    derivative (the window's largest ``c``), the plain chain's is the first tap's. (Where the clipped
    variance is exactly 0 the reference's gradient through the clip differs; a channel that is
    constant over the whole batch.)
    """
    c, window, pads, one_d = _pool_geometry(c, window, padding)
    if conv_bias is None:
        conv_bias = jnp.zeros(c.shape[-1], c.dtype)
    y, mean, var = _bn_elu_pool(c, conv_bias, scale, bias, window, pads, float(epsilon))
    return (y[:, 0] if one_d else y), mean, var


# --------------------------------------------------------------------------------------------
# Convolution with few input channels -> BatchNorm (training mode) -> ELU -> max-pool, fused
# --------------------------------------------------------------------------------------------
#: Fuse a first LFLB's convolution into its pool (kernels with at most CONV_POOL_MAX_PATCH taps x
#: input channels, on CPU). A switch for tests and for counting the plain ops' FLOPs, not a tuning knob.
CONV_POOL = True
CONV_POOL_MAX_PATCH = 27


def conv_pool_applies(w_shape) -> bool:
    """Whether :func:`conv_bn_elu_pool` and :func:`conv_max_pool` take a kernel of this shape here.

    Kernels with at most ``CONV_POOL_MAX_PATCH`` (27) taps x input channels: a first LFLB on a
    log-mel (3 x 3 x 1), on log-mel + deltas (3 x 3 x 3) or on a waveform (3 x 1). On CPU only; a GPU
    keeps the vendor convolution and :func:`batch_norm_elu_pool`.
    """
    return CONV_POOL and math.prod(w_shape[:-1]) <= CONV_POOL_MAX_PATCH and jax.default_backend() == "cpu"


class _ConvPool(NamedTuple):
    """Static geometry of a stride-1 convolution followed by a max-pool (stride = window), 2-D."""
    conv_pads: tuple       # ((top, bottom), (left, right)) zeros
    pool_pads: tuple       # the same for the pool on the conv output (-inf; negative = crop)
    window: tuple          # (ph, pw)
    kernel: tuple          # (kh, kw)
    conv_size: tuple       # (hc, wc): the convolution's output
    pooled: tuple          # (ho, wo)


def _conv_pool_geometry(x_shape, w_shape, conv_padding, window, pool_padding) -> _ConvPool:
    kh, kw = w_shape[:2]
    conv_pads = _conv_pads((kh, kw), conv_padding)
    hc = x_shape[1] + sum(conv_pads[0]) - kh + 1
    wc = x_shape[2] + sum(conv_pads[1]) - kw + 1
    ph, pw = window
    if hc < 1 or wc < 1 or ph < 1 or pw < 1 or ph * pw > 127:
        raise ConfigError(f"conv -> pool: a {kh} x {kw} kernel and a {window} window do not fit input {x_shape}")
    pool_pads = (_pool_pads(hc, ph, pool_padding), _pool_pads(wc, pw, pool_padding))
    ho, wo = pool_output_size(hc, ph, pool_padding), pool_output_size(wc, pw, pool_padding)
    if ho < 1 or wo < 1:
        raise ConfigError(f"conv -> pool: a {window} 'valid' window is larger than the conv output {(hc, wc)}")
    return _ConvPool(conv_pads, pool_pads, (ph, pw), (kh, kw), (hc, wc), (ho, wo))


def _conv_pool_input(x, geo):
    """x zero-padded for the convolution and on (or cropped) to the pool's windows: row
    ``ph * i + di`` of the result is input row di of the kernel window of conv row ``ph * i - top pool pad``."""
    ((ch_lo, ch_hi), (cw_lo, cw_hi)), ((ph_lo, ph_hi), (pw_lo, pw_hi)) = geo.conv_pads, geo.pool_pads
    return lax.pad(x, jnp.array(0, x.dtype), ((0, 0, 0), (ch_lo + ph_lo, ch_hi + ph_hi, 0),
                                              (cw_lo + pw_lo, cw_hi + pw_hi, 0), (0, 0, 0)))


def _window_slice(xp, geo, di, dj):
    """(B, Ho, Wo, C_in): the input at offset (di, dj) from every pool window's top-left corner."""
    (ph, pw), (ho, wo) = geo.window, geo.pooled
    return xp[:, di:di + ph * (ho - 1) + 1:ph, dj:dj + pw * (wo - 1) + 1:pw, :]


def _conv_taps(xp, w, geo):
    """The convolution's output at each of the ph * pw taps of every pool window, (B, Ho, Wo, C_out)
    each (kh * kw * c_in broadcast multiply-adds of input slices), -inf where a tap is pool padding."""
    (ph, pw), (kh, kw), (hc, wc), (ho, wo) = geo.window, geo.kernel, geo.conv_size, geo.pooled
    (h_lo, _), (w_lo, _) = geo.pool_pads
    taps = []
    for ti in range(ph):
        for tj in range(pw):
            c = sum(_window_slice(xp, geo, ti + i, tj + j)[..., k:k + 1] * w[i, j, k]
                    for i in range(kh) for j in range(kw) for k in range(w.shape[2]))
            rows, cols = np.arange(ho) * ph + ti - h_lo, np.arange(wo) * pw + tj - w_lo
            valid = ((rows >= 0) & (rows < hc))[:, None] & ((cols >= 0) & (cols < wc))[None, :]
            if not valid.all():
                c = jnp.where(valid[None, :, :, None], c, jnp.array(-jnp.inf, c.dtype))
            taps.append(c)
    return taps


def _first_max(taps, index=True):
    """Elementwise max over the taps and the (int8) index of the first one that attains it (or the max only).

    As a reduction over a stacked tap axis: XLA computes the taps inside the reduction's loop and
    writes the pooled map once. (As elementwise maxima, XLA fuses the taps' multiply-adds into each
    consumer of the pooled map and recomputes the convolution there, four times in a training step.)
    """
    stacked = jnp.stack(taps, axis=-1)
    if not index:
        return lax.reduce(stacked, jnp.array(-jnp.inf, stacked.dtype), lax.max, (stacked.ndim - 1,))
    tap = lax.broadcasted_iota(jnp.int8, stacked.shape, stacked.ndim - 1)

    def pick(a, b):
        (va, ia), (vb, ib) = a, b
        take_b = (vb > va) | ((vb == va) & (ib < ia))
        return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)

    init = (jnp.array(-jnp.inf, stacked.dtype), jnp.array(0, jnp.int8))
    return lax.reduce((stacked, tap), init, pick, (stacked.ndim - 1,))


def _patch_moments(x, w_shape, conv_pads, shift):
    """Sum s (K,) and Gram matrix Pc^T Pc (K, K) of the convolution's centred patch matrix Pc = P - shift.

    The conv output is c = P W (K = kh * kw * c_in), so its per-channel mean is s W / n + shift W
    and its variance diag(W^T Pc^T Pc W) / n - (s W / n)^2: BatchNorm's statistics without the map.
    ``shift`` (the input's mean per channel, repeated over the kernel taps) keeps that difference
    free of cancellation when the input is far from zero (dB values, say). Pc^T Pc is one matrix
    product of the stacked shifted views of the centred input (K x positions). (One reduction per
    pair of views, 45 for 3 x 3, ran 3-6x slower in a training step: XLA:CPU copies each view and
    reduces them one by one.)
    """
    kh, kw, c_in, _ = w_shape
    xp = jnp.pad(x, ((0, 0), *conv_pads, (0, 0))) - shift[:c_in]
    hc, wc = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    views = [xp[:, i:i + hc, j:j + wc, k] for i in range(kh) for j in range(kw) for k in range(c_in)]
    n = len(views)
    sums = jnp.stack([v.sum() for v in views])
    p = jnp.stack(views).reshape(n, -1)
    gram = lax.dot_general(p, p, (((1,), (1,)), ((), ())), precision=_HIGHEST)
    return sums, gram


def _routed_patch_sums(xp, g, first, geo, c_in):
    """P^T routed (K, C_out), the filter gradient of the pooled gradient g placed at the winning taps,
    and the sum of g (C_out,).

    Tap t of a window sees the input at offsets t + (i, j) from its corner, so with N the input's
    (ph + kh - 1) x (pw + kw - 1) neighbourhood of every window and a column of ones (windows x
    neighbourhood + 1) and G_t the gradient where tap t won (windows x C_out), P^T routed[(i, j)] =
    sum_t (N^T G)[t + (i, j), t] and the ones give sum_t sum_windows G_t = sum g: one matrix product
    (neighbourhood x windows) @ (windows x taps * C_out) and a small gather. XLA computes g inside
    the loop that writes the G_t, so g itself is never written.
    """
    (ph, pw), (kh, kw) = geo.window, geo.kernel
    nh, nw, c_out, taps = ph + kh - 1, pw + kw - 1, g.shape[-1], ph * pw
    views = [_window_slice(xp, geo, di, dj)[..., k] for di in range(nh) for dj in range(nw) for k in range(c_in)]
    hood = jnp.stack([*views, jnp.ones_like(views[0])], axis=-1).reshape(-1, len(views) + 1)
    zero = jnp.array(0, g.dtype)
    won = jnp.stack([jnp.where(first == t, g, zero) for t in range(taps)], axis=-2).reshape(-1, taps * c_out)
    q = lax.dot_general(hood, won, (((0,), (0,)), ((), ())), precision=_HIGHEST)
    q, g_sum = q[:-1].reshape(nh, nw, c_in, ph, pw, c_out), q[-1].reshape(taps, c_out).sum(0)
    r = [sum(q[ti + i, tj + j, k, ti, tj] for ti in range(ph) for tj in range(pw))
         for i in range(kh) for j in range(kw) for k in range(c_in)]
    return jnp.stack(r), g_sum


def _as_2d(x, w, window):
    """(x, w, window) as 2-D: (B, T, C) -> (B, 1, T, C), (k, C, O) -> (1, k, C, O), p -> (1, p)."""
    if x.ndim == 3:
        return x[:, None], w[None], (1, int(window if isinstance(window, int) else window[0]))
    return x, w, ((window, window) if isinstance(window, int) else tuple(int(v) for v in window))


def _check_conv_pool(x, w):
    if x.ndim not in (3, 4) or w.ndim != x.ndim or x.shape[-1] != w.shape[-2]:
        raise ConfigError(f"conv -> pool expects x (B, H, W, C) with w (kh, kw, C, C_out), or x (B, T, C) with "
                          f"w (k, C, C_out); got {x.shape} and {w.shape}")


def conv_max_pool(x: jax.Array, w: jax.Array, window: tuple[int, ...] | int, conv_padding: str = "same",
                  pool_padding: str = "same") -> jax.Array:
    """``max_pool(conv(x, w), window)`` without writing the convolution's output (forward only).

    For kernels with few taps x input channels (:func:`conv_pool_applies`): every window's taps are
    computed from the input and only their maximum is written. An LFLB in evaluation mode calls it
    with ``w * sign(scale)`` (see :func:`pool_first_sign`). Not differentiable (see
    :func:`conv_bn_elu_pool` for training). Takes (B, H, W, C) with an HWIO kernel or (B, T, C) with
    a (k, C, C_out) kernel; paddings as :func:`conv2d` and :func:`max_pool2d`.
    """
    _check_conv_pool(x, w)
    one_d = x.ndim == 3
    x, w, window = _as_2d(x, w, window)
    geo = _conv_pool_geometry(x.shape, w.shape, conv_padding, window, pool_padding)
    y = _first_max(_conv_taps(_conv_pool_input(x, geo), w, geo), index=False)
    return y[:, 0] if one_d else y


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _conv_bn_elu_pool(x, w, conv_bias, scale, bias, geo, epsilon):
    return _conv_bn_elu_pool_fwd(x, w, conv_bias, scale, bias, geo, epsilon)[0]


def _conv_bn_elu_pool_fwd(x, w, conv_bias, scale, bias, geo, epsilon):
    kh, kw, c_in, c_out = w.shape
    n = x.shape[0] * geo.conv_size[0] * geo.conv_size[1]
    w_mat = w.reshape(-1, c_out)
    shift = jnp.tile(x.mean((0, 1, 2)), kh * kw)                   # per patch entry (i, j, channel)
    sums, gram = _patch_moments(x, w.shape, geo.conv_pads, shift)
    mean_c = jnp.dot(sums, w_mat, precision=_HIGHEST) / n           # the mean of the centred Pc W
    var = jnp.maximum(0.0, (jnp.dot(gram, w_mat, precision=_HIGHEST) * w_mat).sum(0) / n - mean_c * mean_c)
    mean = mean_c + jnp.dot(shift, w_mat, precision=_HIGHEST)
    # Pool-first as batch_norm_elu_pool: the window maximum of conv(x, w * sign) is sign * the c
    # whose activation wins (multiplying by +-1 is exact).
    sign = pool_first_sign(scale, x.dtype)
    key, first = _first_max(_conv_taps(_conv_pool_input(x, geo), w * sign, geo))
    c_max = key * sign
    return ((_bn_act(c_max, mean, var, scale, bias, epsilon), mean + conv_bias, var),
            (x, w, scale, bias, mean, mean_c, var, c_max, first, shift, sums, gram))


def _conv_bn_elu_pool_bwd(geo, epsilon, residuals, cotangents):
    x, w, scale, bias, mean, mean_c, var, c_max, first, shift, sums, gram = residuals
    dy, dmean, dvar = cotangents
    c_in, c_out = w.shape[2:]
    n = x.shape[0] * geo.conv_size[0] * geo.conv_size[1]
    g, rstd = _pooled_output_grad(dy, c_max, mean, var, scale, bias, epsilon)
    w_mat = w.reshape(-1, c_out)
    # Rc = Pc^T routed (centred patches) and sum g. The pooled c is P_win W (the winning tap's
    # patch), so sum g * (c_max - mean) = sum_k W[k] Rc[k] - (mean of Pc W) * sum g: BatchNorm's
    # scale gradient needs no pass of its own.
    routed_sums, dbias = _routed_patch_sums(_conv_pool_input(x, geo) - shift[:c_in], g, first, geo, c_in)
    dscale = rstd * ((w_mat * routed_sums).sum(0) - mean_c * dbias)
    # BatchNorm's backward on the full map is affine per channel: dc = a * routed + b + s * (c - mean),
    # and c - mean = Pc W - mean_c. With P = Pc + shift, the filter gradient P^T dc is therefore
    # a Rc + outer(sum of Pc, b) + s (Pc^T Pc W - outer(sum of Pc, mean_c)) + outer(shift, sum dc),
    # where sum dc = dmean; only Rc needs the windows.
    a = scale * rstd
    s = dvar * (2.0 / n) - a * rstd * dscale / n
    b = dmean / n - a * dbias / n
    dw = (a * routed_sums + sums[:, None] * b + s * (jnp.dot(gram, w_mat, precision=_HIGHEST) - sums[:, None] * mean_c)
          + shift[:, None] * dmean).reshape(w.shape)
    # The input's gradient needs the full dc map (XLA drops all of this when x is data, as in every
    # sercore model): a full correlation of dc with the flipped kernel, as conv2d's backward pass.
    routed = _route_to_first(g, first, geo.window, geo.pool_pads)
    dc = a * routed + b + s * (_conv(x, w, geo.conv_pads) - mean)
    dx = _conv(dc, *_input_grad_kernel(w, geo.conv_pads))
    # The conv bias reaches the outputs only through the returned mean: its gradient is dmean.
    return dx.astype(x.dtype), dw.astype(w.dtype), dmean, dscale, dbias


_conv_bn_elu_pool.defvjp(_conv_bn_elu_pool_fwd, _conv_bn_elu_pool_bwd)


def conv_bn_elu_pool(x: jax.Array, w: jax.Array, conv_bias: jax.Array | None, scale: jax.Array,
                     bias: jax.Array, window: tuple[int, ...] | int, conv_padding: str = "same",
                     pool_padding: str = "same", *, epsilon: float = 1e-3
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A first LFLB in training mode, ``max_pool(elu(batch_norm(conv(x, w) + conv_bias)))``, without
    the convolution's output map.

    :func:`batch_norm_elu_pool` still reads and writes the convolution's output (zhao2d's first
    block: 32 x 128 x 251 x 64 floats, 263 MB per batch) several times. Where the kernel has few taps
    x input channels (:func:`conv_pool_applies`) the map is never formed: BatchNorm's statistics come
    from the 9 x 9 Gram matrix of the input's patches (c = P W, so sum c^2 = diag(W^T P^T P W)), the
    pool computes each window's taps from the input and keeps the maximum and the winning tap, and
    the filter gradient is BatchNorm's backward pass (affine in c per channel) folded into one product
    of each window's input neighbourhood with the pooled gradient, split by winning tap.

    Parameters
    ----------
    x : jax.Array, shape (B, H, W, C_in) or (B, T, C_in)
    w : jax.Array, shape (kh, kw, C_in, C_out) or (k, C_in, C_out)
        Convolution kernel (stride 1), as :func:`conv2d` / :func:`conv1d`.
    conv_bias : jax.Array, shape (C_out,), or None
    scale, bias : jax.Array, shape (C_out,)
        BatchNorm's scale (gamma) and offset (beta).
    window : (ph, pw) or int
        Pool window (= stride); an int for (B, T, C) input.
    conv_padding, pool_padding : {"same", "valid"}
    epsilon : float
        BatchNorm's epsilon.

    Returns
    -------
    pooled : jax.Array, shape (B, H', W', C_out) or (B, T', C_out)
    mean, var : jax.Array, shape (C_out,)
        Batch statistics of ``conv(x, w) + conv_bias`` (biased variance), for the running averages.

    Notes
    -----
    Values and gradients equal ``batch_norm_elu_pool(conv2d(x, w), conv_bias, ...)`` (and so the
    unfused chain) to float32 rounding: the statistics are sums in another order (about 1e-6
    relative). Ties and the scale == 0 kink as :func:`batch_norm_elu_pool`.
    """
    _check_conv_pool(x, w)
    one_d = x.ndim == 3
    x, w, window = _as_2d(x, w, window)
    geo = _conv_pool_geometry(x.shape, w.shape, conv_padding, window, pool_padding)
    if conv_bias is None:
        conv_bias = jnp.zeros(w.shape[-1], x.dtype)
    y, mean, var = _conv_bn_elu_pool(x, w, conv_bias, scale, bias, geo, float(epsilon))
    return (y[:, 0] if one_d else y), mean, var
