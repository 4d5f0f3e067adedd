"""Seed 003's autoencoders (``dense_ae``, ``gru_ae``) and their fusion into the baseline CNN (``ae_fusion``).

Source: seed 003 sections 3.6 and 4.5 (table 5): a fully connected autoencoder with a 3-layer
encoder (input, hidden, code; code 100 or 300; no dropout was best) and a GRU autoencoder with a
2-layer encoder (input, GRU; code 100; the code is the last hidden state or all hidden states),
trained with MSE and Adam on unlabelled log-mels. For the fusion the code passes a dense layer and a
BatchNorm, is concatenated with the baseline CNN's penultimate features, then a dense layer and the
output layer.

Decisions the document leaves open (besides :mod:`sercore.models.blocks`' conventions):

* ``dense_ae`` flattens the whole (n_mels, n_frames) log-mel; encoder Dense(256) -> ReLU ->
  Dense(code) (linear code); decoder mirrors it with a linear output (log-mels are not bounded).
* ``gru_ae`` reads the log-mel as n_frames steps of n_mels features. Encoder GRU(code);
  ``code_mode='last'`` gives the last state (B, code), ``'all'`` every state flattened
  (B, n_frames * code). Decoder: the code repeated over time ('last') or the states themselves
  ('all') -> GRU(code) -> Dense(n_mels) per step.
* ``ae_fusion``: the encoder is frozen: its weights become :class:`~sercore.models.blocks.FrozenParam`
  (not ``nnx.Param``), so ``nnx.grad``/``nnx.Optimizer(..., wrt=nnx.Param)`` leave them alone, and
  its code passes ``jax.lax.stop_gradient``. Code branch Dense(64) -> BatchNorm -> ReLU; fusion
  Dense(64) -> ReLU -> Dense(K).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ..errors import ConfigError
from .blocks import Recurrent, batch_norm, dense, flat_size, freeze
from .baseline import BaselineCNN


class DenseAE(nnx.Module):
    """Fully connected autoencoder on a flattened log-mel.

    Parameters
    ----------
    input_shape : tuple of int
        (n_mels, n_frames, channels).
    hidden : int
        Width of the hidden layer on each side.
    code : int
        Code width (seed 003: 100 or 300).
    rngs : nnx.Rngs
    """

    def __init__(self, input_shape: Sequence[int], *, hidden: int = 256, code: int = 100,
                 rngs: nnx.Rngs):
        self.input_shape = tuple(input_shape)
        d = flat_size(input_shape)
        self.enc1, self.enc2 = dense(d, hidden, rngs=rngs), dense(hidden, code, rngs=rngs)
        self.dec1, self.dec2 = dense(code, hidden, rngs=rngs), dense(hidden, d, rngs=rngs)
        self.code_features = code
        self.recurrent_steps = None

    def encode(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> code (B, code)."""
        return self.enc2(nnx.relu(self.enc1(x.reshape(x.shape[0], -1))))

    def decode(self, code: jax.Array) -> jax.Array:
        """code (B, code) -> reconstruction (B, n_mels, n_frames, C)."""
        return self.dec2(nnx.relu(self.dec1(code))).reshape((code.shape[0],) + self.input_shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


class GruAE(nnx.Module):
    """GRU autoencoder over log-mel frames.

    Parameters
    ----------
    input_shape : tuple of int
        (n_mels, n_frames, 1).
    code : int
        GRU units (seed 003: 100).
    code_mode : {'last', 'all'}
        The code is the last state (B, code) or all states flattened (B, n_frames * code).
    rngs : nnx.Rngs
    """

    def __init__(self, input_shape: Sequence[int], *, code: int = 100, code_mode: str = "last",
                 rngs: nnx.Rngs):
        if code_mode not in ("last", "all"):
            raise ConfigError(f"gru_ae: code_mode must be 'last' or 'all', got {code_mode!r}")
        n_mels, n_frames, c = input_shape
        self.input_shape, self.code_mode, self.code = tuple(input_shape), code_mode, code
        self.encoder = Recurrent(n_mels * c, code, cell="gru", rngs=rngs)
        self.decoder = Recurrent(code, code, cell="gru", rngs=rngs)
        self.out = dense(code, n_mels * c, rngs=rngs)
        self.code_features = code if code_mode == "last" else code * n_frames
        self.recurrent_steps = n_frames

    def _frames(self, x):                       # (B, M, N, C) -> (B, N, M*C)
        b, m, n, c = x.shape
        return jnp.transpose(x, (0, 2, 1, 3)).reshape(b, n, m * c)

    def encode(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> code (B, code) or (B, n_frames * code)."""
        states = self.encoder(self._frames(x))
        return states[:, -1] if self.code_mode == "last" else states.reshape(x.shape[0], -1)

    def decode(self, code: jax.Array) -> jax.Array:
        m, n, c = self.input_shape
        if self.code_mode == "last":
            seq = jnp.repeat(code[:, None, :], n, axis=1)
        else:
            seq = code.reshape(code.shape[0], n, self.code)
        y = self.out(self.decoder(seq))                                 # (B, N, M*C)
        return jnp.transpose(y.reshape(code.shape[0], n, m, c), (0, 2, 1, 3))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


class AEFusion(nnx.Module):
    """Baseline CNN features + a frozen autoencoder's code -> Dense -> Dense(K).

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
    encoder : DenseAE, GruAE, or path
        A trained autoencoder (or a .npz saved by :func:`sercore.models.save_weights`). It is frozen
        in place: pass a copy (``nnx.clone``) if you want to keep training the original.
    code_units, fusion_units : int
    rngs : nnx.Rngs
    **cnn_kw
        Passed to :class:`~sercore.models.baseline.BaselineCNN`.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, encoder=None,
                 code_units: int = 64, fusion_units: int = 64, rngs: nnx.Rngs, **cnn_kw):
        if encoder is None:
            raise ConfigError("ae_fusion needs encoder=<a trained dense_ae/gru_ae model or the path "
                              "of its saved weights>; train one with task 'autoencode' first")
        if not isinstance(encoder, nnx.Module):
            from .weights import load_model
            encoder = load_model(encoder)
        if not hasattr(encoder, "encode"):
            raise ConfigError(f"ae_fusion: encoder {type(encoder).__name__} has no encode(); "
                              "pass a dense_ae or gru_ae model")
        if tuple(encoder.input_shape) != tuple(input_shape):
            raise ConfigError(f"ae_fusion: the encoder was built for input {tuple(encoder.input_shape)}, "
                              f"the model for {tuple(input_shape)}; use the same feature settings")
        self.encoder = freeze(encoder)
        self.cnn = BaselineCNN(num_classes, input_shape, with_output_layer=False, rngs=rngs, **cnn_kw)
        self.code_fc = dense(encoder.code_features, code_units, rngs=rngs)
        self.code_bn = batch_norm(code_units, rngs=rngs)
        self.fusion = dense(self.cnn.out_features + code_units, fusion_units, rngs=rngs)
        self.out = dense(fusion_units, num_classes, rngs=rngs)
        self.recurrent_steps = None

    def embed(self, x: jax.Array) -> jax.Array:
        """(B, n_mels, n_frames, C) -> fused features (B, fusion_units)."""
        code = jax.lax.stop_gradient(self.encoder.encode(x))
        code = nnx.relu(self.code_bn(self.code_fc(code)))
        return nnx.relu(self.fusion(jnp.concatenate([self.cnn.embed(x), code], axis=-1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.embed(x))


def dense_ae(num_classes, input_shape, *, rngs, **kw):
    return DenseAE(input_shape, rngs=rngs, **kw)


def gru_ae(num_classes, input_shape, *, rngs, **kw):
    return GruAE(input_shape, rngs=rngs, **kw)


def ae_fusion(num_classes, input_shape, *, rngs, **kw):
    return AEFusion(num_classes, input_shape, rngs=rngs, **kw)
