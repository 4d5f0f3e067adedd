"""sercore's models: small ``nnx.Module`` classes created by name.

>>> from sercore import models
>>> models.list_models()[:3]
['zhao2d', 'zhao2d_dense', 'poolfix2d']
>>> model = models.create("zhao2d", num_classes=7)            # doctest: +SKIP
>>> logits = model(x)               # x: (B, 128, 251, 1) log-mel batch -> (B, 7)

Every classifier maps a batch to logits (B, K) and has ``embed(x) -> (B, D)`` (penultimate
features); attention models also take ``return_attention=True`` and return ``(logits, weights)``.
Autoencoders (task "autoencode") return a reconstruction of their input and have ``encode(x)``.
Use ``model.train()`` / ``model.eval()`` to switch dropout and BatchNorm.

Each model's module docstring names its source document and every decision the document left open;
the conventions all models share are in :mod:`sercore.models.blocks`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["create", "list_models", "model_info", "recurrent_steps", "save_weights", "load_weights",
           "load_model"]


@dataclass(frozen=True)
class _Entry:
    builder: str                  # "module:function" inside sercore.models, imported on use
    features: dict                # FeatureConfig overrides the model needs
    source: str
    description: str
    task: str = "classify"
    defaults: dict = field(default_factory=dict)


_LOGMEL = {"kind": "logmel"}
_REGISTRY: dict[str, _Entry] = {
    "zhao2d": _Entry(
        "zhao:zhao2d", _LOGMEL, "Zhao, Mao & Chen 2019 2D CNN-LSTM (seed 002 table 2, seed 000)",
        "4 LFLBs (3x3 conv, BN, ELU, max-pool 2/4/4/4), LSTM 256 over time, Dense(K); "
        "pool_padding 'same' (2 LSTM steps on 128x251) or 'valid' (1 step)"),
    "zhao2d_dense": _Entry(
        "zhao:zhao2d_dense", _LOGMEL, "seed 000 (LSTM replaced by two dense layers)",
        "zhao2d's CNN, flattened, Dense 256 -> Dense 256 -> Dense(K): no recurrent layer"),
    "poolfix2d": _Entry(
        "zhao:poolfix2d", _LOGMEL, "seed 000 (pooling fix: smaller pooling along time)",
        "zhao2d with time pools (2, 2, 2, 1) (parameter time_pools): the LSTM sees ~32 steps"),
    "poolfix2d_bilstm": _Entry(
        "zhao:poolfix2d_bilstm", _LOGMEL, "seed 000 pooling fix + seed 002 BiLSTM",
        "poolfix2d with a BiLSTM (256 per direction)"),
    "attn_blstm": _Entry(
        "attention:attn_blstm", _LOGMEL, "seed 003 (CNN + attention LSTM), seed 004 (BLSTM + attention)",
        "poolfix CNN, BiLSTM 128, additive attention over time, Dense 64 + dropout, Dense(K); "
        "returns attention weights on request"),
    "td_cnn_lstm": _Entry(
        "timedist:td_cnn_lstm", _LOGMEL, "seed 001 (time-distributed CNN + 2 LSTMs)",
        "log-mel cut into windows (32 frames, step 16), 4 LFLBs per window, 2 stacked LSTMs 256, Dense(K)"),
    "td_cnn_bilstm": _Entry(
        "timedist:td_cnn_bilstm", _LOGMEL, "seed 002 (time-distributed 2D CNN-BiLSTM)",
        "log-mel cut into windows (32 frames, step 16), 4 LFLBs per window, BiLSTM 32, Dense(K)"),
    "baseline_cnn": _Entry(
        "baseline:baseline_cnn", _LOGMEL, "seed 003 table 4 (baseline 2D CNN)",
        "4 LFLBs with dropout 0.3/0.3/0.4/0.4, Flatten, Dense 64, dropout, BN, ReLU, dropout, Dense(K)"),
    "zhao1d": _Entry(
        "raw:zhao1d", {"kind": "raw"}, "Zhao, Mao & Chen 2019 1D CNN-LSTM (seed 002 table 1)",
        "raw waveform: 4 1-D LFLBs (kernel 3, pools 4), LSTM 256, Dense(K)"),
    "zhao1d_bilstm": _Entry(
        "raw:zhao1d_bilstm", {"kind": "raw"}, "seed 002 (1D CNN-BiLSTM)",
        "raw waveform: 4 1-D LFLBs, BiLSTM 256, Dense(K)"),
    "dcnn_blstm_attn": _Entry(
        "dcnn:dcnn_blstm_attn", {"kind": "logmel_deltas", "n_mels": 64},
        "Zhang et al. 2021 DCNN-BLSTMwA (seed 004)",
        "3-channel log-mel in 64x64 segments (50 % overlap), small ResNet per segment (optionally "
        "pretrained from a user file), BLSTM + attention over segments, dense layers with dropout"),
    "dense_ae": _Entry(
        "autoencoders:dense_ae", _LOGMEL, "seed 003 (FC autoencoder, 3-layer encoder)",
        "flattened log-mel -> Dense 256 -> code (100; 300 with code=300) -> Dense 256 -> log-mel",
        task="autoencode"),
    "gru_ae": _Entry(
        "autoencoders:gru_ae", _LOGMEL, "seed 003 (GRU autoencoder, 2-layer encoder)",
        "log-mel frames -> GRU 100 -> code (last state, or all states with code_mode='all') -> "
        "GRU 100 -> Dense(n_mels)", task="autoencode"),
    "ae_fusion": _Entry(
        "autoencoders:ae_fusion", _LOGMEL, "seed 003 (CNN + unsupervised representation)",
        "baseline_cnn features + a frozen dense_ae/gru_ae code (Dense 64, BN) -> Dense 64 -> Dense(K); "
        "needs encoder=<trained autoencoder or its weights file>"),
}


def list_models() -> list[str]:
    """Names of every registered model, in registry order."""
    return list(_REGISTRY)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def default_input_shape(name: str) -> tuple[int, ...]:
    """Per-utterance input shape (no batch axis) of ``name`` under the default feature settings."""
    from ..features import FeatureConfig

    return tuple(FeatureConfig().replace(**_entry(name).features).shape)


def create(name: str, *, num_classes: int = 7, input_shape=None, seed: int = 0, **kwargs):
    """Build model ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    num_classes : int
        K, the number of classes (ignored by autoencoders).
    input_shape : tuple of int, optional
        Shape of one example without the batch axis, e.g. (128, 251, 1); default: the model's
        feature settings (see :func:`model_info`) at sercore's default FeatureConfig.
    seed : int
        Seeds parameter initialisation and dropout.
    **kwargs
        Model parameters (see the model class), e.g. ``pool_padding="valid"`` for ``zhao2d``.

    Returns
    -------
    nnx.Module
        In training mode. ``model.spec`` records these arguments.
    """
    from flax import nnx

    entry = _entry(name)
    input_shape = tuple(int(n) for n in (input_shape or default_input_shape(name)))
    module_name, fn_name = entry.builder.split(":")
    builder = getattr(importlib.import_module(f"{__name__}.{module_name}"), fn_name)
    try:
        model = builder(num_classes, input_shape, rngs=nnx.Rngs(seed), **{**entry.defaults, **kwargs})
    except TypeError as e:
        raise ConfigError(f"model {name!r}: {e}; see help(sercore.models.{module_name}) for its "
                          "parameters") from e
    plain = {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}
    model.spec = {"name": name, "num_classes": num_classes, "input_shape": input_shape, "seed": seed,
                  "kwargs": plain}
    return model


def recurrent_steps(name: str, input_shape=None, **kwargs) -> int | None:
    """Number of steps the recurrent layer of ``name`` sees for ``input_shape`` (None: no RNN).

    Builds the model abstractly (no weights are allocated).
    """
    from flax import nnx

    model = nnx.eval_shape(lambda: create(name, input_shape=input_shape, **kwargs))
    return model.recurrent_steps


def model_info(name: str) -> dict[str, Any]:
    """What a model needs and where it comes from.

    Returns
    -------
    dict
        ``features`` (FeatureConfig overrides, e.g. {"kind": "logmel"}), ``input_shape`` (default
        per-utterance shape), ``source``, ``task`` ("classify" | "autoencode"), ``description``,
        ``recurrent_steps`` (steps the recurrent layer sees for the default input; None if none).
    """
    entry = _entry(name)
    info = {"name": name, "features": dict(entry.features), "input_shape": default_input_shape(name),
            "source": entry.source, "task": entry.task, "description": entry.description}
    info["recurrent_steps"] = None if name == "ae_fusion" else recurrent_steps(name)
    return info


def __getattr__(attr: str):
    if attr in ("save_weights", "load_weights", "load_model"):
        return getattr(importlib.import_module(f"{__name__}.weights"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
