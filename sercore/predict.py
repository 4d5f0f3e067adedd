"""Save a trained model with everything prediction needs, load it, classify new recordings.

A saved model is a folder with two files:

- ``model.json`` — model name and constructor arguments, input shape, label vocabulary, the
  :class:`~sercore.features.FeatureConfig`, the training-set :class:`~sercore.features.Normalizer`
  statistics and provenance (corpus, protocol, fold, seed, scores, sercore version, git commit);
- ``weights.npz`` — the model state (parameters and BatchNorm statistics), see :mod:`sercore.checkpoint`.

So ``sercore predict`` works without the corpus or the feature cache. Weights go through the same
leaf-array checkpoint format as training (one small file, atomic, checked against the rebuilt model's
shapes) rather than Orbax, for the reasons given in :mod:`sercore.checkpoint`.

Audio in another sample rate is resampled to the model's rate on load (``load_audio`` uses soxr), and
the returned dict says so (``resampled_from``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import atomic_write_json, load_pytree, save_pytree
from .errors import ModelError

MODEL_JSON = "model.json"
WEIGHTS = "weights.npz"


@dataclass
class SavedModel:
    """A loaded model plus what it needs to turn a wav into a prediction.

    Attributes
    ----------
    model : nnx.Module
        In eval mode.
    feature_cfg : FeatureConfig
    labels : list of str
        Class names, index = model output unit.
    normalizer : Normalizer
        Statistics of the training rows the model was fitted on.
    meta : dict
        Everything in ``model.json``.
    """

    model: Any
    feature_cfg: Any
    labels: list[str]
    normalizer: Any
    meta: dict = field(default_factory=dict)


def save_model(directory: str | os.PathLike, model, feature_cfg, labels, normalizer, model_name: str,
               model_kwargs: dict | None = None, extra: dict | None = None,
               input_shape: tuple[int, ...] | None = None) -> Path:
    """Write a model folder (``model.json`` + ``weights.npz``) that :func:`load_model` can rebuild.

    Parameters
    ----------
    directory : path-like
        Folder to create (or overwrite).
    model : nnx.Module
        Trained model (its current state is saved).
    feature_cfg : FeatureConfig
        How its inputs were computed.
    labels : sequence of str
        Class names in output order.
    normalizer : Normalizer
        Fitted on the model's training rows.
    model_name : str
        Registry name for :func:`sercore.models.create`.
    model_kwargs : dict, optional
        Extra constructor arguments given to ``create``.
    extra : dict, optional
        Provenance (corpus, protocol, fold, seed, scores ...), stored under ``"provenance"``. A model
        trained on crops records ``crop_frames`` and ``window_step`` there, and is then applied to
        whole recordings over windows (:func:`predict_file`).
    input_shape : tuple of int, optional
        The model's input shape when it is not ``feature_cfg.shape`` (a crop of it).
    """
    from flax import nnx

    from . import __version__, git_commit

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _, state = nnx.split(model)
    save_pytree(directory / WEIGHTS, state)
    meta = {
        "format": 1,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs or {}),
        "input_shape": list(input_shape or feature_cfg.shape),
        "num_classes": len(labels),
        "labels": list(labels),
        "feature_config": feature_cfg.to_dict(),
        "normalizer": normalizer.to_dict(),
        "sercore_version": __version__,
        "git_commit": git_commit(),
        "provenance": dict(extra or {}),
    }
    atomic_write_json(directory / MODEL_JSON, meta)  # written last: its presence marks a complete model
    return directory


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """Find a saved model folder from a model folder, a run folder (``<run>/model``) or a study folder.

    For a study folder, the finished run with the best *validation* UAR is chosen (never the test score).
    """
    path = Path(path)
    if (path / MODEL_JSON).is_file():
        return path
    if (path / "model" / MODEL_JSON).is_file():
        return path / "model"
    runs = path / "runs"
    if runs.is_dir():
        best, best_uar = None, -1.0
        for result in sorted(runs.glob("*/result.json")):
            res = json.loads(result.read_text())
            if (result.parent / "model" / MODEL_JSON).is_file() and res.get("val_uar", -1) > best_uar:
                best, best_uar = result.parent / "model", res.get("val_uar", -1)
        if best is not None:
            return best
    if not path.exists():
        raise ModelError(f"no saved model at {path}: the path does not exist. Train one first, e.g. "
                         "`sercore train --model zhao2d --corpus emodb --profile quick`, then pass its "
                         "study or run folder (printed by `sercore train`) to --model")
    raise ModelError(f"{path} holds no saved model (no {MODEL_JSON}, no model/{MODEL_JSON}, no finished run "
                     "under runs/); pass a model, run or study folder written by `sercore train`")


def load_model(directory: str | os.PathLike) -> SavedModel:
    """Rebuild a model saved by :func:`save_model` (or found in a run/study folder).

    Raises
    ------
    ModelError
        Missing folder, unreadable files, or weights that do not fit the rebuilt model.
    """
    from flax import nnx

    from .features import FeatureConfig, Normalizer
    from .models import create

    directory = resolve_model_dir(directory)
    try:
        meta = json.loads((directory / MODEL_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{directory / MODEL_JSON} is unreadable ({exc}); retrain the model") from exc
    feature_cfg = FeatureConfig.from_dict(meta["feature_config"])
    model = create(meta["model_name"], num_classes=meta["num_classes"], input_shape=tuple(meta["input_shape"]),
                   seed=0, **meta.get("model_kwargs", {}))
    graphdef, state = nnx.split(model)
    state, _ = load_pytree(directory / WEIGHTS, state)
    model = nnx.merge(graphdef, state)
    model.eval()
    return SavedModel(model=model, feature_cfg=feature_cfg, labels=list(meta["labels"]),
                      normalizer=Normalizer.from_dict(meta["normalizer"]), meta=meta)


def _file_rate(path) -> int | None:
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # load_audio raises the proper AudioError below
        return None


def _probs(saved: SavedModel, X: np.ndarray) -> np.ndarray:
    from .training import predict_proba

    return predict_proba(saved.model, saved.normalizer.apply(X.astype(np.float32)), batch_size=16)


def _scoring(saved: SavedModel) -> tuple[int, int]:
    """``(crop_frames, window_step)`` of a model trained on crops, else ``(0, 0)``."""
    prov = saved.meta.get("provenance", {})
    return int(prov.get("crop_frames") or 0), int(prov.get("window_step") or 0)


def _whole_file_probs(saved: SavedModel, y: np.ndarray) -> np.ndarray:
    """Probabilities of one waveform: the mean logits of crop-length windows covering all of it for a
    model trained on crops, else the model's fixed-length clip (the first ``duration`` seconds)."""
    from .features import compute, valid_steps
    from .training import predict_proba

    cfg = saved.feature_cfg
    crop, step = _scoring(saved)
    if not crop:
        return _probs(saved, compute(y, cfg)[None])[0]
    seconds = len(y) / cfg.sr
    window_s = (crop if cfg.kind == "raw" else (crop - 1) * cfg.hop_length) / cfg.sr
    whole = cfg.replace(duration=float(max(seconds, window_s, 1.0 / cfg.sr)))
    X = saved.normalizer.apply(compute(y, whole)[None].astype(np.float32))
    return predict_proba(saved.model, X, batch_size=16, lengths=valid_steps([seconds], whole),
                         crop_frames=crop, window_step=step)[0]


