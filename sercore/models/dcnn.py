"""DCNN-BLSTMwA (Zhang et al. 2021, seed 004): per-segment CNN, BLSTM + attention over segments.

Source: seed 004 (README of a TensorFlow implementation): 3-channel log-mel (static, delta,
delta-delta) cut into 64x64 segments, an ImageNet-pretrained CNN per segment (AlexNet in the paper,
ResNet50-v2 in that code), segment features stacked into a sequence, BLSTM, attention, fully
connected layers with dropout, softmax.

Decisions the document leaves open (besides :mod:`sercore.models.blocks`' conventions):

* Segments: 64 frames with 50 % overlap (step 32) over 64 mels; trailing frames that do not fill a
  segment are dropped (4 s clips: 251 frames -> 6 segments).
* Segment CNN: no ImageNet weights are bundled (none can be downloaded here and none fit 64x64x3
  log-mels); by default a small ResNet trained from scratch: Conv 3x3 (32) -> BN -> ReLU, then one
  residual block per width (32, 64, 128; stride 1, 2, 2), global average pool -> 128-D. ReLU as in
  ResNets. Pretrained weights for this CNN can be loaded from a file the user supplies
  (``pretrained=path``, a .npz written by :func:`save_segment_cnn` /
  :func:`sercore.models.save_weights` on ``model.segment_cnn``).
* BLSTM 128 units per direction; additive attention (128 units) over segments; head Dense(256) ->
  ReLU -> Dense(128) -> ReLU, dropout 0.5 after each; Dense(K).

Speed: nearly all of a training step is the segment CNN (the BLSTM + attention over 2-6 segments
is under 1 %). Its convolutions go through :func:`sercore.models.blocks.conv`, so the stride-1 3 x 3
ones run as :func:`sercore.ops.conv2d` (Winograd, fast filter gradient), the strided 1 x 1 shortcut
as the 1 x 1 convolution of the subsampled input, and the strided 3 x 3 ones as XLA's strided
convolution (Winograd at stride 1, then subsampled, was 3x slower there). Training samples/s at
batch 32, ``standard``'s input (64 mels x 63 frames, 32-frame segments, step 16: 64 segments of
64 x 32 a batch), old (``nnx.Conv``) and new step timed alternately in one process on 2 cores
shared with two other training jobs: 7.9 -> 16.4 and 5.1 -> 12.5 (x2.1, x2.5; medians of 3).
What is left is the convolutions themselves (about 10 GFLOP a batch forward, small maps of
32-128 channels) and BatchNorm + ReLU around them.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from . import blocks
from .blocks import KERNEL_INIT, AttentionPool, MLP, Recurrent, batch_norm, dense, frame_windows, n_windows


def _conv(cin, cout, kernel, stride, rngs):
    return nnx.Conv(cin, cout, kernel, strides=stride, padding="SAME", kernel_init=KERNEL_INIT, rngs=rngs)


class ResidualBlock(nnx.Module):
    """Conv 3x3 (stride s) -> BN -> ReLU -> Conv 3x3 -> BN, plus a (projected) shortcut, -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1, self.bn1 = _conv(cin, cout, (3, 3), stride, rngs), batch_norm(cout, rngs=rngs)
        self.conv2, self.bn2 = _conv(cout, cout, (3, 3), 1, rngs), batch_norm(cout, rngs=rngs)
        needs_projection = stride != 1 or cin != cout
        self.project = _conv(cin, cout, (1, 1), stride, rngs) if needs_projection else None
        self.project_bn = batch_norm(cout, rngs=rngs) if needs_projection else None

    def __call__(self, x):
        y = self.bn2(blocks.conv(self.conv2, nnx.relu(self.bn1(blocks.conv(self.conv1, x)))))
        shortcut = x if self.project is None else self.project_bn(blocks.conv(self.project, x))
        return nnx.relu(y + shortcut)


