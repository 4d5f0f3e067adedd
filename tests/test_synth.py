"""The built-in synthetic corpus: layout, metadata, determinism, atomicity, emotion profiles."""
from __future__ import annotations

import hashlib
import json
import re
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sercore import synth
from sercore.errors import ConfigError, CorpusError

NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<take>[a-z])\.wav$")


def read_wav(path: Path) -> tuple[np.ndarray, wave._wave_params]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        pcm = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    return pcm.astype(np.float64) / 32768.0, params


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def f0_median(y: np.ndarray, sr: int = synth.SAMPLE_RATE) -> float:
    """Median autocorrelation F0 (Hz) over the loudest 40 ms frames of an utterance."""
    frame, hop = int(0.04 * sr), int(0.02 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[::hop]
    energy = (frames ** 2).mean(axis=1)
    frames = frames[energy >= np.quantile(energy, 0.7)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames, n=2 * frame, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :frame]
    lo, hi = sr // 500, sr // 60
    lags = lo + np.argmax(acf[:, lo:hi], axis=1)
    return float(np.median(sr / lags))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return synth.generate_corpus(tmp_path_factory.mktemp("synth") / "synthetic-small", size="small",
                                 seed=0, progress=False)


@pytest.fixture(scope="module")
def meta(small) -> pd.DataFrame:
    return pd.read_csv(small / "metadata.csv")


def test_small_corpus_layout(small, meta):
    wavs = sorted((small / "wav").glob("*.wav"))
    assert len(wavs) == 56 == len(meta)
    assert (small / "README.md").read_text().count("seed=0") == 1
    assert json.loads((small / "synth.json").read_text())["generator_version"] == synth.GENERATOR_VERSION
    for path in wavs:
        m = NAME.match(path.name)
        assert m, path.name
        assert m["speaker"] in synth.SPEAKERS and m["text"] in synth.SENTENCES
    assert {p.name for p in wavs} == {Path(p).name for p in meta["path"]}


def test_small_corpus_metadata(meta):
    assert list(meta.columns) == synth.METADATA_COLUMNS
    assert meta["path"].str.fullmatch(r"wav/\d\d[ab]\d\d[WLEAFTN]a\.wav").all()
    assert (meta["corpus"] == "synthetic-small").all()
    assert meta["utt_id"].is_unique
    assert sorted(meta["emotion"].unique()) == sorted(e.name for e in synth.EMOTIONS.values())
    assert meta.groupby("emotion").size().eq(8).all()                  # 4 speakers x 2 sentences
    assert meta.groupby("gender")["speaker"].nunique().to_dict() == {"female": 2, "male": 2}
    for _, row in meta.iterrows():                                      # EmoDB's gender of each id
        assert synth.SPEAKERS[f"{int(row['speaker']):02d}"].gender == row["gender"]
        letter = Path(row["path"]).name[5]
        assert synth.EMOTIONS[letter].name == row["emotion"]
    assert meta["intensity"].isna().all() and meta["recognition"].isna().all()
    assert meta["naturalness"].isna().all()
    assert (meta["sample_rate"] == 16000).all()
    assert meta["duration"].between(0.9, 2.6).all(), meta["duration"].describe()


def test_small_corpus_audio(small, meta):
    for _, row in meta.iterrows():
        y, params = read_wav(small / row["path"])
        assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 16000)
        assert params.nframes / 16000 == pytest.approx(row["duration"], abs=1e-3)
        assert np.isfinite(y).all()
        peak = np.abs(y).max()
        assert 0.02 < peak <= synth.PEAK_CEILING + 1e-3                   # audible, never clipped
        assert np.sqrt(np.mean(y[:400] ** 2)) < 0.01                     # starts with near-silence


def test_emotion_profiles_differ_as_intended(small, meta):
    rows = []
    for _, row in meta.iterrows():
        y, _ = read_wav(small / row["path"])
        loud = np.abs(y) > 0.003
        rows.append(dict(speaker=row["speaker"], text=row["text"], emotion=row["emotion"],
                         f0=12 * np.log2(f0_median(y) / synth.SPEAKERS[f"{int(row['speaker']):02d}"].f0_hz),
                         level=20 * np.log10(np.sqrt(np.mean(y[loud] ** 2))), duration=row["duration"]))
    df = pd.DataFrame(rows)
    by = df.groupby("emotion")[["f0", "level", "duration"]].mean()
    # F0 level: raised in anger, happiness, fear; lowered in sadness, boredom, disgust (semitones).
    for high in ("anger", "happiness", "fear"):
        for low in ("sadness", "boredom", "disgust"):
            assert by.loc[high, "f0"] > by.loc[low, "f0"] + 1.0, by
    assert by.loc["fear", "f0"] > by.loc["neutral", "f0"] > by.loc["boredom", "f0"], by
    # Intensity: anger loudest, sadness quietest.
    assert by["level"].idxmax() == "anger" and by["level"].idxmin() == "sadness", by
    # Rate: sad and bored speech is slower than angry and fearful speech (same sentences).
    assert min(by.loc["sadness", "duration"], by.loc["boredom", "duration"]) > \
        max(by.loc["anger", "duration"], by.loc["fear", "duration"]), by
    # Per speaker and sentence, anger is higher and louder than sadness.
    pairs = df.pivot_table(index=["speaker", "text"], columns="emotion", values=["f0", "level"])
    assert (pairs["f0"]["anger"] > pairs["f0"]["sadness"]).mean() >= 0.75
    assert (pairs["level"]["anger"] > pairs["level"]["sadness"]).all()


