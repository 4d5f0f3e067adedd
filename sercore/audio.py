"""Reading audio files and the waveform operations every feature starts from.

>>> from sercore.audio import load_audio, fix_length
>>> y = load_audio("03a01Fa.wav")              # doctest: +SKIP
>>> y = fix_length(y, 64000)                   # 4.0 s at 16 kHz  # doctest: +SKIP

Any file that ``soundfile`` (libsndfile) decodes is accepted: any sample rate, sample width and
channel count. Channels are averaged to mono and the signal is resampled with soxr (high quality)
to the requested rate. Bad files raise :class:`sercore.errors.AudioError` naming the file and the fix.

Input checks (:func:`read_audio`, README "Input checks"). A file is **unusable** (no prediction, no
features) when it is shorter than :data:`MIN_SECONDS`, or fewer than :data:`MIN_ACTIVE_FRAMES`
analysis frames (:data:`FRAME_S` long, every :data:`HOP_S`) reach :data:`SPEECH_FLOOR_DBFS` RMS
(digital silence, channels that cancel when mixed to mono, padding-level noise), or it holds NaN/inf.
It is **suspicious** (answered, with a warning) when more than :data:`CLIP_FRACTION` of its samples
sit at full scale (:data:`CLIP_LEVEL`: clipping, square waves), when samples lie beyond full scale
(a float file scaled wrongly), or when its WAV header declares more frames than the file holds (cut
off during a copy).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AudioError

__all__ = ["load_audio", "read_audio", "AudioReport", "check_waveform", "declared_frames", "fix_length",
           "add_awgn", "random_snr", "READABLE_FORMATS"]

#: Containers libsndfile reads (the common ones); mentioned in error messages.
READABLE_FORMATS = "WAV/WAVEX/RF64, FLAC, OGG (Vorbis/Opus), AIFF, AU, CAF, W64 and (libsndfile >= 1.1) MP3"
_CONVERT_HINT = ("convert it to 16 kHz mono WAV, e.g. `ffmpeg -i IN -ac 1 -ar 16000 OUT.wav` "
                 "or `sox IN -c 1 -r 16000 OUT.wav`")


#: Shortest usable recording, in seconds: ten analysis hops, about one syllable.
MIN_SECONDS = 0.1
#: Analysis frame and hop of the activity check, in seconds.
FRAME_S, HOP_S = 0.020, 0.010
#: RMS level (dB re full scale) a frame must reach to count as sound that may be speech. Digital
#: silence, dither and padding-level noise (-80 dBFS and below) stay under it; the quietest RAVDESS
#: utterance peaks at -54 dBFS, and every EmoDB and RAVDESS file has 28 or more frames above it.
#: An energy floor is no voice detector: steady room noise louder than this passes.
SPEECH_FLOOR_DBFS = -60.0
#: Frames above the floor a usable recording needs (0.1 s of sound).
MIN_ACTIVE_FRAMES = 10
#: A sample at or above this magnitude (of full scale, 1.0) counts as clipped ...
CLIP_LEVEL = 0.99
#: ... and a file with more than this fraction of clipped samples gets a warning.
CLIP_FRACTION = 0.01


@dataclass
class AudioReport:
    """What :func:`read_audio` found out about one file.

    Attributes
    ----------
    path : str
    sample_rate : int
        The file's rate (before resampling).
    duration : float
        Seconds of audio actually in the file.
    declared_frames : int or None
        Frames the WAV header promises (None for other containers or unknown sizes).
    frames : int
        Frames actually decoded.
    peak : float
        Largest sample magnitude (1.0 = full scale).
    clipped_fraction : float
        Share of samples at or above :data:`CLIP_LEVEL`.
    active_frames : int
        Analysis frames at or above :data:`SPEECH_FLOOR_DBFS`.
    speech : tuple of float or None
        ``(start, end)`` in seconds from the first to the last active frame; None when none is.
    unusable : str or None
        Why no prediction should be made from this file (None: usable).
    warnings : list of str
        Why an answer from it may be wrong (suspicious, but usable).
    """

    path: str
    sample_rate: int
    duration: float
    declared_frames: int | None
    frames: int
    peak: float = 0.0
    clipped_fraction: float = 0.0
    active_frames: int = 0
    speech: tuple[float, float] | None = None
    unusable: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """The header declares more frames than the file holds."""
        return self.declared_frames is not None and self.frames < self.declared_frames


def declared_frames(path: str | os.PathLike) -> int | None:
    """Frames a RIFF/WAVE header declares in its ``data`` chunk (None when not a WAV, or when the
    size is a streaming placeholder: 0 or 0xFFFFFFFF, as RF64 and unfinished recorders write)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                    continue
                if cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                fh.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def _frame_rms_db(y: np.ndarray, sr: int) -> np.ndarray:
    """RMS level (dBFS) of :data:`FRAME_S` frames every :data:`HOP_S`, in O(n / hop) extra memory."""
    hop = max(1, int(round(HOP_S * sr)))
    per_frame = max(1, int(round(FRAME_S / HOP_S)))
    n_blocks = len(y) // hop
    if n_blocks == 0:
        return np.full(0, -np.inf)
    blocks = np.asarray(y[:n_blocks * hop], np.float32).reshape(n_blocks, hop)
    energy = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)
    if n_blocks >= per_frame:
        csum = np.concatenate([[0.0], np.cumsum(energy)])
        energy = (csum[per_frame:] - csum[:-per_frame]) / (per_frame * hop)
    else:
        energy = np.array([energy.sum() / (n_blocks * hop)])
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(energy)


