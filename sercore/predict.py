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
the returned dict says so (``resampled_from``). Before any answer the file passes the input checks of
:func:`sercore.audio.read_audio`: one without usable speech raises :class:`~sercore.errors.AudioError`
with the reason, a suspicious one (clipped, beyond full scale, truncated) is answered with
``warnings``. :func:`predict_file` scores the whole file, trimmed of leading and trailing silence,
over the model's windows (README, "Input checks").
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
            try:
                res = json.loads(result.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"{result} is damaged ({exc}); delete the run folder {result.parent} and "
                                 "re-run the `sercore train` command that made it (only that run is redone), "
                                 "or pass a model folder to --model") from exc
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

    from .errors import SercoreError

    directory = resolve_model_dir(directory)
    if (directory.parent / "result.json").is_file():  # a run's model: redo that run only
        retrain = (f"delete the run folder {directory.parent} and re-run the `sercore train` command that "
                   "wrote it (only that run is redone, the others are kept), or pass another model to --model")
    else:
        retrain = "save or train this model again, or pass another model to --model"
    try:
        meta = json.loads((directory / MODEL_JSON).read_text())
        feature_cfg = FeatureConfig.from_dict(meta["feature_config"])
        labels = [str(lab) for lab in meta["labels"]]
        normalizer = Normalizer.from_dict(meta["normalizer"])
        model = create(meta["model_name"], num_classes=int(meta["num_classes"]),
                       input_shape=tuple(meta["input_shape"]), seed=0, **meta.get("model_kwargs", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SercoreError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"is unreadable ({exc})"
        raise ModelError(f"{directory / MODEL_JSON} {what}; {retrain}") from exc
    if len(labels) != meta["num_classes"]:
        raise ModelError(f"{directory / MODEL_JSON} lists {len(labels)} labels for {meta['num_classes']} "
                         f"classes; {retrain}")
    graphdef, state = nnx.split(model)
    state, _ = load_pytree(directory / WEIGHTS, state, fix=retrain)
    model = nnx.merge(graphdef, state)
    model.eval()
    return SavedModel(model=model, feature_cfg=feature_cfg, labels=labels, normalizer=normalizer, meta=meta)


def _probs(saved: SavedModel, X: np.ndarray) -> np.ndarray:
    from .training import predict_proba

    return predict_proba(saved.model, saved.normalizer.apply(X.astype(np.float32)), batch_size=16)


def _scoring(saved: SavedModel) -> tuple[int, int]:
    """``(crop_frames, window_step)`` of a model trained on crops, else ``(0, 0)``."""
    prov = saved.meta.get("provenance", {})
    return int(prov.get("crop_frames") or 0), int(prov.get("window_step") or 0)


#: Scoring windows whose features are computed and classified at a time: a long recording is
#: streamed through in blocks of this many windows, so its features are never all in memory at once.
WINDOW_BATCH = 64
#: Seconds of sound kept around the speech span when leading/trailing silence is trimmed.
TRIM_MARGIN_S = 0.1
#: A file scored over more windows than this gets a note pointing to ``--timeline``.
TIMELINE_MIN_WINDOWS = 4


def _window_frames(saved: SavedModel) -> tuple[int, int]:
    """``(window, step)`` in time steps (frames, or samples for raw input) of the scoring windows: the
    training crop and its scoring step for a model trained on crops, else the model's whole clip
    every half clip."""
    cfg = saved.feature_cfg
    crop, step = _scoring(saved)
    if crop:
        return crop, int(step or max(1, crop // 2))
    win = cfg.n_samples if cfg.kind == "raw" else cfg.n_frames
    return win, max(1, win // 2)


def _steps_to_seconds(cfg, steps) -> np.ndarray:
    """Time (s) of time step(s) ``steps``: sample index, or frame centre for spectrograms."""
    steps = np.asarray(steps, np.float64)
    return steps / cfg.sr if cfg.kind == "raw" else steps * cfg.hop_length / cfg.sr


def _feature_block(y: np.ndarray, whole, f0: int, f1: int) -> np.ndarray:
    """Time steps ``f0:f1`` of ``compute(y, whole)``, computed from only the audio they need (plus a
    margin that makes them equal to the whole-file features: centred FFT frames and delta filters
    reach a few frames beyond a block)."""
    from .features import compute

    if whole.kind == "raw":  # the features are the (zero-padded) samples themselves
        out = np.zeros((f1 - f0, 1), np.float32)
        part = y[f0:f1]
        out[:len(part), 0] = part
        return out
    hop = whole.hop_length
    margin = -(-(whole.n_fft // 2) // hop) + (whole.delta_width if whole.kind == "logmel_deltas" else 0) + 1
    a = max(0, f0 - margin)
    b = min(whole.n_frames, f1 + margin)
    s0, s1 = a * hop, min(whole.n_samples, (b - 1) * hop + whole.n_fft // 2)
    if a == 0 and b == whole.n_frames:
        return compute(y, whole)[..., f0:f1, :]
    seg = np.zeros(s1 - s0, np.float32)
    part = y[s0:min(s1, len(y))]
    seg[:len(part)] = part
    block = compute(seg, whole.replace(duration=len(seg) / whole.sr))
    return block[..., f0 - a:f1 - a, :]


def _window_log_probs(saved: SavedModel, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Log-probabilities of every scoring window of waveform ``y``.

    Returns ``(starts, log_probs, window)``: window start time steps, (n_windows, K), window length.
    A file no longer than the model's clip is one clip, computed exactly as in training; a longer one
    (or any file, for a model trained on crops) is covered by windows (:func:`training.window_starts`:
    every step, and a last one ending at its end), streamed :data:`WINDOW_BATCH` at a time."""
    from .features import compute, valid_steps
    from .training import window_starts

    cfg = saved.feature_cfg
    crop, _ = _scoring(saved)
    win, step = _window_frames(saved)
    seconds = len(y) / cfg.sr
    if not crop and seconds <= cfg.duration:
        probs = _probs(saved, compute(y, cfg)[None])
        return np.zeros(1, np.int64), np.log(np.clip(probs, 1e-30, None)), win
    window_s = (win if cfg.kind == "raw" else (win - 1) * cfg.hop_length) / cfg.sr
    whole = cfg.replace(duration=float(max(seconds, window_s, 1.0 / cfg.sr)))
    valid = valid_steps([seconds], whole)
    _, starts = window_starts(valid, win, step, whole.shape[-2])
    out = []
    for b in range(0, len(starts), WINDOW_BATCH):
        st = starts[b:b + WINDOW_BATCH]
        block = _feature_block(y, whole, int(st[0]), int(st[-1]) + win)
        X = np.stack([block[..., s - st[0]:s - st[0] + win, :] for s in st])
        out.append(np.log(np.clip(_probs(saved, X), 1e-30, None)))
    return starts.astype(np.int64), np.concatenate(out), win


def _softmax_mean(log_probs: np.ndarray) -> np.ndarray:
    """Softmax of the mean window log-probabilities: equal to the softmax of the mean logits (each
    window's log-softmax differs from its logits by a constant), i.e. the study's whole-utterance score."""
    z = log_probs.mean(axis=0)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)


def _usable_audio(path, saved: SavedModel):
    """``(waveform, report)`` of a file that passes the input checks, else AudioError with the reason."""
    from .audio import read_audio
    from .errors import AudioError

    y, report = read_audio(path, sr=saved.feature_cfg.sr)
    if report.unusable:
        raise AudioError(path, f"{report.unusable}; no prediction made: give a recording that holds speech")
    return y, report


def predict_file(path: str | os.PathLike, saved: SavedModel, *, trim: bool = True) -> dict[str, Any]:
    """Classify one whole recording, after the input checks (:func:`sercore.audio.read_audio`).

    Leading and trailing silence is trimmed (to :data:`TRIM_MARGIN_S` around the first and last frame
    above the speech floor); the rest is covered by scoring windows (the model's training crop, or its
    whole clip every half clip) and scored by their mean logits, as the study scores test utterances.
    A file no longer than the clip of a model trained on whole clips is that one clip, as in training.
    Features are streamed :data:`WINDOW_BATCH` windows at a time, so hours of audio fit in memory.

    Parameters
    ----------
    path : path-like
    saved : SavedModel
    trim : bool
        Trim leading/trailing silence first (default True).

    Returns
    -------
    dict
        ``path``, ``label`` (predicted emotion), ``probabilities`` ({label: p}), ``duration``
        (seconds of audio in the file), ``speech`` ([start, end] s of the part scored),
        ``n_windows``, ``windows`` (one dict per scoring window: ``start``, ``end`` in seconds of
        the file, ``label``, ``probabilities``), ``warnings`` (list of str: clipping, beyond full
        scale, truncated file; empty when none) and ``resampled_from`` (the file's rate if it was
        not the model's, else None).

    Raises
    ------
    AudioError
        Missing, empty or undecodable file, or one without usable speech (too short, silent,
        non-finite): the message names the file and the reason.
    """
    cfg = saved.feature_cfg
    y, report = _usable_audio(path, saved)
    offset, end = 0, len(y)
    if trim and report.speech is not None:
        offset = max(0, int((report.speech[0] - TRIM_MARGIN_S) * cfg.sr))
        end = min(len(y), int(np.ceil((report.speech[1] + TRIM_MARGIN_S) * cfg.sr)))
    seg = y[offset:end]
    starts, log_probs, win = _window_log_probs(saved, seg)
    probs = _softmax_mean(log_probs)
    t0 = offset / cfg.sr
    begin = t0 + _steps_to_seconds(cfg, starts)
    stop = np.minimum(t0 + _steps_to_seconds(cfg, starts + (win if cfg.kind == "raw" else win - 1)), end / cfg.sr)
    window_probs = np.exp(log_probs)
    windows = [{"start": float(a), "end": float(b), "label": saved.labels[int(p.argmax())],
                "probabilities": {lab: float(v) for lab, v in zip(saved.labels, p / p.sum())}}
               for a, b, p in zip(begin, stop, window_probs)]
    rate = report.sample_rate
    return {"path": str(path), "label": saved.labels[int(probs.argmax())],
            "probabilities": {lab: float(p) for lab, p in zip(saved.labels, probs)},
            "duration": float(len(y) / cfg.sr), "speech": [float(t0), float(end / cfg.sr)],
            "n_windows": len(windows), "windows": windows, "warnings": list(report.warnings),
            "resampled_from": rate if rate != cfg.sr else None}


def timeline_sizes(saved: SavedModel, window_s: float | None = None, hop_s: float | None = None) -> tuple[float, float]:
    """``(window_s, hop_s)`` of :func:`predict_timeline`, defaults filled in and checked.

    Raises
    ------
    ConfigError
        Either below 0.01 s or not finite, a hop longer than the window, or a window shorter than the
        model's training crop.
    """
    from .errors import ConfigError

    cfg = saved.feature_cfg
    crop, _ = _scoring(saved)
    crop_s = (crop if cfg.kind == "raw" else (crop - 1) * cfg.hop_length) / cfg.sr if crop else None
    window_s = float(window_s if window_s is not None else (crop_s or cfg.duration))
    hop_s = float(hop_s if hop_s is not None else window_s / 2)
    if not (np.isfinite(window_s) and np.isfinite(hop_s) and window_s >= 0.01 and hop_s >= 0.01):
        raise ConfigError(f"window ({window_s} s) and hop ({hop_s} s) must be at least 0.01 s; "
                          "give --window and --hop in seconds")
    if hop_s > window_s:
        raise ConfigError(f"hop {hop_s} s is longer than the window {window_s} s: the windows would leave "
                          "gaps; give --hop <= --window")
    if crop_s and window_s < crop_s:
        raise ConfigError(f"window {window_s} s is shorter than the {crop_s:.2f} s the model was trained on; "
                          f"give --window {crop_s:.2f} or more")
    return window_s, hop_s


def predict_timeline(path: str | os.PathLike, saved: SavedModel, window_s: float | None = None,
                     hop_s: float | None = None):
    """Per-window predictions over a long recording, in windows of a chosen length.

    The recording (after the input checks; an unusable file raises) is cut into windows of
    ``window_s`` seconds (default: the model's window) every ``hop_s`` seconds (default: half a
    window). For a model trained on crops each window is scored by its crops' mean logits; otherwise
    each is padded/cropped to the model's clip. Windows are computed :data:`WINDOW_BATCH` at a time.
    :func:`predict_file` gives the model's own windows (``windows``) with the whole-file answer.

    Returns
    -------
    DataFrame
        One row per window: ``start``, ``end`` (seconds), ``label``, and one probability column per label.

    Raises
    ------
    ConfigError
        Bad window sizes (:func:`timeline_sizes`).
    AudioError
        An unreadable file, or one without usable speech.
    """
    import pandas as pd

    from .features import compute

    cfg = saved.feature_cfg
    crop, step = _scoring(saved)
    window_s, hop_s = timeline_sizes(saved, window_s, hop_s)
    y, _ = _usable_audio(path, saved)
    win, hop = int(round(window_s * cfg.sr)), max(1, int(round(hop_s * cfg.sr)))
    starts = list(range(0, max(len(y) - win, 0) + 1, hop))
    if starts[-1] + win < len(y):  # cover the tail
        starts.append(len(y) - win)
    probs = []
    for b in range(0, len(starts), WINDOW_BATCH):
        batch = starts[b:b + WINDOW_BATCH]
        if crop:
            from .features import valid_steps
            from .training import predict_proba

            wcfg = cfg.replace(duration=window_s)
            X = saved.normalizer.apply(np.stack([compute(y[s:s + win], wcfg) for s in batch]).astype(np.float32))
            seconds = [min(win, len(y) - s) / cfg.sr for s in batch]
            probs.append(predict_proba(saved.model, X, batch_size=16, lengths=valid_steps(seconds, wcfg),
                                       crop_frames=crop, window_step=step))
        else:
            probs.append(_probs(saved, np.stack([compute(y[s:s + win], cfg) for s in batch])))
    probs = np.concatenate(probs)
    table = pd.DataFrame({"start": np.array(starts) / cfg.sr,
                          "end": np.minimum(np.array(starts) + win, len(y)) / cfg.sr,
                          "label": [saved.labels[i] for i in probs.argmax(1)]})
    for j, lab in enumerate(saved.labels):
        table[lab] = probs[:, j]
    return table