def test_same_seed_gives_identical_bytes(small, tmp_path):
    # Serially this time (the fixture used two threads): the result must not depend on scheduling.
    again = synth.generate_corpus(tmp_path / "again", size="small", seed=0, progress=False, n_jobs=1)
    for name in ("wav/03a01Wa.wav", "wav/08a02Ta.wav", "wav/10a01Ea.wav", "metadata.csv"):
        assert digest(small / name) == digest(again / name), name


def test_different_seed_gives_different_audio(small, tmp_path):
    for job in [("03", "a01", "W", 1), ("09", "a02", "T", 1)]:
        synth._render(job, str(tmp_path))
        name = f"{job[0]}{job[1]}{job[2]}a.wav"
        assert digest(tmp_path / name) != digest(small / "wav" / name)


def test_complete_corpus_is_not_regenerated(small):
    before = {p.name: p.stat().st_mtime_ns for p in (small / "wav").iterdir()}
    assert synth.generate_corpus(small, size="small", seed=0, progress=False) == small
    assert {p.name: p.stat().st_mtime_ns for p in (small / "wav").iterdir()} == before


def _fail_after(monkeypatch, n_ok: int):
    real = synth.synthesize_utterance
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > n_ok:
            raise RuntimeError("simulated crash during synthesis")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "synthesize_utterance", flaky)
    return calls


def test_interrupted_generation_leaves_no_corpus(tmp_path, monkeypatch):
    calls = _fail_after(monkeypatch, n_ok=5)
    root = tmp_path / "corpus"
    with pytest.raises(RuntimeError, match="simulated crash"):
        synth.generate_corpus(root, size="small", seed=0, progress=False)
    assert len(calls) < 20                                             # stopped early
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []                              # no temp folder left behind


def test_interrupted_regeneration_keeps_existing_corpus(small, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(small, root)
    before = {p.name: digest(p) for p in sorted((root / "wav").iterdir())[:5]}
    _fail_after(monkeypatch, n_ok=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        synth.generate_corpus(root, size="small", seed=1, progress=False)   # would replace seed 0
    assert json.loads((root / "synth.json").read_text())["seed"] == 0
    assert len(list((root / "wav").glob("*.wav"))) == 56
    assert {p.name: digest(p) for p in sorted((root / "wav").iterdir())[:5]} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="size"):
        synth.generate_corpus(tmp_path / "x", size="medium", progress=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(CorpusError, match="not a synthetic corpus"):
        synth.generate_corpus(foreign, size="small", progress=False)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    with pytest.raises(ConfigError, match="unknown phone"):
        synth.synthesize_utterance(synth.SPEAKERS["03"], "'qa", synth.EMOTIONS["N"],
                                   np.random.default_rng(0))


def test_full_size_design():
    """The full corpus's design (not generated here: too slow for the test budget)."""
    jobs = synth._jobs("full", 0)
    assert len(jobs) == 700 == len({j[:3] for j in jobs})
    genders = [synth.SPEAKERS[s].gender for s in synth.SIZES["full"]["speakers"]]
    assert genders.count("female") == genders.count("male") == 5
    assert sorted(synth.SENTENCES) == [f"{p}0{i}" for p in "ab" for i in range(1, 6)]
    emodb_genders = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
                     "12": "male", "13": "female", "14": "female", "15": "male", "16": "female"}
    assert {s: v.gender for s, v in synth.SPEAKERS.items()} == emodb_genders


@pytest.mark.parametrize("freq, bandwidth", [(300.0, 70.0), (1500.0, 90.0), (4500.0, 260.0)])
def test_block_resonator_matches_lfilter_when_frequency_is_constant(freq, bandwidth):
    from scipy.signal import lfilter

    x = np.random.default_rng(0).standard_normal((40, synth.BLOCK))
    r = np.exp(-np.pi * bandwidth / synth.SAMPLE_RATE)
    c, d = -2 * r * np.cos(2 * np.pi * freq / synth.SAMPLE_RATE), r * r
    expected = lfilter([1 + c + d], [1, c, d], x.ravel())
    got = synth._resonator(x, np.full(40, freq), bandwidth).ravel()
    np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())
