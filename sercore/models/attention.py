"""CNN + BiLSTM + additive attention pooling over time (``attn_blstm``).

Sources: seed 003 section 3.5/4.4 (CNN + attention-based LSTM: the LSTM's outputs are weighted by an
attention layer and the weighted context feeds a dense layer before the output layer; "we increased
the dropout") and seed 004 (BLSTM + attention over segment features).

Decisions the documents leave open (besides :mod:`sercore.models.blocks`' conventions):

* Front end: the pooling-fix CNN of ``poolfix2d`` (frequency pools 2, 4, 4, 4; time pools 2, 2, 2, 1),
  so attention has ~32 steps to weigh on 251 frames.
* BiLSTM 128 units per direction; attention is additive (Bahdanau) with 128 units, one score per step,
  softmax over time (no masking: every clip has the same length).
* Head: Dense(64) -> ReLU -> Dropout(0.5) -> Dense(K); the 64-D activation (before dropout) is the
  embedding.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from .blocks import AttentionPool, LFLBStack, MLP, Recurrent, _as_tuple, dense, to_sequence
from .zhao import CHANNELS, FREQ_POOLS, POOLFIX_TIME_POOLS


class AttnBLSTM(nnx.Module):
    """Four LFLBs -> BiLSTM over time -> attention pooling -> Dense head.

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        (n_mels, n_frames, channels).
    channels, freq_pools, time_pools, pool_padding
        The CNN front end, as in :class:`sercore.models.zhao.CnnRnn2D`.
    hidden : int
        LSTM units per direction.
    attention_units : int
    dense_units : sequence of int
    dropout : float
        Dropout before the output layer.
    rngs : nnx.Rngs
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels=CHANNELS,
                 freq_pools=FREQ_POOLS, time_pools=POOLFIX_TIME_POOLS, pool_padding: str = "same",
                 hidden: int = 128, attention_units: int = 128, dense_units=(64,),
                 dropout: float = 0.5, rngs: nnx.Rngs):
        n = len(channels)
        pools = tuple(zip(_as_tuple(freq_pools, n, "freq_pools"), _as_tuple(time_pools, n, "time_pools")))
        self.cnn = LFLBStack(input_shape[-1], channels, pools, pool_padding=pool_padding, rngs=rngs)
        f, t, c = self.cnn.output_shape(input_shape)
        self.recurrent_steps = t
        self.rnn = Recurrent(f * c, hidden, bidirectional=True, rngs=rngs)
        self.attention = AttentionPool(self.rnn.out_features, attention_units, rngs=rngs)
        self.mlp = MLP(self.rnn.out_features, dense_units, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = dense(self.mlp.out_features, num_classes, rngs=rngs)

    def embed(self, x: jax.Array, return_attention: bool = False):
        """(B, n_mels, n_frames, C) -> (B, D) [, attention weights (B, T)]."""
        context, weights = self.attention(self.rnn(to_sequence(self.cnn(x))))
        z = self.mlp(context)
        return (z, weights) if return_attention else z

    def __call__(self, x: jax.Array, return_attention: bool = False):
        """(B, n_mels, n_frames, C) -> logits (B, K) [, attention weights (B, T) summing to 1]."""
        z, weights = self.embed(x, return_attention=True)
        logits = self.out(self.dropout(z))
        return (logits, weights) if return_attention else logits


def attn_blstm(num_classes, input_shape, *, rngs, **kw):
    return AttnBLSTM(num_classes, input_shape, rngs=rngs, **kw)
