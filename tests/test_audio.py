"""sercore.audio: reading any soundfile-readable audio, bad files, fix_length, AWGN."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sercore.audio import add_awgn, fix_length, load_audio, random_snr
from sercore.errors import AudioError, ConfigError


def dominant_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum) * sr / y.size)


@pytest.mark.parametrize("file_sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_load_any_rate_and_channel_count(tmp_path, wav_writer, file_sr, channels):
    path = wav_writer(tmp_path / "a.wav", seconds=0.5, sr=file_sr, channels=channels, freq=440.0)
    y = load_audio(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - 8000) <= 1
    assert np.all(np.isfinite(y))
    assert dominant_hz(y, 16000) == pytest.approx(440.0, abs=4.0)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_load_any_sample_width(tmp_path, wav_writer, subtype):
    path = wav_writer(tmp_path / "a.wav", seconds=0.25, sr=16000, subtype=subtype)
    y = load_audio(path)
    reference = load_audio(wav_writer(tmp_path / "ref.wav", seconds=0.25, sr=16000, subtype="FLOAT"))
    assert y.dtype == np.float32 and y.shape == reference.shape
    tolerance = 0.01 if subtype == "PCM_U8" else 1e-4
    np.testing.assert_allclose(y, reference, atol=tolerance)


@pytest.mark.parametrize("suffix,fmt", [(".flac", "FLAC"), (".ogg", "OGG"), (".aiff", "AIFF")])
def test_load_other_containers(tmp_path, suffix, fmt):
    t = np.arange(8000) / 16000
    y_in = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / f"a{suffix}"
    sf.write(path, y_in, 16000, format=fmt)
    y = load_audio(path)
    assert y.shape == (8000,)
    assert dominant_hz(y, 16000) == pytest.approx(300.0, abs=4.0)


def test_stereo_44k_is_resampled_and_downmixed_by_mean(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.4 * np.sin(2 * np.pi * 500 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1).astype(np.float32), sr, subtype="PCM_16")
    y = load_audio(path, sr=16000)
    assert y.shape == (16000,)
    assert dominant_hz(y, 16000) == pytest.approx(500.0, abs=2.0)
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(0.2, abs=0.01)  # mean of 0.4 and 0


def _zero_sample_wav(path):
    sf.write(path, np.zeros((0,), np.float32), 16000, subtype="PCM_16")
    return path


def _truncated_header(path, tmp_path, wav_writer):
    good = wav_writer(tmp_path / "good.wav", seconds=0.1)
    path.write_bytes(good.read_bytes()[:20])
    return path


BAD_FILES = {
    "missing": (lambda p, tp, w: p, "does not exist"),
    "empty": (lambda p, tp, w: (p.write_bytes(b""), p)[1], "empty (0 bytes)"),
    "zero_samples": (lambda p, tp, w: _zero_sample_wav(p), "no audio samples"),
    "truncated_header": (_truncated_header, "cannot be decoded"),
    "random_bytes": (lambda p, tp, w: (p.write_bytes(np.random.default_rng(0).bytes(4096)), p)[1],
                     "cannot be decoded"),
    "text_file": (lambda p, tp, w: (p.write_text("utterance,emotion\n03a01Fa,happiness\n" * 50), p)[1],
                  "cannot be decoded"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_audio_error_naming_file(tmp_path, wav_writer, case):
    make, expected = BAD_FILES[case]
    path = make(tmp_path / f"{case}.wav", tmp_path, wav_writer)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_unreadable_format_suggests_conversion(tmp_path):
    path = tmp_path / "clip.mp3"                      # not an MP3 stream libsndfile can decode
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message
    assert "WAV" in message and "FLAC" in message       # says which formats work
    assert "ffmpeg" in message and "sox" in message     # and how to convert


def test_folder_and_nan_samples_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN") as info:
        load_audio(path)
    assert info.value.path == str(path)


def test_fix_length_pads_at_end_and_crops():
    y = np.arange(1, 11, dtype=np.float32)
    padded = fix_length(y, 15)
    np.testing.assert_array_equal(padded[:10], y)
    np.testing.assert_array_equal(padded[10:], 0)
    np.testing.assert_array_equal(fix_length(y, 4), [1, 2, 3, 4])
    np.testing.assert_array_equal(fix_length(y, 4, crop="center"), [4, 5, 6, 7])
    np.testing.assert_array_equal(fix_length(y, 10), y)
    assert fix_length(y, 4) is not y and fix_length(y, 10).dtype == np.float32
    with pytest.raises(ConfigError, match="crop"):
        fix_length(y, 4, crop="end")


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_add_awgn_hits_the_snr_exactly(snr_db):
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    noisy = add_awgn(y, snr_db, rng)
    noise = noisy.astype(np.float64) - y
    measured = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert noisy.dtype == np.float32
    assert measured == pytest.approx(snr_db, abs=1e-3)


def test_add_awgn_is_deterministic_and_silence_stays_finite():
    y = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    a = add_awgn(y, 10.0, np.random.default_rng(5))
    b = add_awgn(y, 10.0, np.random.default_rng(5))
    c = add_awgn(y, 10.0, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    silence = np.zeros(1000, np.float32)
    out = add_awgn(silence, 10.0, np.random.default_rng(0))   # SNR undefined: returned unchanged
    assert np.all(np.isfinite(out)) and np.array_equal(out, silence) and out is not silence


def test_random_snr_range():
    rng = np.random.default_rng(0)
    draws = [random_snr(rng, 10.0, 30.0) for _ in range(500)]
    assert min(draws) >= 10.0 and max(draws) < 30.0 and np.std(draws) > 4
    assert random_snr(rng, 7.0, 7.0) == 7.0
    with pytest.raises(ConfigError):
        random_snr(rng, 30.0, 10.0)
