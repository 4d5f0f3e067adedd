"""Seed 003's baseline 2-D CNN (``baseline_cnn``), table 4.

Four LFLBs (Conv 3x3 'same' -> BatchNorm -> ELU -> MaxPool 'same' -> Dropout), pools 2, 4, 4, 4,
dropout 0.3, 0.3, 0.4, 0.4; Flatten; Dense(64) -> Dropout(0.5) -> BatchNorm -> ReLU -> Dropout(0.5);
Dense(K) (softmax folded into the loss).

Decisions the document leaves open (besides :mod:`sercore.models.blocks`' conventions): channels
64, 64, 128, 128 as in table 4; the embedding (penultimate features) is the 64-D ReLU output before
the last dropout. On 128x251 the flattened CNN output is 1 x 2 x 128 = 256.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from .blocks import LFLBStack, batch_norm, dense, flat_size
from .zhao import CHANNELS, FREQ_POOLS, TIME_POOLS


class BaselineCNN(nnx.Module):
    """Seed 003 table 4.

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        (n_mels, n_frames, channels).
    channels : sequence of int
    block_dropouts : sequence of float
        Dropout after each LFLB.
    dense_units : int
    dropout : float
        The two dropouts around the dense layer's BatchNorm/ReLU.
    with_output_layer : bool
        False builds the feature extractor only (``embed``), as ``ae_fusion`` uses it.
    rngs : nnx.Rngs
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels=CHANNELS,
                 block_dropouts=(0.3, 0.3, 0.4, 0.4), dense_units: int = 64, dropout: float = 0.5,
                 with_output_layer: bool = True, rngs: nnx.Rngs):
        self.recurrent_steps = None
        self.cnn = LFLBStack(input_shape[-1], channels, tuple(zip(FREQ_POOLS, TIME_POOLS)),
                             dropouts=block_dropouts, rngs=rngs)
        self.fc = dense(flat_size(self.cnn.output_shape(input_shape)), dense_units, rngs=rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.bn = batch_norm(dense_units, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)
        self.out = dense(dense_units, num_classes, rngs=rngs) if with_output_layer else None
        self.out_features = dense_units

    def embed(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> (B, 64) penultimate features."""
        z = self.cnn(x)
        return nnx.relu(self.bn(self.dropout1(self.fc(z.reshape(z.shape[0], -1)))))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> logits (B, K)."""
        return self.out(self.dropout2(self.embed(x)))


def baseline_cnn(num_classes, input_shape, *, rngs, **kw):
    return BaselineCNN(num_classes, input_shape, rngs=rngs, **kw)
