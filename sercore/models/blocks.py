"""Building blocks shared by every sercore model: LFLBs, recurrent layers, attention pooling.

Written once, used by all model files. Conventions (one choice, used everywhere; the source documents
are Keras/TensorFlow code, so sercore follows Keras defaults wherever they leave a detail open):

* Layout NHWC: a log-mel batch is (B, n_mels, n_frames, C); a waveform batch is (B, n_samples, 1).
* Conv and Dense kernels: Glorot-uniform, zero bias (Keras ``glorot_uniform``/``zeros``).
  Flax's own default would be LeCun-normal.
* BatchNorm: momentum 0.99, epsilon 1e-3 (Keras). Flax uses the same momentum convention
  (``running = 0.99 * running + 0.01 * batch``) but a default epsilon of 1e-5, so epsilon is set.
* LSTM: gate layout i, f, g, o (``nnx.OptimizedLSTMCell``: one input kernel (D, 4H) without bias,
  one recurrent kernel (H, 4H) with the bias); input kernel Glorot-uniform, recurrent kernel
  orthogonal, bias zero except the forget gate's, which starts at 1 (Keras ``unit_forget_bias``).
  So an LSTM has 4H(D + H + 1) parameters as in Keras; PyTorch keeps two biases, 4H more.
* A recurrent layer's summary of a sequence is its last output (Keras ``return_sequences=False``);
  for a BiLSTM the forward direction's last output and the backward direction's output at t = 0
  (each direction's final state), concatenated.
* The carry starts at zero.

The conv and max-pool calls of an LFLB live in one place (:meth:`LFLB.__call__` and
:func:`max_pool`) so that faster implementations (``sercore.ops``) can be swapped in there.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .. import ops
from ..errors import ConfigError

KERNEL_INIT = nnx.initializers.glorot_uniform()
RECURRENT_INIT = nnx.initializers.orthogonal()
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def dense(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """A Dense layer with sercore's (Keras) initialisers."""
    return nnx.Linear(in_features, out_features, kernel_init=KERNEL_INIT, rngs=rngs)


