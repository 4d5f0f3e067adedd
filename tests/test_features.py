"""sercore.features: configuration, feature values and shapes, the cache, augmentation, normalisation,
windowing and the JAX log-mel."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sercore import features as F
from sercore.audio import fix_length, load_audio
from sercore.errors import AudioError, ConfigError
from sercore.features import FeatureConfig, compute, extract_augmented, extract_features

SHORT = FeatureConfig(duration=0.5, n_mels=32)          # 8000 samples, 32 x 32 frames: fast


def make_corpus(root, wav_writer, n=6, corpus="toy"):
    """A tiny utterance table with wavs of different lengths, rates and tones."""
    rows = []
    for i in range(n):
        path = wav_writer(root / "wav" / f"u{i:02d}.wav", seconds=0.3 + 0.1 * i,
                          sr=[16000, 22050, 8000][i % 3], freq=200.0 + 50 * i, seed=i)
        rows.append({"utt_id": f"u{i:02d}", "path": str(path), "corpus": corpus})
    return pd.DataFrame(rows)


class CallCounter:
    """Spy on the per-file workers: counts how many files were actually computed."""

    def __init__(self, monkeypatch):
        self.files = 0
        real = F._map_files

        def spy(fn, tasks, *args, **kwargs):
            self.files += len(tasks)
            return real(fn, tasks, *args, **kwargs)

        monkeypatch.setattr(F, "_map_files", spy)


def cache_files(data_dir):
    return sorted(p.name for p in (data_dir / "processed").glob("*") if not p.name.startswith("."))


# -------------------------------------------------------------------------------------------------- config

def test_default_shapes():
    assert FeatureConfig().shape == (128, 251, 1)
    assert FeatureConfig().n_frames == 251 and FeatureConfig().n_samples == 64000
    assert FeatureConfig(kind="logmel_deltas").shape == (128, 251, 3)
    assert FeatureConfig(kind="raw").shape == (64000, 1)


@pytest.mark.parametrize("kind", F.FEATURE_KINDS)
@pytest.mark.parametrize("duration,hop_length,n_mels", [(4.0, 256, 128), (0.5, 160, 40), (1.03, 512, 64)])
def test_compute_shape_matches_config(kind, duration, hop_length, n_mels):
    cfg = FeatureConfig(kind=kind, duration=duration, hop_length=hop_length, n_mels=n_mels)
    y = np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.1
    out = compute(y, cfg)
    assert out.shape == cfg.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("kind", F.FEATURE_KINDS)
def test_silence_gives_finite_features(kind):
    cfg = FeatureConfig(kind=kind)
    out = compute(np.zeros(1000, np.float32), cfg)
    assert np.all(np.isfinite(out))
    if kind != "raw":
        assert out[..., 0].min() == pytest.approx(10 * np.log10(cfg.amin))     # -100 dB floor
        if kind == "logmel_deltas":
            np.testing.assert_allclose(out[..., 1:], 0.0, atol=1e-4)


def test_logmel_matches_librosa_reference():
    import librosa

    cfg = FeatureConfig(duration=1.0)
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=256, n_mels=128),
        ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(compute(y, cfg)[..., 0], expected, atol=1e-3)
    deltas = compute(y, cfg.replace(kind="logmel_deltas"))
    np.testing.assert_allclose(deltas[..., 1], librosa.feature.delta(expected), atol=1e-3)
    np.testing.assert_allclose(deltas[..., 2], librosa.feature.delta(expected, order=2), atol=1e-3)


def test_fixed_db_reference_keeps_loudness():
    """Doubling the amplitude adds 6.02 dB everywhere: level is not normalised away per utterance."""
    y = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.05
    quiet, loud = compute(y, SHORT), compute(2 * y, SHORT)
    np.testing.assert_allclose(loud - quiet, 20 * np.log10(2), atol=1e-3)


def test_raw_is_the_fixed_length_waveform():
    y = np.arange(10000, dtype=np.float32)
    out = compute(y, FeatureConfig(kind="raw", duration=0.5, crop="center"))
    np.testing.assert_array_equal(out[:, 0], y[1000:9000])


def test_key_covers_every_field_and_code_version(monkeypatch):
    base = FeatureConfig()
    changed = [base.replace(kind="raw"), base.replace(sr=8000), base.replace(duration=3.5),
               base.replace(crop="center"), base.replace(n_fft=512), base.replace(hop_length=128),
               base.replace(n_mels=64), base.replace(fmin=20.0), base.replace(fmax=7600.0),
               base.replace(ref=2.0), base.replace(amin=1e-8), base.replace(delta_width=5)]
    keys = {cfg.key() for cfg in changed} | {base.key()}
    assert len(keys) == len(changed) + 1
    assert FeatureConfig().key() == base.key() and len(base.key()) == 16
    monkeypatch.setattr(F, "FEATURE_CODE_VERSION", "999")
    assert base.key() not in keys


def test_config_round_trip_and_validation():
    cfg = FeatureConfig(kind="logmel_deltas", n_mels=64, fmax=7000.0)
    assert FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="n_mel"):
        FeatureConfig.from_dict({"n_mel": 64})
    for bad in [dict(kind="mfcc"), dict(crop="end"), dict(n_mels=0), dict(hop_length=2.5),
                dict(fmax=9000.0), dict(duration=0), dict(amin=0.0)]:
        with pytest.raises(ConfigError):
            FeatureConfig(**bad)
    with pytest.raises(Exception):
        cfg.n_mels = 3                                  # frozen


# -------------------------------------------------------------------------------------------------- extraction + cache

def test_extract_rows_aligned_with_df(data_dir, tmp_path, wav_writer):
    df = make_corpus(tmp_path, wav_writer).sample(frac=1.0, random_state=3).reset_index(drop=True)
    X = extract_features(df, SHORT, progress=False)
    assert X.shape == (len(df), *SHORT.shape) and X.dtype == np.float32
    for i, path in enumerate(df["path"]):
        np.testing.assert_allclose(X[i], compute(load_audio(path), SHORT), atol=1e-5)


def test_cache_reused_and_manifest_written(data_dir, tmp_path, wav_writer, monkeypatch):
    df = make_corpus(tmp_path, wav_writer)
    spy = CallCounter(monkeypatch)
    X1 = extract_features(df, SHORT, progress=False)
    assert spy.files == len(df)
    [npz, manifest] = sorted((data_dir / "processed").glob("toy-logmel-*"), key=lambda p: p.suffix == ".json")
    meta = json.loads(manifest.read_text())
    assert meta["config"] == SHORT.to_dict() and meta["feature_code_version"] == F.FEATURE_CODE_VERSION
    assert [f[0] for f in meta["files"]] == sorted(df["utt_id"]) and "created" in meta
    X2 = extract_features(df.iloc[::-1].reset_index(drop=True), SHORT, progress=False)   # any row order
    assert spy.files == len(df)                       # nothing recomputed
    np.testing.assert_array_equal(X2, X1[::-1])
    # a subset is its own entry, equal to the matching rows
    X3 = extract_features(df.iloc[[4, 1]], SHORT, progress=False)
    np.testing.assert_array_equal(X3, X1[[4, 1]])
    assert len(cache_files(data_dir)) == 4


def test_changed_parameter_gives_new_cache(data_dir, tmp_path, wav_writer):
    df = make_corpus(tmp_path, wav_writer, n=3)
    a = extract_features(df, SHORT, progress=False)
    b = extract_features(df, SHORT.replace(n_mels=16), progress=False)
    assert a.shape[1] == 32 and b.shape[1] == 16
    assert len(cache_files(data_dir)) == 4            # both entries kept


def test_modified_file_is_recomputed(data_dir, tmp_path, wav_writer, monkeypatch, caplog):
    df = make_corpus(tmp_path, wav_writer, n=3)
    X1 = extract_features(df, SHORT, progress=False)
    wav_writer(Path(df.path[1]), seconds=0.4, freq=1000.0)  # new content for u01
    st = os.stat(df.path[1])
    os.utime(df.path[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    spy = CallCounter(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="sercore.features"):
        X2 = extract_features(df, SHORT, progress=False)
    assert spy.files == len(df)
    assert "stale" in caplog.text and "u01" in caplog.text
    np.testing.assert_allclose(X2[1], compute(load_audio(df.path[1]), SHORT), atol=1e-5)
    assert not np.allclose(X1[1], X2[1])
    extract_features(df, SHORT, progress=False)
    assert spy.files == len(df)                       # the refreshed entry is valid again


def test_corrupt_cache_is_replaced(data_dir, tmp_path, wav_writer, monkeypatch):
    df = make_corpus(tmp_path, wav_writer, n=3)
    X1 = extract_features(df, SHORT, progress=False)
    [npz] = (data_dir / "processed").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:200])            # truncated
    spy = CallCounter(monkeypatch)
    with pytest.warns(UserWarning, match="corrupt"):
        X2 = extract_features(df, SHORT, progress=False)
    assert spy.files == len(df)
    np.testing.assert_array_equal(X1, X2)
    with np.load(npz) as z:                           # replaced by a good file
        assert z["X"].shape == (3, *SHORT.shape)


def test_bad_audio_names_file_and_leaves_other_caches(data_dir, tmp_path, wav_writer):
    df = make_corpus(tmp_path, wav_writer, n=3)
    extract_features(df, SHORT, progress=False)
    before = {p: p.read_bytes() for p in (data_dir / "processed").iterdir()}
    bad = tmp_path / "wav" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    df_bad = pd.concat([df, pd.DataFrame([{"utt_id": "broken", "path": str(bad), "corpus": "toy"}])],
                       ignore_index=True)
    with pytest.raises(AudioError) as info:
        extract_features(df_bad, SHORT, progress=False)
    assert info.value.path == str(bad) and str(bad) in str(info.value)
    after = {p: p.read_bytes() for p in (data_dir / "processed").iterdir()}
    assert after == before                            # nothing added, nothing lost


def test_parallel_workers_match_and_forward_audio_errors(data_dir, tmp_path, wav_writer, monkeypatch):
    """The process-pool path (forced with few files) gives the same numbers, and a bad file's
    AudioError comes back from the worker with its path."""
    monkeypatch.setattr(F, "_MIN_FILES_PER_JOB", 1)
    df = make_corpus(tmp_path, wav_writer, n=4)
    try:
        X = extract_features(df, SHORT, n_jobs=2, cache=False, progress=False)
        np.testing.assert_allclose(X, extract_features(df, SHORT, n_jobs=1, cache=False, progress=False),
                                   atol=1e-5)
        df.loc[2, "path"] = str(tmp_path / "missing.wav")
        with pytest.raises(AudioError) as info:
            extract_features(df, SHORT, n_jobs=2, progress=False)
        assert info.value.path == str(tmp_path / "missing.wav")
    finally:
        F._shutdown_pool()
    assert not (data_dir / "processed").exists() or cache_files(data_dir) == []


def test_progress_bar_quiet_in_ci(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    monkeypatch.delenv("SERCORE_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert F._progress_disabled(False)
    monkeypatch.setenv("CI", "true")
    assert F._progress_disabled(True)


# -------------------------------------------------------------------------------------------------- augmentation

def measured_snr(clean, noisy):
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))


def test_augmented_copies_of_given_rows_only(data_dir, tmp_path, wav_writer, monkeypatch):
    cfg = FeatureConfig(kind="raw", duration=0.5)
    df = make_corpus(tmp_path, wav_writer, n=5)
    train = df.iloc[[0, 2, 3]].reset_index(drop=True)
    X = extract_augmented(train, cfg, snr_db=(5.0, 15.0), copies=2, seed=1, progress=False)
    assert X.shape == (6, *cfg.shape)
    snrs = []
    for c in range(2):
        for i, path in enumerate(train["path"]):
            clean = fix_length(load_audio(path), cfg.n_samples)
            snrs.append(measured_snr(clean, X[c * 3 + i, :, 0]))
    assert all(5.0 - 1e-3 <= s <= 15.0 + 1e-3 for s in snrs)
    assert len({round(s, 3) for s in snrs}) == 6       # a fresh SNR per copy
    # deterministic, independent of row order, cached; another seed differs
    spy = CallCounter(monkeypatch)
    again = extract_augmented(train.iloc[::-1], cfg, snr_db=(5.0, 15.0), copies=2, seed=1, progress=False)
    assert spy.files == 0
    np.testing.assert_array_equal(again, np.concatenate([X[:3][::-1], X[3:][::-1]]))
    fresh = extract_augmented(train.iloc[::-1], cfg, snr_db=(5.0, 15.0), copies=2, seed=1, cache=False,
                              progress=False)
    np.testing.assert_array_equal(fresh, again)
    other = extract_augmented(train, cfg, snr_db=(5.0, 15.0), copies=2, seed=2, progress=False)
    assert not np.allclose(other, X)


def test_augmented_logmel_shape_and_finite(data_dir, tmp_path, wav_writer):
    df = make_corpus(tmp_path, wav_writer, n=2)
    X = extract_augmented(df, SHORT.replace(kind="logmel_deltas"), copies=3, progress=False)
    assert X.shape == (6, 32, 32, 3) and np.all(np.isfinite(X))


# -------------------------------------------------------------------------------------------------- normaliser

def test_normalizer_uses_training_rows_only():
    rng = np.random.default_rng(0)
    X = rng.normal(2.0, 3.0, size=(40, 8, 20, 2)).astype(np.float32)
    train_idx = np.arange(30)
    X[30:] = 1e4                                      # wildly different test rows
    norm = F.fit_normalizer(X, train_idx)
    expected_mean = X[:30].astype(np.float64).mean(axis=(0, 2), keepdims=True)[0]
    expected_std = X[:30].astype(np.float64).std(axis=(0, 2), keepdims=True)[0]
    assert norm.mean.shape == (8, 1, 2)
    np.testing.assert_allclose(norm.mean, expected_mean, rtol=1e-5)
    np.testing.assert_allclose(norm.std, expected_std, rtol=1e-5)
    mask = np.zeros(40, bool)
    mask[:30] = True
    np.testing.assert_allclose(F.fit_normalizer(X, mask).mean, norm.mean)
    Z = norm.apply(X[:30])
    np.testing.assert_allclose(Z.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(Z.std(axis=(0, 2)), 1.0, atol=1e-4)


def test_normalizer_raw_scalar_constant_band_json_and_jax():
    import jax.numpy as jnp

    X = np.random.default_rng(0).standard_normal((6, 100, 1)).astype(np.float32)
    norm = F.fit_normalizer(X, [0, 1, 2])
    assert norm.mean.size == 1 and norm.std.size == 1
    flat = np.zeros((4, 3, 5, 1), np.float32)                 # constant bands: std floored
    z = F.fit_normalizer(flat, [0, 1]).apply(flat)
    assert np.all(np.isfinite(z))
    restored = F.Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(restored.mean, norm.mean)
    out = restored.apply(jnp.asarray(X))
    assert isinstance(out, type(jnp.zeros(1))) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), norm.apply(X), atol=1e-6)
    with pytest.raises(ConfigError):
        F.fit_normalizer(X, [])


# -------------------------------------------------------------------------------------------------- windows

@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_frame_windows_spectrogram(backend):
    import jax
    import jax.numpy as jnp

    x = np.random.default_rng(0).standard_normal((2, 8, 30, 3)).astype(np.float32)
    xs = jnp.asarray(x) if backend == "jax" else x
    out = F.frame_windows(xs, size=5, step=3)
    assert out.shape == (2, 9, 8, 5, 3)               # 1 + (30 - 5) // 3 windows
    assert isinstance(out, type(xs))
    for w in range(9):
        np.testing.assert_array_equal(np.asarray(out)[:, w], x[:, :, 3 * w:3 * w + 5, :])
    if backend == "jax":
        jitted = jax.jit(lambda a: F.frame_windows(a, size=5, step=3))(xs)
        np.testing.assert_array_equal(np.asarray(jitted), np.asarray(out))


def test_frame_windows_single_utterance_raw_and_errors():
    one = np.arange(4 * 10 * 1).reshape(4, 10, 1)
    assert F.frame_windows(one, 4, 2).shape == (4, 4, 4, 1)
    raw = np.arange(2 * 100).reshape(2, 100, 1)
    out = F.frame_windows(raw, 20, 10, axis=-2, window_axis=-3)
    assert out.shape == (2, 9, 20, 1)
    np.testing.assert_array_equal(out[1, 2, :, 0], raw[1, 20:40, 0])
    with pytest.raises(ConfigError):
        F.frame_windows(one, 11, 1)


# -------------------------------------------------------------------------------------------------- JAX log-mel

def test_logmel_jax_matches_librosa_path():
    cfg = FeatureConfig(duration=1.0)
    rng = np.random.default_rng(0)
    t = np.arange(cfg.n_samples) / cfg.sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
         + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    batch = np.stack([y, 0.1 * y[::-1]])
    out = np.asarray(F.logmel_jax(batch, cfg))
    assert out.shape == (2, *cfg.shape)
    for i in range(2):
        np.testing.assert_allclose(out[i], compute(batch[i], cfg), atol=1e-3)
    with pytest.raises(ConfigError, match="samples"):
        F.logmel_jax(y[:100], cfg)


# -------------------------------------------------------------------------------------------------- real EmoDB

@pytest.mark.emodb
def test_emodb_logmel_features(emodb_dir, data_dir, monkeypatch):
    paths = sorted((emodb_dir / "wav").glob("*.wav"))[::27][:20]
    df = pd.DataFrame({"utt_id": [p.stem for p in paths], "path": [str(p) for p in paths], "corpus": "emodb"})
    spy = CallCounter(monkeypatch)
    X = extract_features(df, FeatureConfig(), progress=False)
    assert X.shape == (20, 128, 251, 1) and np.all(np.isfinite(X))
    assert -100.0 <= X.min() and X.max() < 60.0
    assert X.std(axis=(1, 2, 3)).min() > 1.0           # real speech, not padding only
    X2 = extract_features(df, FeatureConfig(), progress=False)
    assert spy.files == 20
    np.testing.assert_array_equal(X, X2)
    assert len(list((data_dir / "processed").glob("emodb-logmel-*.npz"))) == 1


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 1024, 128, 0.0, 8000.0), (16000, 512, 40, 50.0, 7600.0),
                                                       (22050, 2048, 64, 0.0, 11025.0)])
def test_mel_basis_and_window_equal_librosa(sr, n_fft, n_mels, fmin, fmax):
    import librosa
    import scipy.signal

    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32)
    np.testing.assert_allclose(F._mel_basis(sr, n_fft, n_mels, fmin, fmax), expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(F._hann(n_fft), scipy.signal.get_window("hann", n_fft, fftbins=True), atol=1e-7)
