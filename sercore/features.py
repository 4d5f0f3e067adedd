"""Features for SER: fixed-length log-mel spectrograms (optionally with deltas) or raw waveforms.

>>> from sercore.features import FeatureConfig, extract_features, fit_normalizer
>>> cfg = FeatureConfig()                       # 4.0 s at 16 kHz, 128 mels x 251 frames
>>> cfg.shape
(128, 251, 1)
>>> X = extract_features(df, cfg)               # (len(df), 128, 251, 1), cached  # doctest: +SKIP
>>> norm = fit_normalizer(X, train_idx)          # statistics of the training rows only  # doctest: +SKIP

Layout is NHWC with H = mel bands and W = time frames, so a batch is ``(B, n_mels, n_frames, C)``;
raw waveforms are ``(B, n_samples, 1)``.

Decibel reference. Log-mel values are ``10 * log10(max(S, amin) / ref)`` with a *fixed* reference
``ref = 1.0`` (the power of a full-scale signal is of that order) and ``amin = 1e-10`` (-100 dB), and no
per-utterance ``top_db`` clipping. A per-utterance reference such as ``ref=np.max`` would subtract each
clip's own peak level and so erase loudness, which is an emotion cue (anger and happiness are loud,
sadness and boredom soft). ``amin`` keeps digital silence finite (-100 dB instead of -inf). Scale is
handled afterwards by :func:`fit_normalizer`, fitted on training rows only.

Caching. :func:`extract_features` stores its result under ``data/processed`` as
``<corpus>-<kind>-<key>.npz`` plus a ``.json`` manifest, where ``key`` hashes the configuration
(:meth:`FeatureConfig.key`, which includes :data:`FEATURE_CODE_VERSION`) and the list of files. The
manifest records each file's size and modification time; if a file changed, the cache is stale and is
recomputed (and the reason logged). Different configurations or file lists never share a file.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .audio import add_awgn, fix_length, load_audio, random_snr
from .errors import CacheError, ConfigError

__all__ = [
    "FEATURE_CODE_VERSION", "FEATURE_KINDS", "FeatureConfig", "compute", "extract_features",
    "extract_augmented", "Normalizer", "fit_normalizer", "speaker_normalize", "valid_steps", "frame_windows",
    "logmel_jax",
]

log = logging.getLogger(__name__)

#: Bump when a change to this module alters the numbers it computes; invalidates every cache.
FEATURE_CODE_VERSION = "2"
FEATURE_KINDS = ("logmel", "logmel_deltas", "raw")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """What to compute from each utterance.

    Parameters
    ----------
    kind : {"logmel", "logmel_deltas", "raw"}
        ``"logmel"``: log-mel power spectrogram, shape (n_mels, n_frames, 1).
        ``"logmel_deltas"``: static, delta and delta-delta log-mel as 3 channels, (n_mels, n_frames, 3).
        ``"raw"``: the fixed-length waveform, (n_samples, 1).
    sr : int
        Sample rate in Hz; audio is resampled to it.
    duration : float
        Clip length in seconds; shorter clips are zero-padded at the end, longer ones cropped.
    crop : {"start", "center"}
        Which part of a long clip to keep.
    n_fft : int
        FFT size in samples (Hann window of the same length).
    hop_length : int
        Frame step in samples. Frames are centred (``center=True``, ``n_fft // 2`` zeros each side),
        so ``n_frames = 1 + n_samples // hop_length`` (for even n_fft).
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Mel filterbank edges in Hz; ``fmax=None`` means ``sr / 2``.
    ref : float
        Fixed dB reference power (see the module docstring for why it is not per utterance).
    amin : float
        Power floor before the log; keeps silence finite (``10*log10(amin/ref)`` dB).
    delta_width : int
        Frames used by :func:`librosa.feature.delta` for the delta channels (odd, >= 3).
    """

    kind: str = "logmel"
    sr: int = 16000
    duration: float = 4.0
    crop: str = "start"
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    ref: float = 1.0
    amin: float = 1e-10
    delta_width: int = 9

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(f"feature kind {self.kind!r} is unknown; use one of {', '.join(FEATURE_KINDS)}")
        if self.crop not in ("start", "center"):
            raise ConfigError(f"crop={self.crop!r} is not a crop mode; use 'start' or 'center'")
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"FeatureConfig.{name}={value!r} must be a positive integer")
        if not self.duration > 0:
            raise ConfigError(f"FeatureConfig.duration={self.duration!r} must be > 0 seconds")
        if not 0 <= self.fmin < self.fmax_hz <= self.sr / 2:
            raise ConfigError(f"mel range fmin={self.fmin}, fmax={self.fmax} Hz is invalid at sr={self.sr}; "
                              f"need 0 <= fmin < fmax <= sr/2 = {self.sr / 2}")
        if not (self.ref > 0 and self.amin > 0):
            raise ConfigError(f"ref={self.ref} and amin={self.amin} must both be > 0")
        if self.kind == "logmel_deltas" and not (self.delta_width >= 3 and self.delta_width % 2 == 1
                                                 and self.delta_width <= self.n_frames):
            raise ConfigError(f"delta_width={self.delta_width} must be odd, >= 3 and <= n_frames={self.n_frames}")

    @property
    def fmax_hz(self) -> float:
        """Upper mel edge in Hz (``fmax``, or ``sr / 2`` when that is None)."""
        return float(self.sr) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_samples(self) -> int:
        """Samples per clip: ``round(duration * sr)`` (64000 at the defaults)."""
        return int(round(self.duration * self.sr))

    @property
    def n_frames(self) -> int:
        """Time frames per clip: ``1 + n_samples // hop_length`` for even n_fft (251 at the defaults)."""
        return 1 + (self.n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length

    @property
    def n_channels(self) -> int:
        return 3 if self.kind == "logmel_deltas" else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one utterance's features: (n_mels, n_frames, C) or, for raw, (n_samples, 1)."""
        if self.kind == "raw":
            return (self.n_samples, 1)
        return (self.n_mels, self.n_frames, self.n_channels)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown FeatureConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> "FeatureConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        """16 hex digits of sha256 over every field and :data:`FEATURE_CODE_VERSION`."""
        payload = json.dumps({"config": self.to_dict(), "code": FEATURE_CODE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# One waveform -> features
# --------------------------------------------------------------------------------------------------

def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    linear = hz / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@functools.lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Mel filterbank, shape (n_mels, 1 + n_fft // 2), float32: triangles on Slaney's mel scale with
    Slaney area normalisation, equal to ``librosa.filters.mel(...)`` at its defaults (tested). Written
    out in numpy so feature workers need not import librosa (numba and scipy.signal: seconds each)."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as ``librosa.stft(window="hann")`` (scipy's ``get_window``) uses."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _mel_power(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram, shape (n_mels, n_frames); equal to ``librosa.feature.melspectrogram``
    with ``center=True, pad_mode="constant"`` (tested), but in plain numpy/scipy: librosa's STFT path
    loads numba-compiled helpers, which costs each new worker process seconds."""
    import scipy.fft

    pad = cfg.n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, pad), cfg.n_fft)[::cfg.hop_length]
    spec = scipy.fft.rfft(frames * _hann(cfg.n_fft), axis=-1)           # (n_frames, 1 + n_fft // 2)
    power = spec.real ** 2 + spec.imag ** 2
    with _single_blas_thread():
        return _mel_basis(cfg.sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax_hz) @ power.T