def predict_file(path: str | os.PathLike, saved: SavedModel) -> dict[str, Any]:
    """Classify one recording: all of it for a model trained on crops (windows averaged, as its test
    utterances were scored), else its first ``feature_cfg.duration`` seconds, as in training.

    Returns
    -------
    dict
        ``path``, ``label`` (predicted emotion), ``probabilities`` ({label: p}), ``duration``
        (seconds of audio in the file), ``resampled_from`` (the file's rate if it was not the
        model's, else None).

    Raises
    ------
    AudioError
        Missing, empty or undecodable file.
    """
    from .audio import load_audio
    from .features import compute

    cfg = saved.feature_cfg
    y = load_audio(path, sr=cfg.sr)
    rate = _file_rate(path)
    probs = _whole_file_probs(saved, y)
    return {"path": str(path), "label": saved.labels[int(probs.argmax())],
            "probabilities": {lab: float(p) for lab, p in zip(saved.labels, probs)},
            "duration": float(len(y) / cfg.sr), "resampled_from": rate if rate and rate != cfg.sr else None}


def predict_timeline(path: str | os.PathLike, saved: SavedModel, window_s: float | None = None,
                     hop_s: float | None = None):
    """Per-window predictions over a long recording.

    The model sees fixed-length clips (``feature_cfg.duration`` seconds); the recording is cut into
    windows of ``window_s`` seconds (default: that duration) every ``hop_s`` seconds (default: half a
    window), each padded/cropped to the model's clip length and classified.

    Returns
    -------
    DataFrame
        One row per window: ``start``, ``end`` (seconds), ``label``, and one probability column per label.
    """
    import pandas as pd

    from .audio import load_audio
    from .errors import ConfigError
    from .features import compute

    cfg = saved.feature_cfg
    crop, step = _scoring(saved)
    crop_s = (crop if cfg.kind == "raw" else (crop - 1) * cfg.hop_length) / cfg.sr if crop else None
    window_s = float(window_s or crop_s or cfg.duration)
    hop_s = float(hop_s or window_s / 2)
    if crop_s and window_s < crop_s:
        raise ConfigError(f"window {window_s} s is shorter than the {crop_s:.2f} s the model was trained on")
    if window_s <= 0 or hop_s <= 0:
        raise ConfigError(f"window ({window_s} s) and hop ({hop_s} s) must be > 0 seconds")
    y = load_audio(path, sr=cfg.sr)
    win, hop = int(round(window_s * cfg.sr)), int(round(hop_s * cfg.sr))
    starts = list(range(0, max(len(y) - win, 0) + 1, hop))
    if starts[-1] + win < len(y):  # cover the tail
        starts.append(len(y) - win)
    if crop:
        from .features import valid_steps
        from .training import predict_proba

        wcfg = cfg.replace(duration=window_s)
        X = saved.normalizer.apply(np.stack([compute(y[s:s + win], wcfg) for s in starts]).astype(np.float32))
        seconds = [min(win, len(y) - s) / cfg.sr for s in starts]
        probs = predict_proba(saved.model, X, batch_size=16, lengths=valid_steps(seconds, wcfg),
                              crop_frames=crop, window_step=step)
    else:
        X = np.stack([compute(y[s:s + win], cfg) for s in starts])
        probs = _probs(saved, X)
    table = pd.DataFrame({"start": np.array(starts) / cfg.sr,
                          "end": np.minimum(np.array(starts) + win, len(y)) / cfg.sr,
                          "label": [saved.labels[i] for i in probs.argmax(1)]})
    for j, lab in enumerate(saved.labels):
        table[lab] = probs[:, j]
    return table
