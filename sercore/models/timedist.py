"""Time-distributed CNN-LSTM / CNN-BiLSTM: one shared 4-LFLB CNN per log-mel window.

Sources: seed 001 (rolling window over the log-mel, 4 LFLBs per window, 2 stacked LSTMs, softmax)
and seed 002 ("2D CNN-LSTM/BiLSTM time distributed": 18 windows of 128x5, BiLSTM, Keras summary with
372,423 parameters).

The model takes the whole (n_mels, n_frames, C) log-mel and cuts the windows itself
(:func:`sercore.features.frame_windows`, an index gather inside the jitted graph), so the feature
cache stays the same as for every other log-mel model.

Decisions the documents leave open (besides :mod:`sercore.models.blocks`' conventions):

* Window: 32 frames (~0.5 s at hop 256) with step 16 by default for both models; seed 001 gives no
  numbers, seed 002's "18 windows of 5 frames" on 219 frames only fits a step of 12 (frames between
  windows unused). Trailing frames that do not fill a window are dropped.
* Per-window CNN: Zhao's LFLBs (3x3 'same' convs, channels 64, 64, 128, 128, pools 2, 4, 4, 4
  'same'), flattened per window. Seed 002's Keras summary shows something else (128 channels, 2x2 /
  2x1 'valid' kernels); :data:`SEED002_TD_BILSTM` reproduces that table's parameter count.
* Recurrent part: ``td_cnn_lstm`` 2 stacked LSTMs of 256 units (seed 001 gives no width);
  ``td_cnn_bilstm`` a BiLSTM of 32 units per direction (seed 002's table: output 64). The last
  step's output (both directions' final states for the BiLSTM) feeds Dense(K).
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from .blocks import LFLBStack, Recurrent, dense, flat_size, frame_windows, n_windows
from .zhao import CHANNELS, FREQ_POOLS, TIME_POOLS

#: ``create("td_cnn_bilstm", input_shape=(128, 219, 1), **SEED002_TD_BILSTM)`` rebuilds seed 002's
#: Keras summary: 372,423 parameters (371,399 trainable + 1,024 BatchNorm statistics). The summary
#: prints a flattened width of 496 per window, but its BiLSTM count (237,824 = 2 x 4 x 32 x (D + 33))
#: needs D = 896 = 7 x 1 x 128, which is what these layers give; "496" is a typo.
SEED002_TD_BILSTM = dict(window_size=5, window_step=12, channels=(128, 128, 128, 128),
                         kernels=((2, 2), (2, 2), (2, 1), (2, 1)), conv_padding="valid",
                         pools=((2, 2), (2, 1), (2, 1), (2, 1)), pool_padding="valid", hidden=32)


class TimeDistributedCnnRnn(nnx.Module):
    """Windows of the log-mel -> shared LFLB CNN per window -> (Bi)LSTM over windows -> Dense(K).

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        (n_mels, n_frames, channels) of the whole utterance.
    window_size, window_step : int
        Window length and hop in frames.
    channels, pools, kernels, conv_padding, pool_padding
        The per-window CNN (see :class:`sercore.models.blocks.LFLBStack`).
    hidden : int or sequence of int
        Units per recurrent layer (per direction); a sequence stacks layers.
    bidirectional : bool
    rngs : nnx.Rngs
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, window_size: int = 32,
                 window_step: int = 16, channels=CHANNELS, pools=tuple(zip(FREQ_POOLS, TIME_POOLS)),
                 kernels=(3, 3), conv_padding="same", pool_padding="same", hidden=(256, 256),
                 bidirectional: bool = False, rngs: nnx.Rngs):
        n_mels, n_frames, c = input_shape
        self.window_size, self.window_step = window_size, window_step
        self.recurrent_steps = n_windows(n_frames, window_size, window_step)
        self.cnn = LFLBStack(c, channels, pools, kernels=kernels, conv_padding=conv_padding,
                             pool_padding=pool_padding, rngs=rngs)
        per_window = flat_size(self.cnn.output_shape((n_mels, window_size, c)))
        self.rnn = Recurrent(per_window, hidden, bidirectional=bidirectional, rngs=rngs)
        self.out = dense(self.rnn.out_features, num_classes, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> (B, D): the recurrent layer's final state."""
        w = frame_windows(x, self.window_size, self.window_step)       # (B, S, n_mels, size, C)
        b, s = w.shape[:2]
        z = self.cnn(w.reshape((b * s,) + w.shape[2:]))                # one CNN, all windows
        return self.rnn.summary(z.reshape(b, s, -1))

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> logits (B, K)."""
        return self.out(self.embed(x))


def td_cnn_lstm(num_classes, input_shape, *, rngs, hidden=(256, 256), **kw):
    """Seed 001: windows -> 4 LFLBs each -> 2 stacked LSTMs -> Dense(K)."""
    return TimeDistributedCnnRnn(num_classes, input_shape, hidden=hidden, rngs=rngs, **kw)


def td_cnn_bilstm(num_classes, input_shape, *, rngs, hidden=32, **kw):
    """Seed 002: windows -> 4 LFLBs each -> BiLSTM -> Dense(K)."""
    return TimeDistributedCnnRnn(num_classes, input_shape, hidden=hidden, bidirectional=True,
                                 rngs=rngs, **kw)