def _power_to_db(S: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``librosa.power_to_db(S, ref=cfg.ref, amin=cfg.amin, top_db=None)``, never below its floor.

    In float32, ``10 * log10(amin)`` can round to just below ``10 * log10(amin / ref)`` (-100.00001 for
    1e-10), so the result is clipped to the floor computed in float64: digital silence is exactly it.
    """
    floor = 10.0 * np.log10(cfg.amin) - 10.0 * np.log10(max(cfg.amin, cfg.ref))
    db = 10.0 * np.log10(np.maximum(S, cfg.amin)) - 10.0 * np.log10(max(cfg.amin, cfg.ref))
    return np.maximum(db, np.asarray(floor, dtype=db.dtype))


def _delta(x: np.ndarray, width: int, order: int) -> np.ndarray:
    """``librosa.feature.delta(x, width=width, order=order, axis=-1, mode="interp")``."""
    import scipy.signal

    return scipy.signal.savgol_filter(x, width, deriv=order, polyorder=order, axis=-1, mode="interp")


def compute(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Features of one waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono waveform already at ``cfg.sr`` (see :func:`sercore.audio.load_audio`). Any length: it is
        padded or cropped to ``cfg.n_samples`` here.
    cfg : FeatureConfig

    Returns
    -------
    np.ndarray, float32, shape ``cfg.shape``
        Always finite, silence included.
    """
    y = fix_length(np.asarray(y, dtype=np.float32), cfg.n_samples, cfg.crop)
    if cfg.kind == "raw":
        return y[:, None]
    mel_db = _power_to_db(_mel_power(y, cfg), cfg)
    if cfg.kind == "logmel":
        return mel_db[:, :, None].astype(np.float32)
    d1 = _delta(mel_db, cfg.delta_width, 1)
    d2 = _delta(mel_db, cfg.delta_width, 2)
    return np.stack([mel_db, d1, d2], axis=-1).astype(np.float32)


def _compute_file(path: str, cfg: FeatureConfig) -> np.ndarray:
    return compute(load_audio(path, sr=cfg.sr, require_speech=True), cfg)


def _compute_noisy_file(path: str, cfg: FeatureConfig, snrs: Sequence[float],
                        seeds: Sequence[Sequence[int]]) -> list[np.ndarray]:
    y = fix_length(load_audio(path, sr=cfg.sr, require_speech=True), cfg.n_samples, cfg.crop)
    return [compute(add_awgn(y, snr, np.random.default_rng(list(s))), cfg) for snr, s in zip(snrs, seeds)]


# --------------------------------------------------------------------------------------------------
# Many files, in parallel
# --------------------------------------------------------------------------------------------------

_POOL = None
_POOL_JOBS = 0
#: Below this many files per worker, extraction runs in this process: starting a worker costs about
#: a second (imports), one file ~5-10 ms.
_MIN_FILES_PER_JOB = 200


@functools.lru_cache(maxsize=1)
def _threadpool_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, no limiting
        return None
    return ThreadpoolController()


def _single_blas_thread():
    """Context limiting BLAS to one thread (~0.04 ms to enter). The (128 x 513) @ (513 x 251) mel
    product is too small to gain from threads, and on a busy machine (or beside JAX's threads)
    multi-threaded BLAS made it 40x slower (62 ms instead of 1.6 ms, measured on 2 loaded cores)."""
    controller = _threadpool_controller()
    if controller is None:
        import contextlib

        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


def _warm_worker():
    """Process-pool initializer: imports and the mel filterbank done once per worker.

    Workers ignore Ctrl-C: the parent handles the interrupt and shuts the pool down, so an
    interrupted run (or a notebook kernel shutting down) prints one message, not a traceback per worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    compute(np.zeros(4096, np.float32), FeatureConfig(kind="logmel", duration=4096 / 16000))


def _pool(n_jobs: int):
    """A process pool, kept across calls so workers pay their start-up (imports, ~1 s) once per session."""
    global _POOL, _POOL_JOBS
    if _POOL is None or _POOL_JOBS != n_jobs:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _shutdown_pool()
        # spawn, not fork: the parent may already run JAX threads, which fork would corrupt.
        _POOL = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_warm_worker)
        _POOL_JOBS = n_jobs
    return _POOL


def _shutdown_pool():
    global _POOL
    if _POOL is not None:
        pool, _POOL = _POOL, None
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(_shutdown_pool)


def _run_chunk(fn, tasks):
    """Run ``fn(*args)`` for each task. An AudioError raised in a worker pickles with its path
    (:meth:`sercore.errors.AudioError.__reduce__`) and is re-raised by ``future.result()``."""
    return [fn(*args) for args in tasks]


def _progress_disabled(progress: bool) -> bool:
    if not progress:
        return True
    quiet_env = any(os.environ.get(v) for v in ("SERCORE_QUIET", "CI"))
    return quiet_env and not sys.stderr.isatty()


def _map_files(fn, tasks: list[tuple], n_jobs: int | None, progress: bool, desc: str) -> list:
    """``[fn(*t) for t in tasks]`` in parallel chunks, with a progress bar; re-raises AudioError."""
    from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in every notebook

    n_jobs = min(2, os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
    if n_jobs < 1:
        raise ConfigError(f"n_jobs={n_jobs} must be >= 1 (or None for min(2, cpu count))")
    n_jobs = min(n_jobs, max(1, len(tasks) // _MIN_FILES_PER_JOB))
    bar = tqdm(total=len(tasks), desc=desc, unit="file", disable=_progress_disabled(progress),
               leave=False)
    results: list = [None] * len(tasks)
    chunk = max(1, min(64, -(-len(tasks) // (n_jobs * 4))))
    starts = list(range(0, len(tasks), chunk))
    try:
        if n_jobs > 1:
            from concurrent.futures import as_completed
            from concurrent.futures.process import BrokenProcessPool

            try:
                pool = _pool(n_jobs)
                futures = {pool.submit(_run_chunk, fn, tasks[s:s + chunk]): s for s in starts}
                try:
                    for fut in as_completed(futures):
                        _store_chunk(results, futures[fut], fut.result(), bar)
                        starts.remove(futures[fut])
                finally:
                    for fut in futures:
                        fut.cancel()
            except BrokenProcessPool as err:
                # Typically a script without an `if __name__ == "__main__":` guard (spawned workers
                # re-run it), or a worker killed for memory. Finish the remaining files here.
                _shutdown_pool()
                warnings.warn(f"feature worker processes failed ({err}); computing the remaining "
                              f"{sum(len(tasks[s:s + chunk]) for s in starts)} files in this process. "
                              "In a script, guard the entry point with `if __name__ == '__main__':` "
                              "or pass n_jobs=1", RuntimeWarning, stacklevel=3)
        for s in list(starts):
            _store_chunk(results, s, _run_chunk(fn, tasks[s:s + chunk]), bar)
    finally:
        bar.close()
    return results


def _store_chunk(results, start, res, bar):
    results[start:start + len(res)] = res
    bar.update(len(res))


# --------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------

def _file_ids(df) -> list[str]:
    """Stable identity of each row's file: ``utt_id`` where present and unique, else the path."""
    if "utt_id" in df.columns and df["utt_id"].notna().all() and df["utt_id"].is_unique:
        return [str(u) for u in df["utt_id"]]
    return [str(p) for p in df["path"]]


def _corpus_name(df) -> str:
    if "corpus" not in df.columns or df["corpus"].isna().all():
        return "custom"
    names = sorted({str(c) for c in df["corpus"].dropna()})
    return "+".join(names)


def _file_stats(paths: Sequence[str]) -> list[list[int]]:
    stats = []
    for p in paths:
        try:
            st = os.stat(p)
            stats.append([int(st.st_size), int(st.st_mtime_ns)])
        except OSError:
            stats.append([-1, -1])
    return stats


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Cache:
    """One cache entry: ``<stem>.npz`` (features ``X`` in sorted-id order, and ``ids``) + ``<stem>.json``."""

    def __init__(self, stem: str, ids: list[str], paths: list[str], extra: dict):
        from .config import processed_dir

        self.npz = processed_dir() / f"{stem}.npz"
        self.manifest = processed_dir() / f"{stem}.json"
        order = sorted(range(len(ids)), key=ids.__getitem__)
        self.ids = [ids[i] for i in order]
        self.order = np.asarray(order, dtype=np.int64)
        stats = _file_stats([paths[i] for i in order])
        self.files = [[i, s[0], s[1]] for i, s in zip(self.ids, stats)]
        self.extra = extra

    def load(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """Cached features in sorted-id order, or None (stale/missing/corrupt; the reason is logged)."""
        if not self.npz.exists() or not self.manifest.exists():
            return None
        try:
            manifest = json.loads(self.manifest.read_text())
        except (OSError, ValueError) as err:
            warnings.warn(f"feature cache manifest {self.manifest} is unreadable ({err}); recomputing",
                          stacklevel=3)
            return None
        if manifest.get("files") != self.files:
            old = {f[0]: f[1:] for f in manifest.get("files", [])}
            changed = [f[0] for f in self.files if old.get(f[0]) != f[1:]]
            log.warning("feature cache %s is stale: %d file(s) changed size or modification time "
                        "(e.g. %s); recomputing", self.npz.name, len(changed), ", ".join(changed[:3]))
            return None
        try:
            with np.load(self.npz, allow_pickle=False) as z:
                X, ids = z["X"], z["ids"]
            if X.shape != (len(self.ids), *shape) or list(ids) != self.ids:
                raise CacheError(f"holds shape {X.shape} for {len(ids)} ids")
        except Exception as err:  # a truncated or foreign .npz raises many different types
            warnings.warn(f"feature cache {self.npz} is corrupt or unreadable ({type(err).__name__}: {err}); "
                          "recomputing and replacing it", stacklevel=3)
            return None
        return X

    def save(self, X_sorted: np.ndarray, cfg: FeatureConfig | dict) -> None:
        """Write ``X_sorted`` and the manifest atomically; ``cfg`` is a FeatureConfig or (for other
        feature extractors, e.g. :mod:`sercore.baselines`) a JSON-able dict describing the features."""
        def write_npz(f):
            np.savez(f, X=X_sorted, ids=np.asarray(self.ids, dtype=str))

        config = cfg if isinstance(cfg, dict) else cfg.to_dict()
        key = _hash(config) if isinstance(cfg, dict) else cfg.key()
        manifest = {"config": config, "config_key": key,
                    "feature_code_version": FEATURE_CODE_VERSION, **self.extra,
                    "shape": list(X_sorted.shape), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "files": self.files}
        _atomic_write(self.npz, write_npz)
        _atomic_write(self.manifest, lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def _check_df(df) -> None:
    if "path" not in df.columns:
        raise ConfigError("the DataFrame has no 'path' column; pass a table from sercore.load_corpus()")


def extract_features(df, cfg: FeatureConfig | None = None, *, cache: bool = True, n_jobs: int | None = None,
                     progress: bool = True) -> np.ndarray:
    """Load and compute the features of every row of ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
        Utterance table (:func:`sercore.load_corpus`); uses columns ``path``, ``corpus`` and (for the
        cache's file identities) ``utt_id``.
    cfg : FeatureConfig, optional
        What to compute; default ``FeatureConfig()``.
    cache : bool
        Read/write ``data/processed/<corpus>-<kind>-<key>.npz`` (+ ``.json`` manifest). The key covers
        the configuration, the feature code version and the file list; a manifest whose file sizes or
        modification times no longer match triggers a recompute. Subsets of a corpus get their own entry.
    n_jobs : int, optional
        Worker processes; default ``min(2, cpu count)``. Small jobs (< 200 files per worker) run in
        this process, since a worker needs ~2 s to load librosa's compiled functions. Workers are kept
        for reuse by later calls.
    progress : bool
        Show a tqdm bar (also hidden when ``SERCORE_QUIET`` or ``CI`` is set and stderr is not a TTY).

    Returns
    -------
    X : np.ndarray, float32, shape (len(df), *cfg.shape)
        Row ``i`` holds the features of ``df.iloc[i]``.

    Raises
    ------
    AudioError
        A file cannot be read, or holds no usable speech (shorter than 0.1 s, no frame above the
        speech floor; see :func:`sercore.audio.check_waveform`): the message names it. Existing
        caches are left as they were.
    """
    cfg = FeatureConfig() if cfg is None else cfg
    _check_df(df)
    paths = [str(p) for p in df["path"]]
    if not paths:
        return np.zeros((0, *cfg.shape), np.float32)
    ids = _file_ids(df)
    entry = None
    if cache:
        stem = f"{_corpus_name(df)}-{cfg.kind}-{_hash([cfg.key(), sorted(ids)])}"
        entry = _Cache(stem, ids, paths, {"kind": "features"})
        X_sorted = entry.load(cfg.shape)
        if X_sorted is not None:
            log.info("features loaded from cache %s", entry.npz)
            return _unsort(X_sorted, entry.order)
    results = _map_files(_compute_file, [(p, cfg) for p in paths], n_jobs, progress,
                         desc=f"{cfg.kind} features")
    X = np.stack(results).astype(np.float32, copy=False)
    if entry is not None:
        entry.save(X[entry.order], cfg)
    return X


def _unsort(X_sorted: np.ndarray, order: np.ndarray) -> np.ndarray:
    X = np.empty_like(X_sorted)
    X[order] = X_sorted
    return X


def _row_seed(seed: int, utt: str, copy: int) -> list[int]:
    """Seed words for one (utterance, copy): independent of row order and of the other rows."""
    digest = hashlib.sha256(utt.encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little"), int(copy)]


def extract_augmented(df, cfg: FeatureConfig | None = None, *, snr_db: tuple[float, float] = (10.0, 30.0),
                      copies: int = 1, seed: int = 0, cache: bool = True, n_jobs: int | None = None,
                      progress: bool = True) -> np.ndarray:
    """Features of noisy copies (additive white Gaussian noise) of exactly the rows of ``df``.

    Pass the TRAINING rows only (the training engine does). Augmenting a corpus before splitting it
    puts noisy copies of test utterances into the training set, a leak that inflates test accuracy.

    Each copy ``c`` of utterance ``u`` is: load, :func:`~sercore.audio.fix_length`, add noise at an SNR
    drawn uniformly from ``snr_db`` (relative to the mean power of the fixed-length clip), compute the
    features. The SNR and the noise come from a generator seeded by ``(seed, utt_id, c)``, so a row's
    copies do not depend on the order or the presence of other rows.

    Parameters
    ----------
    df : pandas.DataFrame
        The rows to augment (training rows).
    cfg : FeatureConfig, optional
    snr_db : (float, float)
        SNR range in dB, low and high.
    copies : int
        Noisy copies per row.
    seed : int
    cache, n_jobs, progress
        As in :func:`extract_features`; the cache key also covers ``snr_db``, ``copies`` and ``seed``.

    Returns
    -------
    X : np.ndarray, float32, shape (len(df) * copies, *cfg.shape)
        Copy-major: row ``c * len(df) + i`` is copy ``c`` of ``df.iloc[i]``, so labels are
        ``np.tile(y, copies)``.
    """
    cfg = FeatureConfig() if cfg is None else cfg
    _check_df(df)
    if int(copies) < 1:
        raise ConfigError(f"copies={copies} must be >= 1")
    low, high = float(snr_db[0]), float(snr_db[1])
    paths = [str(p) for p in df["path"]]
    n = len(paths)
    if n == 0:
        return np.zeros((0, *cfg.shape), np.float32)
    ids = _file_ids(df)
    aug = {"snr_db": [low, high], "copies": int(copies), "seed": int(seed)}
    entry = None
    if cache:
        stem = f"{_corpus_name(df)}-{cfg.kind}-awgn-{_hash([cfg.key(), aug, sorted(ids)])}"
        entry = _Cache(stem, ids, paths, {"kind": "augmented", "augmentation": aug})
        X_sorted = entry.load((int(copies), *cfg.shape))
        if X_sorted is not None:
            return np.swapaxes(_unsort(X_sorted, entry.order), 0, 1).reshape(n * copies, *cfg.shape)
    tasks = []
    for path, utt in zip(paths, ids):
        seeds = [_row_seed(seed, utt, c) for c in range(copies)]
        snrs = [random_snr(np.random.default_rng(s + [0]), low, high) for s in seeds]
        tasks.append((path, cfg, snrs, seeds))
    results = _map_files(_compute_noisy_file, tasks, n_jobs, progress, desc=f"{cfg.kind} + AWGN")
    X_rows = np.stack([np.stack(r) for r in results]).astype(np.float32, copy=False)  # (n, copies, ...)
    if entry is not None:
        entry.save(X_rows[entry.order], cfg)
    return np.swapaxes(X_rows, 0, 1).reshape(n * copies, *cfg.shape)


# --------------------------------------------------------------------------------------------------
# Normalisation and windowing (numpy or JAX)
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Standardisation ``(X - mean) / std`` with statistics fitted on training rows.

    ``mean`` and ``std`` have the shape of one utterance's features with the reduced axes set to 1:
    (n_mels, 1, C) for spectrograms, (1, 1) for raw waveforms. Works on numpy and JAX arrays (also
    inside ``jax.jit``).
    """

    mean: np.ndarray
    std: np.ndarray

    def apply(self, X):
        """Normalise features of shape (..., *item_shape); returns the same array type and dtype."""
        dtype = X.dtype
        return ((X - self.mean.astype(dtype)) / self.std.astype(dtype)).astype(dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (nested lists)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"], np.float32))


def fit_normalizer(X: np.ndarray, train_idx, *, eps: float = 1e-6, lengths=None) -> Normalizer:
    """Mean and standard deviation of ``X[train_idx]`` only.

    Parameters
    ----------
    X : np.ndarray, shape (N, n_mels, n_frames, C) or (N, n_samples, 1)
        Features of every utterance.
    train_idx : array of int or bool, shape (n_train,) or (N,)
        Which rows to fit on. Validation/test rows must not be among them.
    eps : float
        Floor on the standard deviation (constant bands would otherwise divide by zero).
    lengths : array of int, shape (N,), optional
        Valid time steps of every row (axis -2); the padding after them is left out of the statistics.

    Returns
    -------
    Normalizer
        Per mel band and channel statistics (pooled over utterances and time) for spectrograms;
        one scalar mean/std for raw waveforms.
    """
    X = np.asarray(X)
    train_idx = np.asarray(train_idx)
    rows = np.arange(X.shape[0])[train_idx if train_idx.dtype == bool else train_idx.astype(np.int64)]
    if rows.size == 0:
        raise ConfigError("fit_normalizer got no training rows; pass the indices of the training set")
    if X.ndim == 4:
        axes = (0, 2)
    elif X.ndim == 3:
        axes = (0, 1, 2)
    else:
        raise ConfigError(f"fit_normalizer expects (N, n_mels, n_frames, C) or (N, n_samples, 1), got {X.shape}")
    T = X.shape[-2]
    valid = None if lengths is None else np.asarray(lengths, np.int64)

    def chunk(start):
        """Rows ``start:start + 256`` in float64 and their 0/1 mask of valid time steps (broadcastable)."""
        r = rows[start:start + 256]
        xb = X[r].astype(np.float64)
        if valid is None:
            return xb, None
        m = (np.arange(T)[None, :] < valid[r][:, None]).astype(np.float64)      # (b, T)
        return xb, m.reshape((len(r),) + (1,) * (X.ndim - 3) + (T, 1))

    # Two passes over chunks of rows in float64: exact enough and no full float64 copy of X.
    s, count = 0.0, 0.0
    per_step = int(np.prod([X.shape[a] for a in axes[1:]])) // T           # elements per time step
    for start in range(0, rows.size, 256):
        xb, m = chunk(start)
        s = s + (xb if m is None else xb * m).sum(axis=axes, keepdims=True)
        count += xb.shape[0] * T * per_step if m is None else m.sum() * per_step
    mean = s / count
    ss = 0.0
    for start in range(0, rows.size, 256):
        xb, m = chunk(start)
        sq = np.square(xb - mean)
        ss = ss + (sq if m is None else sq * m).sum(axis=axes, keepdims=True)
    std = np.sqrt(ss / count)
    std = np.maximum(std, eps)
    return Normalizer(mean=mean[0].astype(np.float32), std=std[0].astype(np.float32))


def speaker_normalize(X: np.ndarray, speakers, *, lengths=None, eps: float = 1e-6) -> np.ndarray:
    """Each row standardised with its own speaker's statistics (:func:`fit_normalizer` over that
    speaker's rows).

    This is per-speaker normalisation, a protocol variant and not a leak-free default: a test
    speaker is normalised with statistics of *its own* (unlabelled) test utterances, which a deployed
    system only has after hearing the speaker for a while. Studies label it ``<protocol>+speaker-norm``.

    Parameters
    ----------
    X : np.ndarray, shape (N, ...)
    speakers : array of str, shape (N,)
    lengths : array of int, optional
        Valid time steps per row, as for :func:`fit_normalizer`.

    Returns
    -------
    np.ndarray, float32, shape of ``X``
    """
    speakers = np.asarray(speakers).astype(str)
    out = np.empty(X.shape, np.float32)
    for spk in np.unique(speakers):
        rows = np.flatnonzero(speakers == spk)
        norm = fit_normalizer(X, rows, eps=eps, lengths=lengths)
        out[rows] = norm.apply(np.asarray(X[rows], np.float32))
    return out


def valid_steps(durations, cfg: FeatureConfig) -> np.ndarray:
    """Time steps (axis -2 of :func:`compute`'s output) that hold an utterance of ``durations`` seconds
    when it is padded to ``cfg.duration``: frames for spectrograms, samples for waveforms; at least 1."""
    d = np.minimum(np.nan_to_num(np.asarray(durations, np.float64), nan=cfg.duration), cfg.duration)
    samples = np.maximum(np.round(d * cfg.sr).astype(np.int64), 1)
    if cfg.kind == "raw":
        return np.minimum(samples, cfg.n_samples)
    return np.minimum(1 + samples // cfg.hop_length, cfg.n_frames)


def _array_module(x):
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np
    import jax.numpy as jnp

    return jnp


def frame_windows(x, size: int, step: int, axis: int = -2, window_axis: int = -4):
    """Cut overlapping windows along one axis and stack them on a new axis (index gather; jit-friendly).

    Parameters
    ----------
    x : np.ndarray or jax.Array
        E.g. a spectrogram batch (B, n_mels, n_frames, C) or one utterance (n_mels, n_frames, C).
    size : int
        Window length along ``axis`` (frames or samples).
    step : int
        Hop between window starts. Trailing frames that do not fill a window are dropped.
    axis : int
        The axis to window (time: -2 in NHWC layout).
    window_axis : int
        Where the new window axis goes in the output, counted from the end. The default -4 gives
        (..., n_windows, n_mels, size, C) for spectrograms; use -3 for raw waveforms
        (B, n_samples, 1) -> (B, n_windows, size, 1).

    Returns
    -------
    Array of the input's type, with ``n_windows = 1 + (n - size) // step``.
    """
    xp = _array_module(x)
    axis = axis % x.ndim
    n = x.shape[axis]
    if size < 1 or step < 1 or size > n:
        raise ConfigError(f"frame_windows: need 1 <= size <= {n} (axis length) and step >= 1; "
                          f"got size={size}, step={step}")
    n_windows = 1 + (n - size) // step
    idx = (np.arange(n_windows)[:, None] * step + np.arange(size)[None, :]).reshape(-1)
    out = xp.take(x, idx, axis=axis)
    out = out.reshape(x.shape[:axis] + (n_windows, size) + x.shape[axis + 1:])
    if not -(out.ndim) <= window_axis < 0:
        raise ConfigError(f"frame_windows: window_axis={window_axis} must be in [-{out.ndim}, -1]")
    return xp.moveaxis(out, axis, window_axis)


# --------------------------------------------------------------------------------------------------
# Log-mel in JAX (for GPU pipelines and benchmarks)
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _logmel_jax_fn(cfg: FeatureConfig):
    import jax
    import jax.numpy as jnp

    window = jnp.asarray(_hann(cfg.n_fft))
    basis = jnp.asarray(_mel_basis(cfg.sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax_hz))
    pad = cfg.n_fft // 2
    n_frames = cfg.n_frames
    idx = np.arange(n_frames)[:, None] * cfg.hop_length + np.arange(cfg.n_fft)[None, :]
    log_ref = 10.0 * np.log10(max(cfg.amin, cfg.ref))
    floor = np.float32(10.0 * np.log10(cfg.amin) - log_ref)

    @jax.jit
    def fn(y):
        y = jnp.pad(y.astype(jnp.float32), [(0, 0)] * (y.ndim - 1) + [(pad, pad)])
        frames = jnp.take(y, jnp.asarray(idx), axis=-1) * window           # (..., n_frames, n_fft)
        spec = jnp.fft.rfft(frames, axis=-1)
        power = spec.real ** 2 + spec.imag ** 2                              # (..., n_frames, n_freq)
        mel = jnp.einsum("mf,...tf->...mt", basis, power)
        db = 10.0 * jnp.log10(jnp.maximum(cfg.amin, mel)) - log_ref
        return jnp.maximum(db, floor)[..., None]

    return fn


def logmel_jax(y, cfg: FeatureConfig | None = None):
    """Log-mel spectrogram in JAX (jitted; batched over leading axes), matching :func:`compute`.

    Parameters
    ----------
    y : array, shape (..., n_samples)
        Waveforms already at ``cfg.sr`` and of length ``cfg.n_samples`` (use :func:`fix_length`).
    cfg : FeatureConfig, optional
        ``kind`` is ignored (always the static log-mel).

    Returns
    -------
    jax.Array, float32, shape (..., n_mels, n_frames, 1)
    """
    cfg = FeatureConfig() if cfg is None else cfg
    if y.shape[-1] != cfg.n_samples:
        raise ConfigError(f"logmel_jax expects {cfg.n_samples} samples on the last axis, got {y.shape[-1]}; "
                          "pad or crop with sercore.audio.fix_length first")
    return _logmel_jax_fn(cfg.replace(kind="logmel"))(y)
