"""Zhao et al. 2019's 1-D CNN-LSTM on the raw waveform (``zhao1d``, ``zhao1d_bilstm``).

Source: seed 002 table 1 (the paper's 1-D layer table) and its 1D CNN-BiLSTM variant: four 1-D LFLBs
(kernel 3, stride 1; channels 64, 64, 128, 128; max-pool 4 / stride 4), LSTM 256, Dense(K).

Decisions the documents leave open (besides :mod:`sercore.models.blocks`' conventions):

* Input: (n_samples, 1), 16 kHz; 4 s clips give 64000 / 256 = 250 LSTM steps.
* Pool padding 'same' (a parameter); the LSTM/BiLSTM's last output feeds Dense(K).
* BiLSTM: 256 units per direction.

Speed (training, batch 32, 64000-sample input, 2 cores shared with two other training jobs, so
absolute figures are low): a zhao1d step took 5.3 s (6.1 samples/s; zhao1d_bilstm 7.2 s, 4.4
samples/s). Timed separately (forward + backward), the four LFLBs took 1.8, 1.6, 1.0 and 0.4 s
(block 1 is already the fused :func:`sercore.ops.conv_bn_elu_pool` on 64 x 64000 maps; blocks 2-4
are :func:`sercore.ops.conv1d`, 64-128 channels, about 22 GFLOP a batch forward), the LSTM over its
250 steps 1.4 s: the CNN is about 80 % of the step, so a faster recurrence alone cannot give more
than about 1.3x. Taking the input projection out of the scan and writing the LSTM's backward by
hand gave no reliable gain there (branch ``h-speed-lstm``).

Measured again on 2026-12-04 on one idle core of the same machine (``taskset -c 1``, XLA on one
thread, ``sercore bench --models zhao1d,dcnn_blstm_attn --steps 2 --repeats 2``): zhao1d trains 14.5
samples/s, 2.24 GFLOP a sample, 39 % of that core's FP32 peak (83 GFLOP/s at 2.6 GHz); dcnn_blstm_attn
5.2 samples/s (3.2 GFLOP a sample executed, 20 % of peak; 44 % counted as direct convolutions). Block
2's convolution alone (32 x 16000 x 64 -> 64, kernel 3) runs forward at 73 GFLOP/s, 87 % of the peak,
and forward + both gradients at 64 %; as an im2col product, or as three shifted products, it is
1.3-2.4x slower. So the 1-D convolutions have little left to give: what remains is the first block
(a 64 x 64000 map per example: memory-bound) and the LSTM's 250 sequential steps.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from .blocks import LFLBStack, Recurrent, dense

CHANNELS = (64, 64, 128, 128)
POOLS = (4, 4, 4, 4)


class CnnRnn1D(nnx.Module):
    """Four 1-D LFLBs -> LSTM/BiLSTM over time -> Dense(K).

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        (n_samples, 1).
    channels, pools : sequence of int
    kernel : int
    pool_padding : {'same', 'valid'}
    hidden : int
        LSTM units (per direction).
    bidirectional : bool
    rngs : nnx.Rngs
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels=CHANNELS,
                 pools=POOLS, kernel: int = 3, pool_padding: str = "same", hidden: int = 256,
                 bidirectional: bool = False, rngs: nnx.Rngs):
        self.cnn = LFLBStack(input_shape[-1], channels, [(p,) for p in pools], kernels=(kernel,),
                             pool_padding=pool_padding, rngs=rngs)
        t, c = self.cnn.output_shape(input_shape)
        self.recurrent_steps = t
        self.rnn = Recurrent(c, hidden, bidirectional=bidirectional, rngs=rngs)
        self.out = dense(self.rnn.out_features, num_classes, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """(B, n_samples, 1) -> (B, D): the recurrent layer's final state."""
        return self.rnn.summary(self.cnn(x))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, n_samples, 1) -> logits (B, K)."""
        return self.out(self.embed(x))


def zhao1d(num_classes, input_shape, *, rngs, **kw):
    return CnnRnn1D(num_classes, input_shape, rngs=rngs, **kw)


def zhao1d_bilstm(num_classes, input_shape, *, rngs, **kw):
    return CnnRnn1D(num_classes, input_shape, bidirectional=True, rngs=rngs, **kw)