def check_waveform(y: np.ndarray, sr: int) -> tuple[str | None, int, tuple[float, float] | None]:
    """The usability rules on one mono waveform (see the module docstring).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono waveform at ``sr`` Hz.
    sr : int

    Returns
    -------
    unusable : str or None
        The reason it holds no usable speech, or None.
    active_frames : int
        Frames at or above :data:`SPEECH_FLOOR_DBFS`.
    speech : (float, float) or None
        Start and end (seconds) of the span from the first to the last active frame.
    """
    seconds = len(y) / sr
    if not np.all(np.isfinite(y)):
        return "contains NaN or infinite samples (a corrupt float WAV)", 0, None
    db = _frame_rms_db(y, sr)
    active = np.flatnonzero(db >= SPEECH_FLOOR_DBFS)
    speech = None
    if active.size:
        hop = int(round(HOP_S * sr))
        start = active[0] * hop / sr
        end = min(len(y), (active[-1] * hop + int(round(FRAME_S * sr)))) / sr
        speech = (float(start), float(end))
    if seconds < MIN_SECONDS:
        return (f"is too short: {seconds * 1000:.1f} ms ({len(y)} samples at {sr} Hz), less than the "
                f"{MIN_SECONDS * 1000:.0f} ms needed to hold speech", int(active.size), speech)
    if active.size < MIN_ACTIVE_FRAMES:
        level = f"{db.max():.1f} dBFS" if db.size and np.isfinite(db.max()) else "digital silence"
        return (f"holds no speech: {active.size} of {db.size} {FRAME_S * 1000:.0f} ms frames reach "
                f"{SPEECH_FLOOR_DBFS:.0f} dBFS (loudest: {level}; {MIN_ACTIVE_FRAMES} needed)",
                int(active.size), speech)
    return None, int(active.size), speech


def read_audio(path: str | os.PathLike, sr: int = 16000) -> tuple[np.ndarray, AudioReport]:
    """Read a file like :func:`load_audio` and run the input checks on it.

    Parameters
    ----------
    path : str or path-like
    sr : int
        Target rate in Hz.

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        As :func:`load_audio` returns it.
    report : AudioReport
        ``report.unusable`` says why no answer should come from this file; ``report.warnings`` why
        an answer may be wrong. Neither raises: the caller decides.

    Raises
    ------
    AudioError
        The file is missing, empty, holds no samples or NaN/inf, or cannot be decoded.
    """
    data, file_sr, path = _decode(path)
    report = AudioReport(path=str(path), sample_rate=int(file_sr), duration=data.shape[0] / file_sr,
                         declared_frames=declared_frames(path), frames=int(data.shape[0]))
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    report.peak = peak
    y = _to_mono(data, path)
    report.clipped_fraction = float(np.count_nonzero(np.abs(data) >= CLIP_LEVEL) / data.size)
    if peak > 1.0:
        report.warnings.append(f"samples reach {peak:.3g} times full scale (beyond [-1, 1]): a float file "
                               "scaled wrongly; divide it by its peak, e.g. `sox --norm IN OUT.wav`")
    elif report.clipped_fraction > CLIP_FRACTION:
        report.warnings.append(f"clipped: {100 * report.clipped_fraction:.1f} % of samples at full scale "
                               f"(more than {100 * CLIP_FRACTION:.0f} %); the recording level was too high "
                               "or it is not speech, so the answer may be wrong")
    if report.truncated:
        report.warnings.append(
            f"truncated: the header declares {report.declared_frames} frames "
            f"({report.declared_frames / file_sr:.2f} s) but the file holds {report.frames} "
            f"({report.duration:.2f} s); it was cut off, e.g. during a copy: replace it with a good copy")
    y = _resample(y, file_sr, sr)
    report.unusable, report.active_frames, report.speech = check_waveform(y, sr)
    if report.unusable and report.unusable.startswith("holds no speech") and data.shape[1] > 1:
        loud = [c for c in range(data.shape[1]) if _frame_rms_db(data[:, c], file_sr).max(initial=-np.inf)
                >= SPEECH_FLOOR_DBFS]
        if loud:
            report.unusable += (f"; its channels cancel when averaged to mono (channel {loud[0] + 1} alone is "
                                f"audible: one is polarity-inverted), keep one with `sox IN OUT.wav remix "
                                f"{loud[0] + 1}`")
    return y, report