class SegmentResNet(nnx.Module):
    """A small ResNet for one (n_mels, segment_frames, 3) segment -> (widths[-1],) features."""

    def __init__(self, in_features: int = 3, widths=(32, 64, 128), *, rngs: nnx.Rngs):
        self.stem, self.stem_bn = _conv(in_features, widths[0], (3, 3), 1, rngs), batch_norm(widths[0], rngs=rngs)
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(ResidualBlock(c, w, 1 if i == 0 else 2, rngs=rngs))
            c = w
        self.blocks = nnx.List(blocks)
        self.out_features = c

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, C) -> (N, out_features)."""
        x = nnx.relu(self.stem_bn(blocks.conv(self.stem, x)))
        for block in self.blocks:
            x = block(x)
        return x.mean(axis=(1, 2))


class DCNNBLSTMAttn(nnx.Module):
    """Segments -> shared CNN -> BLSTM over segments -> attention -> dense head -> Dense(K).

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        (n_mels, n_frames, 3): static, delta, delta-delta log-mel.
    segment_frames, segment_step : int
        Segment length and hop in frames.
    widths : sequence of int
        Residual stage widths of the segment CNN.
    hidden, attention_units : int
    dense_units : sequence of int
    dropout : float
    pretrained : str or Path, optional
        A .npz with the segment CNN's weights (see :func:`save_segment_cnn`).
    rngs : nnx.Rngs
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, segment_frames: int = 64,
                 segment_step: int = 32, widths=(32, 64, 128), hidden: int = 128,
                 attention_units: int = 128, dense_units=(256, 128), dropout: float = 0.5,
                 pretrained=None, rngs: nnx.Rngs):
        n_mels, n_frames, c = input_shape
        self.segment_frames, self.segment_step = segment_frames, segment_step
        self.recurrent_steps = n_windows(n_frames, segment_frames, segment_step)
        self.segment_cnn = SegmentResNet(c, widths, rngs=rngs)
        self.rnn = Recurrent(self.segment_cnn.out_features, hidden, bidirectional=True, rngs=rngs)
        self.attention = AttentionPool(self.rnn.out_features, attention_units, rngs=rngs)
        self.mlp = MLP(self.rnn.out_features, dense_units, dropout=dropout, rngs=rngs)
        self.out = dense(self.mlp.out_features, num_classes, rngs=rngs)
        if pretrained is not None:
            load_segment_cnn(self, pretrained)

    def embed(self, x: jax.Array, return_attention: bool = False):
        """(B, n_mels, n_frames, 3) -> (B, D) [, attention weights over segments (B, S)]."""
        w = frame_windows(x, self.segment_frames, self.segment_step)    # (B, S, M, size, 3)
        b, s = w.shape[:2]
        feats = self.segment_cnn(w.reshape((b * s,) + w.shape[2:])).reshape(b, s, -1)
        context, weights = self.attention(self.rnn(feats))
        z = self.mlp(context)
        return (z, weights) if return_attention else z

    def __call__(self, x: jax.Array, return_attention: bool = False):
        """(B, n_mels, n_frames, 3) -> logits (B, K) [, attention weights (B, S)]."""
        z, weights = self.embed(x, return_attention=True)
        logits = self.out(z)
        return (logits, weights) if return_attention else logits


def save_segment_cnn(model: DCNNBLSTMAttn, path):
    """Write the segment CNN's weights (parameters and BatchNorm statistics) to ``path`` (.npz)."""
    from .weights import save_weights

    return save_weights(model.segment_cnn, path)


def load_segment_cnn(model: DCNNBLSTMAttn, path) -> DCNNBLSTMAttn:
    """Load segment-CNN weights from a user-supplied .npz into ``model`` (in place)."""
    from .weights import load_weights

    load_weights(model.segment_cnn, path)
    return model


def dcnn_blstm_attn(num_classes, input_shape, *, rngs, **kw):
    return DCNNBLSTMAttn(num_classes, input_shape, rngs=rngs, **kw)
