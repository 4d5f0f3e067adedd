"""Convolution and max-pooling with backward passes that XLA:CPU runs fast.

The paper nets spend nearly all their training time in two backward kernels that XLA:CPU compiles
poorly: the convolution's filter gradient (a convolution whose window is the whole feature map) and
max-pooling's ``select_and_scatter``. The functions here compute the same values and the same
gradients with "forward-friendly" operations instead:

* :func:`conv2d` -- forward is ``lax.conv_general_dilated``; the input gradient is a forward
  convolution of the output gradient with the flipped, transposed kernel; the filter gradient is one
  matrix product per kernel tap, ``dy^T @ shifted(x)``, summed over batch and positions.
* :func:`max_pool2d` -- forward is ``lax.reduce_window``; the backward pass compares each of the
  ph * pw taps of every window (strided slices) with the window max and routes the gradient to the
  first maximum (row-major order inside the window), exactly as ``jax.grad`` of
  ``lax.reduce_window`` (``select_and_scatter``) does, ties included.

Both are drop-in replacements, with float32-rounding-level differences only, for
``lax.conv_general_dilated`` and ``flax.nnx.max_pool`` on NHWC tensors; :func:`conv1d` and
:func:`max_pool1d` are the same on (batch, time, channels) tensors. Everything is jittable,
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

import jax
import jax.numpy as jnp
from jax import lax

from .errors import ConfigError

__all__ = ["conv2d", "conv1d", "max_pool2d", "max_pool1d", "pool_output_size"]

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
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_DIMENSION_NUMBERS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d(x, w, pads):
    return _conv(x, w, pads)


def _conv2d_fwd(x, w, pads):
    return _conv(x, w, pads), (x, w)


def _conv2d_bwd(pads, residuals, dy):
    x, w = residuals
    kh, kw, c_in, c_out = w.shape
    (ph_lo, ph_hi), (pw_lo, pw_hi) = pads
    # Input gradient: a forward ("full") correlation of dy with the flipped kernel, in and out
    # channels swapped; the padding mirrors the forward one.
    w_flip = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv(dy, w_flip, ((kh - 1 - ph_lo, kh - 1 - ph_hi), (kw - 1 - pw_lo, kw - 1 - pw_hi)))
    # Filter gradient: for every tap (i, j), dw[i, j] = dy^T @ x shifted by (i, j); each is one
    # matrix product with the long (batch * positions) axis contracted, which XLA:CPU runs as a
    # plain GEMM instead of a convolution whose window is the whole feature map.
    x_pad = jnp.pad(x, ((0, 0), (ph_lo, ph_hi), (pw_lo, pw_hi), (0, 0)))
    _, h_out, w_out, _ = dy.shape
    dy_t = dy.reshape(-1, c_out).T                                  # (c_out, batch * positions)
    taps = [dy_t @ x_pad[:, i:i + h_out, j:j + w_out, :].reshape(-1, c_in)
            for i in range(kh) for j in range(kw)]                  # each (c_out, c_in)
    dw = jnp.stack(taps).reshape(kh, kw, c_out, c_in).transpose(0, 1, 3, 2)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, padding: str = "same") -> jax.Array:
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

    Returns
    -------
    jax.Array, shape (batch, height', width', c_out)
        height' = height for "same", height - kh + 1 for "valid" (likewise width').

    See Also
    --------
    conv1d : the same on (batch, time, channels).
    """
    if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ConfigError(f"conv2d expects x (B, H, W, C) and w (kh, kw, C, C_out); got {x.shape} and {w.shape}")
    y = _conv2d(x, w, _conv_pads(w.shape[:2], padding))
    if b is not None:
        y = y + b
    return y


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


def _reduce_window_max(x, ph, pw):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, ph, pw, 1), (1, ph, pw, 1), "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _tiled_max(x, ph, pw):
    """Max over non-overlapping ph x pw tiles of x (B, H, W, C); H % ph == W % pw == 0."""
    return _reduce_window_max(x, ph, pw)


def _tiled_max_fwd(x, ph, pw):
    y = _reduce_window_max(x, ph, pw)
    return y, (x, y)


def _tiled_max_bwd(ph, pw, residuals, dy):
    # Route dy to the first maximum of each tile (row-major order inside the tile), like
    # select_and_scatter, with ph * pw strided slices and elementwise ops only: tap (i, j) of
    # every tile gets dy where it equals the tile max and no earlier tap did.
    x, y = residuals
    b, h, w, c = x.shape
    x_tiles = x.reshape(b, h // ph, ph, w // pw, pw, c)               # a free (row-major) view
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


def max_pool2d(x: jax.Array, window: tuple[int, int] | int, padding: str = "same") -> jax.Array:
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
    (h_lo, h_hi), (w_lo, w_hi) = _pool_pads(x.shape[1], ph, padding), _pool_pads(x.shape[2], pw, padding)
    if min(h_lo, h_hi, w_lo, w_hi) < 0:                      # VALID: crop
        x = x[:, : x.shape[1] + min(h_hi, 0), : x.shape[2] + min(w_hi, 0)]
    h_lo, h_hi, w_lo, w_hi = (max(v, 0) for v in (h_lo, h_hi, w_lo, w_hi))
    if h_lo or h_hi or w_lo or w_hi:
        x = jnp.pad(x, ((0, 0), (h_lo, h_hi), (w_lo, w_hi), (0, 0)), constant_values=-jnp.inf)
    return _tiled_max(x, ph, pw)


def max_pool1d(x: jax.Array, window: int, padding: str = "same") -> jax.Array:
    """Max-pool (batch, time, channels) with stride == window; see :func:`max_pool2d`.

    Returns
    -------
    jax.Array, shape (batch, ceil(time / window) or floor, channels)
    """
    if x.ndim != 3:
        raise ConfigError(f"max_pool1d expects x (B, T, C); got {x.shape}")
    return max_pool2d(x[:, None], (1, int(window)), padding)[:, 0]