def load_audio(path: str | os.PathLike, sr: int = 16000, *, require_speech: bool = False) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sr`` Hz.

    Parameters
    ----------
    path : str or path-like
        Any file libsndfile decodes (see :data:`READABLE_FORMATS`), any rate, width or channel count.
    sr : int
        Target sample rate in Hz. The file is resampled (soxr, high quality) if its rate differs.
    require_speech : bool
        Also refuse a file that :func:`check_waveform` finds unusable (too short, no frame above
        the speech floor): feature extraction for a corpus does, so that no silent row is trained
        or scored.

    Returns
    -------
    y : np.ndarray, shape (n_samples,), float32
        The waveform, channels averaged, in [-1, 1] for integer PCM files.

    Raises
    ------
    AudioError
        The file is missing, empty, holds no samples, holds NaN/inf, or cannot be decoded; with
        ``require_speech``, also a file without usable speech.

    See Also
    --------
    read_audio : the same, with the input checks' report.
    fix_length : pad or crop to a fixed number of samples.
    """
    if require_speech:
        y, report = read_audio(path, sr)
        if report.unusable:
            raise AudioError(path, f"{report.unusable}; replace it with a recording that holds speech, "
                                   "or leave it out of the corpus")
        return y
    data, file_sr, path = _decode(path)
    return _resample(_to_mono(data, path), file_sr, sr)


def _decode(path) -> tuple[np.ndarray, int, Path]:
    """``(frames x channels float32, file rate, Path)``; AudioError for anything unreadable."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an audio file" if path.is_dir() else "does not exist"
        raise AudioError(path, f"{what}; check the path (did the corpus folder move? "
                               "`sercore data info` shows where sercore looks)")
    if path.stat().st_size == 0:
        raise AudioError(path, "is empty (0 bytes), probably from an interrupted download or copy; "
                               "replace it with a good copy (e.g. `sercore data fetch` again)")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as err:
        raise AudioError(path, f"cannot be decoded as audio ({err}). Readable formats: "
                               f"{READABLE_FORMATS}; if the file is fine but in another format, "
                               f"{_CONVERT_HINT}; if it is cut off or corrupt, replace it") from err
    if data.shape[0] == 0:
        raise AudioError(path, "holds no audio samples (0 frames); the recording is empty or was cut "
                               "off during writing: replace it or leave it out of the corpus")
    return data, int(file_sr), path


def _to_mono(data: np.ndarray, path) -> np.ndarray:
    y = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "contains NaN or infinite samples (a corrupt float WAV); replace it")
    return y


def _resample(y: np.ndarray, file_sr: int, sr: int) -> np.ndarray:
    if file_sr != sr:
        # soxr (librosa's resampler, installed with it) is ~4x faster than scipy's resample_poly here
        # (0.8 vs 2.9 ms for 3 s at 44.1 kHz). It is called directly: librosa.resample would load
        # numba-compiled helpers, seconds per new worker process.
        import soxr

        y = soxr.resample(y, file_sr, sr, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def fix_length(y: np.ndarray, n_samples: int, crop: str = "start") -> np.ndarray:
    """Zero-pad (at the end) or crop a waveform to exactly ``n_samples``.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Waveform.
    n_samples : int
        Length wanted.
    crop : {"start", "center"}
        Which part of a too-long clip to keep: its first ``n_samples`` (``"start"``) or the middle
        ones (``"center"``). Short clips are always padded with zeros at the end.

    Returns
    -------
    np.ndarray, shape (n_samples,), same dtype as ``y``
    """
    if crop not in ("start", "center"):
        from .errors import ConfigError

        raise ConfigError(f"crop={crop!r} is not a crop mode; use 'start' or 'center'")
    y = np.asarray(y)
    n = y.shape[0]
    if n >= n_samples:
        offset = 0 if crop == "start" else (n - n_samples) // 2
        return y[offset:offset + n_samples].copy()
    out = np.zeros((n_samples,) + y.shape[1:], dtype=y.dtype)
    out[:n] = y
    return out


def add_awgn(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` relative to the signal's mean power.

    The noise is drawn from ``rng`` and rescaled so that its empirical power is exactly
    ``mean(y**2) / 10**(snr_db / 10)``; the SNR measured on the result therefore equals ``snr_db``
    (to float precision).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Waveform.
    snr_db : float
        Signal-to-noise ratio in dB.
    rng : np.random.Generator
        Source of the noise.

    Returns
    -------
    np.ndarray, shape (n,), dtype of ``y``
        ``y + noise``. A silent input (all zeros) has no defined SNR: it is returned unchanged
        (a copy), so no NaN ever appears.
    """
    y = np.asarray(y)
    signal_power = float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
    if signal_power == 0.0:
        return y.copy()
    noise = rng.standard_normal(y.shape)
    noise *= np.sqrt(signal_power / 10.0 ** (snr_db / 10.0) / np.mean(np.square(noise)))
    return (y + noise).astype(y.dtype, copy=False)


def random_snr(rng: np.random.Generator, low: float, high: float) -> float:
    """One SNR in dB drawn uniformly from ``[low, high)``."""
    if high < low:
        from .errors import ConfigError

        raise ConfigError(f"SNR range ({low}, {high}) is reversed; give (low, high) in dB with low <= high")
    return float(rng.uniform(low, high))
