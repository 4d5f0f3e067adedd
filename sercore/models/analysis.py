"""Looking inside models: parameter counts, per-layer output shapes, and the one-step-LSTM check.

* :func:`count_params` - trainable / non-trainable / all, in Keras' sense (BatchNorm statistics and
  frozen weights are non-trainable), so numbers compare with Keras summaries.
* :func:`trace_shapes` - every layer's output shape and parameter count (traced abstractly: nothing
  is computed), as a DataFrame.
* :func:`one_step_lstm_equivalence` - shows numerically that an LSTM run for one step from a zero
  state is a gated dense layer ``h = sigmoid(W_o x + b_o) * tanh(sigmoid(W_i x + b_i) * tanh(W_g x + b_g))``:
  the forget gate and the recurrent kernel never touch the output (seed 000's redundancy finding).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .blocks import FrozenParam

__all__ = ["count_params", "trace_shapes", "gated_dense", "one_step_lstm_equivalence"]


def _size(state) -> int:
    return int(sum(np.prod(np.shape(v)) for v in jax.tree.leaves(state)))


def count_params(model: nnx.Module, which: str = "trainable") -> int:
    """Number of scalars in ``model``.

    Parameters
    ----------
    which : {'trainable', 'non_trainable', 'total'}
        'trainable': ``nnx.Param`` (what the optimizer updates). 'non_trainable': BatchNorm
        running statistics and frozen weights. 'total': both (= a Keras summary's "Total params").
        RNG state is never counted.
    """
    trainable = _size(nnx.state(model, nnx.Param))
    frozen = _size(nnx.state(model, nnx.Any(nnx.BatchStat, FrozenParam)))
    counts = {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}
    if which not in counts:
        raise ValueError(f"which must be one of {sorted(counts)}, got {which!r}")
    return counts[which]


def _shape_of(out):
    leaves = jax.tree.leaves(out)
    shapes = [tuple(x.shape) for x in leaves]
    return shapes[0] if len(shapes) == 1 else tuple(shapes)


@contextlib.contextmanager
def _record_calls(module_types, records):
    """Temporarily wrap ``__call__`` of the classes defining it for ``module_types``."""
    owners = {}
    for t in module_types:
        owner = next((c for c in t.__mro__ if "__call__" in c.__dict__), None)
        if owner is not None and owner is not object:
            owners.setdefault(owner, owner.__dict__["__call__"])

    def wrap(original):
        def call(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            records.append((self, out))
            return out
        return call

    try:
        for owner, original in owners.items():
            setattr(owner, "__call__", wrap(original))
        yield
    finally:
        for owner, original in owners.items():
            setattr(owner, "__call__", original)


def trace_shapes(model: nnx.Module, input_shape: Sequence[int], *, batch_size: int = 1,
                 max_depth: int | None = None):
    """Output shape and parameter count of every layer, in call order.

    Parameters
    ----------
    model : nnx.Module
    input_shape : tuple of int
        One example's shape (no batch axis), e.g. (128, 251, 1).
    batch_size : int
        Leading axis of the traced batch (shapes include it; time-distributed models show
        batch x windows inside their per-window CNN).
    max_depth : int, optional
        Keep layers at most this deep (1: the model's direct children).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer`` (attribute path, e.g. "cnn.blocks.0.conv"), ``type``, ``depth``,
        ``output_shape`` (a tuple; a tuple of tuples for layers with several outputs, e.g. an RNN cell
        per step: (carry..., output)), ``params`` (trainable scalars in that layer and its children).
        The last row is the model itself. The model is traced in eval mode on a copy; nothing runs.
    """
    import pandas as pd

    graphdef, state = nnx.split(model)
    records: list = []

    def run(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        types = {type(node) for _, node in nnx.iter_graph(m) if isinstance(node, nnx.Module)}
        paths = {id(node): ".".join(str(p) for p in path)
                 for path, node in nnx.iter_graph(m) if isinstance(node, nnx.Module)}
        with _record_calls(types, records):
            out = m(x)
        records[:] = [(paths.get(id(mod), "?"), type(mod).__name__, _shape_of(o),
                       _size(nnx.state(mod, nnx.Param))) for mod, o in records]
        return out

    jax.eval_shape(run, state, jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32))
    rows = [{"layer": path or "(model)", "type": typ, "depth": 0 if not path else path.count(".") + 1,
             "output_shape": shape, "params": n} for path, typ, shape, n in records]
    df = pd.DataFrame(rows, columns=["layer", "type", "depth", "output_shape", "params"])
    if max_depth is not None:
        df = df[df["depth"] <= max_depth].reset_index(drop=True)
    return df


def gated_dense(cell: nnx.OptimizedLSTMCell, x: jax.Array) -> jax.Array:
    """The dense layer an LSTM cell turns into for one step from a zero state.

    Uses only the input kernel's i, g, o columns and the bias; the forget gate's columns and the
    recurrent kernel do not appear.

    Parameters
    ----------
    cell : nnx.OptimizedLSTMCell
    x : jax.Array
        (B, D) input.

    Returns
    -------
    jax.Array
        (B, H): ``sigmoid(x W_o + b_o) * tanh(sigmoid(x W_i + b_i) * tanh(x W_g + b_g))``.
    """
    h = cell.hidden_features
    w, b = cell.dense_i.kernel[...], cell.dense_h.bias[...]
    gate = lambda k: x @ w[:, k * h:(k + 1) * h] + b[k * h:(k + 1) * h]   # (i, f, g, o) layout
    i, g, o = jax.nn.sigmoid(gate(0)), jnp.tanh(gate(2)), jax.nn.sigmoid(gate(3))
    return o * jnp.tanh(i * g)


def one_step_lstm_equivalence(cell: nnx.OptimizedLSTMCell | None = None, x: jax.Array | None = None, *,
                              in_features: int = 128, hidden: int = 256, batch_size: int = 32,
                              seed: int = 0) -> dict:
    """Run an LSTM for one step from zero state and the equivalent gated dense layer; compare.

    Parameters
    ----------
    cell : nnx.OptimizedLSTMCell, optional
        E.g. ``model.rnn.forward_cells[0]`` of a trained ``zhao2d``; default: a fresh cell with
        sercore's initialisation (``in_features`` -> ``hidden``).
    x : jax.Array, optional
        (B, D) inputs, e.g. the CNN output of real log-mels; default: standard normal.

    Returns
    -------
    dict
        ``max_abs_diff`` between the two outputs (float32 round-off, ~1e-7), ``lstm_params`` (all
        of the cell's weights), ``used_params`` (input-kernel columns and biases of the i, g, o
        gates), ``unused_params`` (forget gate and recurrent kernel: never affect the output),
        ``recurrent_kernel_grad_norm`` and ``forget_gate_grad_norm`` (gradients of the outputs'
        sum with respect to those weights: exactly 0).
    """
    from .blocks import _cell

    if cell is None:
        cell = _cell("lstm", in_features, hidden, nnx.Rngs(seed))
    if x is None:
        x = jax.random.normal(jax.random.key(seed + 1), (batch_size, cell.in_features))
    h = cell.hidden_features
    zeros = jnp.zeros((x.shape[0], h), x.dtype)
    (_, lstm_out), _ = cell((zeros, zeros), x)
    dense_out = gated_dense(cell, x)

    def total(c):
        (_, out), _ = c((zeros, zeros), x)
        return out.sum()

    grads = nnx.grad(total)(cell)
    d_in = cell.in_features
    used = 3 * h * d_in + 3 * h
    lstm_params = count_params(cell)
    return {
        "max_abs_diff": float(jnp.max(jnp.abs(lstm_out - dense_out))),
        "lstm_params": lstm_params,
        "used_params": used,
        "unused_params": lstm_params - used,
        "recurrent_kernel_grad_norm": float(jnp.linalg.norm(grads.dense_h.kernel[...])),
        "forget_gate_grad_norm": float(jnp.linalg.norm(grads.dense_i.kernel[...][:, h:2 * h])
                                       + jnp.linalg.norm(grads.dense_h.bias[...][h:2 * h])),
    }


#: Parameter counts given by the source documents (or their reference code), to print beside ours.
DOCUMENTED_COUNTS = [
    dict(model="zhao2d", input_shape=(128, 251, 1), kwargs={}, source="../shared/bench PyTorch reference "
         "(same net, counted from its layers)", trainable=656_839, non_trainable=0,
         note="PyTorch's LSTM keeps two bias vectors (b_ih and b_hh): 2 x 4 x 256 = 1,024 more trainable "
              "scalars; its BatchNorm running statistics are buffers, not parameters"),
    dict(model="zhao2d", input_shape=(128, 251, 1), kwargs={}, source="Keras (000's reimplementation; "
         "../shared/bench Keras reference)", trainable=655_815, non_trainable=768,
         note="same layers and counting as Keras: one LSTM bias, BatchNorm statistics non-trainable"),
    dict(model="td_cnn_bilstm", input_shape=(128, 219, 1), kwargs="SEED002_TD_BILSTM",
         source="seed 002's Keras summary (2D CNN-BiLSTM time distributed)", trainable=371_399,
         non_trainable=1_024,
         note="rebuilt from the summary's output shapes (18 windows of 128 x 5, 128-channel 'valid' 2x2/2x1 "
              "convs); the summary prints 496 features per window, but its BiLSTM count needs 896: a typo"),
]


def parameter_table(rows=None):
    """Our parameter counts beside the documents' (:data:`DOCUMENTED_COUNTS`), computed now.

    Returns
    -------
    pandas.DataFrame
        One row per documented count: model, input, source, documented trainable / non-trainable,
        ours, the difference in trainable parameters, and why they differ.
    """
    import pandas as pd

    from . import create
    from .timedist import SEED002_TD_BILSTM

    out = []
    for r in rows or DOCUMENTED_COUNTS:
        kwargs = SEED002_TD_BILSTM if r["kwargs"] == "SEED002_TD_BILSTM" else r["kwargs"]
        model = nnx.eval_shape(lambda: create(r["model"], num_classes=7, input_shape=r["input_shape"], **kwargs))
        ours_t, ours_n = count_params(model, "trainable"), count_params(model, "non_trainable")
        out.append({"model": r["model"], "input": "x".join(map(str, r["input_shape"])), "documented by": r["source"],
                    "documented trainable": r["trainable"], "documented non-trainable": r["non_trainable"],
                    "ours trainable": ours_t, "ours non-trainable": ours_n,
                    "difference (trainable)": ours_t - r["trainable"], "why": r["note"]})
    return pd.DataFrame(out)
