"""Zhao et al. 2019's 2-D CNN-LSTM on log-mels, its dense variant and the pooling fix.

Sources: Zhao, Mao & Chen (2019), "Speech emotion recognition using deep 1D & 2D CNN LSTM networks",
layer table as reprinted in seed 002 (table 2); seed 000 (Keras reimplementation, the LSTM-redundancy
finding, the dense replacement and the pooling fix). The network is the same as
``/work/shared/bench/bench_torch.py``'s ``CNNLSTM``.

Decisions the documents leave open (besides the conventions in :mod:`sercore.models.blocks`):

* Pool padding: a parameter. 'same' (the default, as the PyTorch reference's ``ceil_mode=True``)
  gives 128x251 -> 1x2x128, so the LSTM runs 2 steps; 'valid' gives 1x1x128 as seed 000 reports
  (one step: the LSTM is a gated dense layer, see :mod:`sercore.models.analysis`). XLA's 'SAME'
  centres the -inf padding (e.g. 126 frames pooled by 4: one pad column before, one after) where
  PyTorch's ``ceil_mode`` pads after; output sizes and cost are the same, window alignment differs.
* Sequence: the CNN output (F', T', C) becomes T' steps of F'*C features (time is the sequence axis).
* The LSTM's last output feeds Dense(K); the softmax is folded into the loss (logits out).
* ``zhao2d_dense``: seed 000 says only "two dense layers"; sercore flattens the CNN output and uses
  Dense(256) -> ReLU -> Dense(256) -> ReLU, then Dense(K) as in the original, no dropout.
* Pooling fix: seed 000 says "smaller pooling size along the frame axis" without numbers. Frequency
  pools stay (2, 4, 4, 4); time pools default to (2, 2, 2, 1), which turns 251 frames into 32 LSTM
  steps of ~128 ms. ``time_pools`` is a parameter (an int applies to all four blocks).
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from .blocks import LFLBStack, MLP, Recurrent, _as_tuple, dense, to_sequence

CHANNELS = (64, 64, 128, 128)
FREQ_POOLS = (2, 4, 4, 4)
TIME_POOLS = (2, 4, 4, 4)
POOLFIX_TIME_POOLS = (2, 2, 2, 1)


class CnnRnn2D(nnx.Module):
    """Four 2-D LFLBs, then an LSTM/BiLSTM over time (or dense layers), then Dense(K).

    Parameters
    ----------
    num_classes : int
        K, the number of emotions.
    input_shape : tuple of int
        (n_mels, n_frames, channels) of one utterance.
    channels : sequence of int
        Conv channels per LFLB.
    freq_pools, time_pools : int or sequence of int
        Max-pool window (= stride) along mels and frames, per LFLB.
    pool_padding : {'same', 'valid'}
    head : {'lstm', 'bilstm', 'dense'}
    hidden : int
        LSTM units (per direction).
    dense_units : sequence of int
        Widths of the dense head when ``head='dense'``.
    rngs : nnx.Rngs

    Attributes
    ----------
    recurrent_steps : int or None
        Number of steps the recurrent layer sees for ``input_shape`` (None for the dense head).
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels=CHANNELS,
                 freq_pools=FREQ_POOLS, time_pools=TIME_POOLS, pool_padding: str = "same",
                 head: str = "lstm", hidden: int = 256, dense_units=(256, 256), rngs: nnx.Rngs):
        n = len(channels)
        pools = tuple(zip(_as_tuple(freq_pools, n, "freq_pools"), _as_tuple(time_pools, n, "time_pools")))
        self.cnn = LFLBStack(input_shape[-1], channels, pools, pool_padding=pool_padding, rngs=rngs)
        f, t, c = self.cnn.output_shape(input_shape)
        self.head = head
        if head == "dense":
            self.mlp = MLP(f * t * c, dense_units, rngs=rngs)
            width, self.recurrent_steps = self.mlp.out_features, None
        else:
            self.rnn = Recurrent(f * c, hidden, bidirectional=(head == "bilstm"), rngs=rngs)
            width, self.recurrent_steps = self.rnn.out_features, t
        self.out = dense(width, num_classes, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> penultimate features (B, D): the LSTM's last output."""
        z = self.cnn(x)
        if self.head == "dense":
            return self.mlp(z.reshape(z.shape[0], -1))
        return self.rnn.summary(to_sequence(z))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> logits (B, K)."""
        return self.out(self.embed(x))


def zhao2d(num_classes, input_shape, *, rngs, pool_padding="same", **kw):
    """The paper net: 4 LFLBs (pools 2, 4, 4, 4), LSTM 256, Dense(K)."""
    return CnnRnn2D(num_classes, input_shape, pool_padding=pool_padding, rngs=rngs, **kw)


def zhao2d_dense(num_classes, input_shape, *, rngs, **kw):
    """The paper's CNN with the LSTM replaced by two dense layers (seed 000)."""
    return CnnRnn2D(num_classes, input_shape, head="dense", rngs=rngs, **kw)


def poolfix2d(num_classes, input_shape, *, rngs, time_pools=POOLFIX_TIME_POOLS, **kw):
    """The pooling fix (seed 000): time pooled less, so the LSTM sees tens of steps."""
    return CnnRnn2D(num_classes, input_shape, time_pools=time_pools, rngs=rngs, **kw)


def poolfix2d_bilstm(num_classes, input_shape, *, rngs, time_pools=POOLFIX_TIME_POOLS, **kw):
    """The pooling fix with a BiLSTM (256 units per direction)."""
    return CnnRnn2D(num_classes, input_shape, time_pools=time_pools, head="bilstm", rngs=rngs, **kw)