def batch_norm(num_features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm over the last axis with Keras' momentum (0.99) and epsilon (1e-3)."""
    return nnx.BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


# --------------------------------------------------------------------------------------------------
# Shape arithmetic (pure Python, so a model's sizes are known before it is built)
# --------------------------------------------------------------------------------------------------

def pooled_length(n: int, window: int, padding: str) -> int:
    """Length of an axis of ``n`` after max-pooling with window = stride = ``window``.

    'same' keeps a partial last window (ceil(n / window)); 'valid' drops it (floor).
    """
    padding = padding.upper()
    if padding == "SAME":
        return -(-n // window)
    if padding == "VALID":
        return n // window
    raise ConfigError(f"pool padding must be 'same' or 'valid', got {padding!r}")


def conv_length(n: int, kernel: int, padding: str) -> int:
    """Length of an axis of ``n`` after a stride-1 convolution."""
    return n if padding.upper() == "SAME" else n - kernel + 1


def _as_tuple(value, n: int, name: str) -> tuple:
    """A per-block setting: one value for all ``n`` blocks, or a sequence of ``n`` values."""
    if isinstance(value, (int, float, str)):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ConfigError(f"{name} must have {n} entries (one per block), got {value!r}")
    return value


def max_pool(x: jax.Array, window: Sequence[int], padding: str = "SAME", *, strided: bool = False) -> jax.Array:
    """Max-pool the spatial axes of a channels-last batch, stride = window.

    Parameters
    ----------
    x : jax.Array
        (B, *spatial, C).
    window : sequence of int
        Pool size per spatial axis (2-D: (freq, time); 1-D: (time,)).
    padding : {'same', 'valid'}
        'same' pads with -inf at the end (TensorFlow placement), so a partial window is kept.
    strided : bool
        See :func:`sercore.ops.max_pool2d` (for a cheap elementwise producer of ``x``).
    """
    if len(window) == 2 and x.ndim == 4:          # sercore.ops: same values and gradients, fast backward
        return ops.max_pool2d(x, tuple(window), padding.lower(), strided=strided)
    if len(window) == 1 and x.ndim == 3:
        return ops.max_pool1d(x, window[0], padding.lower(), strided=strided)
    dims = (1, *window, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, dims, padding.upper())


def _plain_padding(layer: nnx.Conv, x: jax.Array) -> str | None:
    """'same' or 'valid' for a stride-1, ungrouped, undilated ``nnx.Conv`` on ``x``; None otherwise."""
    padding = layer.padding.lower() if isinstance(layer.padding, str) else None
    steps = [layer.strides, layer.kernel_dilation, layer.input_dilation]
    plain = all(s in (None, 1) for step in steps for s in (step if isinstance(step, (tuple, list)) else (step,)))
    if (plain and layer.feature_group_count == 1 and padding in ("same", "valid")
            and x.ndim == layer.kernel[...].ndim and x.ndim in (3, 4)):
        return padding
    return None


def conv(layer: nnx.Conv, x: jax.Array, *, with_bias: bool = True) -> jax.Array | None:
    """Apply an ``nnx.Conv`` with :mod:`sercore.ops` (same values, fast backward on CPU).

    Stride 1 (1-D or 2-D) and strided 2-D layers (ResNets) go through :mod:`sercore.ops`. With
    ``with_bias=False`` the bias is left out, and None comes back where the layer is not one
    :mod:`sercore.ops` covers (groups, dilation, explicit padding), so the caller takes the plain path.
    """
    padding = _plain_padding(layer, x)
    kernel, bias = layer.kernel[...], None if layer.bias is None else layer.bias[...]
    if padding is None:
        strides = _strided_2d(layer, x)
        if strides is None:
            return layer(x) if with_bias else None
        return ops.conv2d(x, kernel, bias if with_bias else None, padding=layer.padding.lower(), strides=strides)
    op = ops.conv2d if x.ndim == 4 else ops.conv1d
    return op(x, kernel, bias if with_bias else None, padding=padding)


def _strided_2d(layer: nnx.Conv, x: jax.Array) -> tuple[int, int] | None:
    """The strides of a strided, ungrouped, undilated 2-D ``nnx.Conv`` with 'same'/'valid' padding
    (which :func:`sercore.ops.conv2d` computes); None for any other layer."""
    padding = layer.padding.lower() if isinstance(layer.padding, str) else None
    strides = layer.strides
    strides = (strides,) * 2 if isinstance(strides, int) else tuple(strides) if strides is not None else (1, 1)
    undilated = all(d in (None, 1) for step in (layer.kernel_dilation, layer.input_dilation)
                    for d in (step if isinstance(step, (tuple, list)) else (step,)))
    if (x.ndim == 4 and layer.kernel[...].ndim == 4 and len(strides) == 2 and padding in ("same", "valid")
            and undilated and layer.feature_group_count == 1):
        return strides
    return None


#: LFLBs run BatchNorm -> ELU -> max-pool pool-first: in training as one fused op
#: (:func:`sercore.ops.batch_norm_elu_pool`, or :func:`sercore.ops.conv_bn_elu_pool` with the
#: convolution too where the kernel has few taps x input channels), in evaluation as max-pool ->
#: BatchNorm -> ELU (the same values); tests switch it off to compare with the plain chain.
FUSED = True


# --------------------------------------------------------------------------------------------------
# Local feature learning blocks
# --------------------------------------------------------------------------------------------------

class LFLB(nnx.Module):
    """Local feature learning block: Conv (stride 1) -> BatchNorm -> ELU -> MaxPool [-> Dropout].

    The same class serves 2-D log-mel input (``kernel=(3, 3)``, ``pool=(2, 2)``) and 1-D raw audio
    (``kernel=(3,)``, ``pool=(4,)``): the number of spatial axes follows ``len(kernel)``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output channels.
    kernel : tuple of int
        Convolution kernel per spatial axis.
    pool : tuple of int
        Max-pool window (= stride) per spatial axis; 1 leaves an axis alone.
    conv_padding, pool_padding : {'same', 'valid'}
    dropout : float
        Dropout rate after the pool (0: none), as in seed 003's baseline CNN.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel=(3, 3), pool=(2, 2),
                 conv_padding: str = "same", pool_padding: str = "same", dropout: float = 0.0,
                 rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_features, out_features, tuple(kernel), strides=1,
                             padding=conv_padding.upper(), kernel_init=KERNEL_INIT, rngs=rngs)
        self.bn = batch_norm(out_features, rngs=rngs)
        self.pool = tuple(pool)
        self.pool_padding = pool_padding.upper()
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        fast = FUSED and len(self.pool) == x.ndim - 2
        conv_padding = _plain_padding(self.conv, x) if fast else None
        # A kernel with few taps x input channels (the first block) is fused into the pool: its
        # output map, the largest tensor of the model, is never written (sercore.ops.conv_bn_elu_pool).
        into_pool = conv_padding is not None and ops.conv_pool_applies(self.conv.kernel.shape)
        window = self.pool if len(self.pool) == 2 else self.pool[0]
        pool_padding = self.pool_padding.lower()
        kernel = self.conv.kernel[...]
        conv_bias = None if self.conv.bias is None else self.conv.bias[...]
        if fast and self.bn.use_running_average:
            # Evaluation: BatchNorm with running statistics and ELU are monotonic per channel (rising
            # where scale >= 0), so pooling c * sign before them gives the same values and applies
            # them to the pooled map only. (The conv bias commutes with the pool: rounding is monotonic.)
            sign = ops.pool_first_sign(self.bn.scale[...], x.dtype)
            if into_pool:
                pooled = ops.conv_max_pool(x, kernel * sign, window, conv_padding, pool_padding) * sign
                pooled = pooled if conv_bias is None else pooled + conv_bias
            else:
                pooled = max_pool(conv(self.conv, x) * sign, self.pool, self.pool_padding, strided=True) * sign
            x = ops.elu(self.bn(pooled))
            return x if self.dropout is None else self.dropout(x)
        bn = self.bn
        if into_pool:
            x, mean, var = ops.conv_bn_elu_pool(x, kernel, conv_bias, bn.scale[...], bn.bias[...], window,
                                                conv_padding, pool_padding, epsilon=bn.epsilon)
        elif conv_padding is not None:
            c = conv(self.conv, x, with_bias=False)
            x, mean, var = ops.batch_norm_elu_pool(c, conv_bias, bn.scale[...], bn.bias[...], window,
                                                   pool_padding, epsilon=bn.epsilon)
        else:
            x = max_pool(nnx.elu(self.bn(conv(self.conv, x))), self.pool, self.pool_padding)
            return x if self.dropout is None else self.dropout(x)
        # Batch statistics, and the running averages updated as flax.nnx.BatchNorm does.
        m = bn.momentum
        bn.mean[...] = jax.lax.stop_gradient(m * bn.mean[...] + (1 - m) * mean)
        bn.var[...] = jax.lax.stop_gradient(m * bn.var[...] + (1 - m) * var)
        return x if self.dropout is None else self.dropout(x)


class LFLBStack(nnx.Module):
    """A chain of LFLBs, e.g. Zhao et al.'s four blocks.

    Parameters
    ----------
    in_features : int
        Channels of the input (1 for a log-mel, 3 for log-mel + deltas, 1 for raw audio).
    channels : sequence of int
        Output channels per block.
    pools : sequence of tuple
        Pool window per block, e.g. ((2, 2), (4, 4), (4, 4), (4, 4)).
    kernels : tuple or sequence of tuple
        Conv kernel, shared by all blocks or one per block.
    conv_padding, pool_padding : str or sequence of str
        'same' or 'valid', shared or per block.
    dropouts : float or sequence of float
        Dropout rate after each block.
    """

    def __init__(self, in_features: int, channels: Sequence[int], pools: Sequence[Sequence[int]], *,
                 kernels=(3, 3), conv_padding="same", pool_padding="same", dropouts=0.0,
                 rngs: nnx.Rngs):
        n = len(channels)
        kernels = tuple(kernels)
        kernels = (kernels,) * n if isinstance(kernels[0], int) else kernels
        if len(kernels) != n:
            raise ConfigError(f"kernels must have {n} entries (one per block), got {kernels!r}")
        self.spec = dict(channels=tuple(channels), pools=tuple(tuple(p) for p in pools),
                         kernels=tuple(tuple(k) for k in kernels),
                         conv_padding=_as_tuple(conv_padding, n, "conv_padding"),
                         pool_padding=_as_tuple(pool_padding, n, "pool_padding"))
        dropouts = _as_tuple(dropouts, n, "dropouts")
        if len(self.spec["pools"]) != n:
            raise ConfigError(f"pools must have {n} entries (one per block), got {pools!r}")
        blocks, c_in = [], in_features
        for i in range(n):
            blocks.append(LFLB(c_in, channels[i], kernel=self.spec["kernels"][i],
                               pool=self.spec["pools"][i], conv_padding=self.spec["conv_padding"][i],
                               pool_padding=self.spec["pool_padding"][i], dropout=dropouts[i],
                               rngs=rngs))
            c_in = channels[i]
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array) -> jax.Array:
        k, n = self._chunked_blocks(x.shape) if self._evaluating() else (0, 0)
        if k:
            # Evaluation on CPU: the first k blocks, whose maps are large, a few examples at a time
            # (see sercore.ops.batch_chunk): each chunk's maps largely stay in cache from one block
            # to the next. (Training cannot: BatchNorm's statistics need the whole batch.)
            def head(xc):
                for block in self.blocks[:k]:
                    xc = block(xc)
                return xc
            x = ops.map_chunks(head, x, n)
        for block in self.blocks[k:]:
            x = block(x)
        return x

    def _evaluating(self) -> bool:
        return all(block.bn.use_running_average for block in self.blocks)

    def _chunked_blocks(self, x_shape) -> tuple[int, int]:
        """(k, n): run the first k blocks in chunks of n examples; (0, 0) for none.

        k covers every block up to the last one whose input :func:`sercore.ops.batch_chunk` would
        chunk, so that blocks 1-2 of zhao2d (inputs 128 x 251 x 1 and 64 x 126 x 64) go together.
        """
        shapes = [tuple(x_shape[1:]), *self._block_shapes(x_shape[1:])[:-1]]     # each block's input
        chunks = [ops.batch_chunk((x_shape[0], *shape)) for shape in shapes]
        k = max((i + 1 for i, n in enumerate(chunks) if n), default=0)
        return (k, max(chunks)) if k else (0, 0)

    def _block_shapes(self, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
        """Per-example shape (*spatial, channels) after each block, for a per-example ``input_shape``."""
        spatial, shapes, s = list(input_shape[:-1]), [], self.spec
        for kernel, pool, cpad, ppad, c in zip(s["kernels"], s["pools"], s["conv_padding"], s["pool_padding"],
                                               s["channels"]):
            spatial = [pooled_length(conv_length(n, k, cpad), p, ppad)
                       for n, k, p in zip(spatial, kernel, pool)]
            if min(spatial) < 1:
                raise ConfigError(f"input shape {tuple(input_shape)} is too small for the LFLB stack "
                                  f"(pools {s['pools']}): an axis shrinks to 0; use longer input, "
                                  "smaller pools or pool_padding='same'")
            shapes.append((*spatial, c))
        return shapes

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Per-example output shape (*spatial, channels) for a per-example ``input_shape``."""
        return self._block_shapes(input_shape)[-1]


def to_sequence(x: jax.Array) -> jax.Array:
    """CNN output (B, F, T, C) -> sequence (B, T, F*C) along the time axis (1-D: (B, T, C) as is)."""
    if x.ndim == 3:
        return x
    b, f, t, c = x.shape
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(b, t, f * c)


# --------------------------------------------------------------------------------------------------
# Recurrent layers
# --------------------------------------------------------------------------------------------------

def _forget_bias_one(key, shape, dtype=jnp.float32):
    """Bias of an (i, f, g, o) LSTM: zero, except 1 for the forget gate (Keras unit_forget_bias)."""
    hidden = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., hidden:2 * hidden].set(1.0)


def _cell(kind: str, in_features: int, hidden: int, rngs: nnx.Rngs):
    if kind == "lstm":
        return nnx.OptimizedLSTMCell(in_features, hidden, kernel_init=KERNEL_INIT,
                                     recurrent_kernel_init=RECURRENT_INIT, bias_init=_forget_bias_one,
                                     rngs=rngs)
    if kind == "gru":
        return nnx.GRUCell(in_features, hidden, kernel_init=KERNEL_INIT,
                           recurrent_kernel_init=RECURRENT_INIT, rngs=rngs)
    raise ConfigError(f"unknown recurrent cell {kind!r}: use 'lstm' or 'gru'")


def run_cell(cell, x: jax.Array, *, reverse: bool = False) -> jax.Array:
    """Run an RNN cell over (B, T, D) from a zero carry with ``jax.lax.scan``; returns (B, T, H).

    With ``reverse=True`` the cell reads the sequence from the end; outputs stay in input order.
    """
    b = x.shape[0]
    zeros = jnp.zeros((b, cell.hidden_features), x.dtype)
    carry = (zeros, zeros) if isinstance(cell, nnx.OptimizedLSTMCell) else zeros
    xs = jnp.swapaxes(x, 0, 1)
    if reverse:
        xs = xs[::-1]
    _, hs = jax.lax.scan(lambda c, xt: cell(c, xt), carry, xs)
    if reverse:
        hs = hs[::-1]
    return jnp.swapaxes(hs, 0, 1)


class Recurrent(nnx.Module):
    """One or more stacked LSTM/GRU layers, uni- or bidirectional, over (B, T, D).

    Parameters
    ----------
    in_features : int
        D, features per time step.
    hidden : int or sequence of int
        Units per layer (per direction); a sequence stacks layers, e.g. (256, 256).
    cell : {'lstm', 'gru'}
    bidirectional : bool
        Run a second cell backwards and concatenate (output width 2H).

    ``__call__`` returns every step's output (B, T, H or 2H); :meth:`summary` returns the last
    layer's final state (B, H or 2H) as described in the module docstring.
    """

    def __init__(self, in_features: int, hidden, *, cell: str = "lstm", bidirectional: bool = False,
                 rngs: nnx.Rngs):
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        self.bidirectional = bidirectional
        fwd, bwd, d = [], [], in_features
        for h in hidden:
            fwd.append(_cell(cell, d, h, rngs))
            if bidirectional:
                bwd.append(_cell(cell, d, h, rngs))
            d = 2 * h if bidirectional else h
        self.forward_cells = nnx.List(fwd)
        self.backward_cells = nnx.List(bwd)
        self.out_features = d

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, cell in enumerate(self.forward_cells):
            y = run_cell(cell, x)
            if self.bidirectional:
                y = jnp.concatenate([y, run_cell(self.backward_cells[i], x, reverse=True)], axis=-1)
            x = y
        return x

    def summary(self, x: jax.Array) -> jax.Array:
        """Final state of the last layer: (B, H), or (B, 2H) = [forward at T-1, backward at 0]."""
        y = self(x)
        if not self.bidirectional:
            return y[:, -1]
        h = y.shape[-1] // 2
        return jnp.concatenate([y[:, -1, :h], y[:, 0, h:]], axis=-1)


class AttentionPool(nnx.Module):
    """Additive (Bahdanau-style) attention pooling over time.

    ``e_t = v . tanh(W h_t + b)``, ``a = softmax_t(e)``, ``context = sum_t a_t h_t``.

    Parameters
    ----------
    in_features : int
        Width of each step h_t.
    attention_units : int
        Width of the hidden projection W.
    """

    def __init__(self, in_features: int, attention_units: int = 128, *, rngs: nnx.Rngs):
        self.proj = dense(in_features, attention_units, rngs=rngs)
        self.score = nnx.Linear(attention_units, 1, use_bias=False, kernel_init=KERNEL_INIT, rngs=rngs)

    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(B, T, D) -> (context (B, D), weights (B, T)); weights sum to 1 over T."""
        scores = self.score(jnp.tanh(self.proj(h)))[..., 0]
        weights = jax.nn.softmax(scores, axis=-1)
        return jnp.einsum("bt,btd->bd", weights, h), weights


class MLP(nnx.Module):
    """Dense layers with an activation and dropout after each: the classifier heads.

    Parameters
    ----------
    in_features : int
    units : sequence of int
        Hidden widths (may be empty: identity).
    activation : callable
    dropout : float
        Rate after each hidden layer (0: none).
    """

    def __init__(self, in_features: int, units: Sequence[int], *, activation=nnx.relu,
                 dropout: float = 0.0, rngs: nnx.Rngs):
        layers, d = [], in_features
        for u in units:
            layers.append(dense(d, u, rngs=rngs))
            d = u
        self.layers = nnx.List(layers)
        self.activation = activation
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out_features = d

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = self.activation(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return x


def frame_windows(x: jax.Array, size: int, step: int) -> jax.Array:
    """Cut (B, n_mels, n_frames, C) into windows along time: (B, n_windows, n_mels, size, C).

    Thin wrapper over :func:`sercore.features.frame_windows` (an index gather, jit-friendly).
    """
    from ..features import frame_windows as _frame_windows

    return _frame_windows(x, size, step, axis=-2, window_axis=-4)


def n_windows(n: int, size: int, step: int) -> int:
    """Number of windows :func:`frame_windows` cuts from ``n`` frames (trailing frames dropped)."""
    if size > n:
        raise ConfigError(f"window of {size} frames is longer than the input ({n} frames); "
                          "use a smaller window_size or longer clips")
    return 1 + (n - size) // step


def flat_size(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


# --------------------------------------------------------------------------------------------------
# Frozen parameters (autoencoder fusion)
# --------------------------------------------------------------------------------------------------

class FrozenParam(nnx.Variable):
    """A weight that is not trained: a plain ``nnx.Variable``, so ``nnx.Param`` filters (``nnx.grad``,
    ``nnx.Optimizer(model, tx, wrt=nnx.Param)``) skip it."""


def freeze(module: nnx.Module) -> nnx.Module:
    """Turn every ``nnx.Param`` of ``module`` into a :class:`FrozenParam` in place; returns ``module``."""
    for _, node in list(nnx.iter_graph(module)):
        if isinstance(node, nnx.Module):
            for name, value in list(vars(node).items()):
                if isinstance(value, nnx.Param):
                    setattr(node, name, FrozenParam(value[...]))
    return module
