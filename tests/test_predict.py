"""Saved models and `sercore predict` / `sercore evaluate`: round trip, JSON, timeline, clear errors."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sercore.cli import main
from sercore.errors import AudioError, ModelError
from sercore.features import FeatureConfig, compute, fit_normalizer
from sercore import predict


@pytest.fixture
def saved_dir(tmp_path, monkeypatch):
    """A TinyNet saved with a real feature config, labels and normaliser."""
    from test_study import tiny_registry

    reg = tiny_registry()
    monkeypatch.setitem(sys.modules, "sercore.models", reg)
    cfg = FeatureConfig(n_mels=32, duration=1.0, hop_length=512, n_fft=512)
    model = reg.create("tiny", num_classes=3, input_shape=cfg.shape, seed=4)
    model.eval()
    X = np.random.default_rng(0).normal(size=(10, *cfg.shape)).astype(np.float32) * 10 - 40
    norm = fit_normalizer(X, np.arange(10))
    out = predict.save_model(tmp_path / "model", model, cfg, ["anger", "neutral", "sadness"], norm, "tiny",
                             extra={"corpus": "toy"})
    return out, model, cfg, norm


def test_save_load_predict_round_trip(saved_dir, tmp_path, wav_writer):
    folder, model, cfg, norm = saved_dir
    wav = wav_writer(tmp_path / "a.wav", seconds=0.7, freq=300)
    saved = predict.load_model(folder)
    assert saved.labels == ["anger", "neutral", "sadness"] and saved.feature_cfg == cfg
    np.testing.assert_allclose(saved.normalizer.mean, norm.mean)
    out = predict.predict_file(wav, saved)
    assert out["label"] in saved.labels and sum(out["probabilities"].values()) == pytest.approx(1.0, rel=1e-5)
    # same numbers as the original in-memory model
    from sercore.audio import load_audio
    from sercore.training import predict_proba

    x = norm.apply(compute(load_audio(wav, sr=cfg.sr), cfg)[None])
    np.testing.assert_allclose(list(out["probabilities"].values()), predict_proba(model, x)[0], rtol=1e-5)
    assert out["resampled_from"] is None


def test_resampling_is_automatic_and_reported(saved_dir, tmp_path, wav_writer):
    wav = wav_writer(tmp_path / "8k.wav", seconds=0.5, sr=8000)
    out = predict.predict_file(wav, predict.load_model(saved_dir[0]))
    assert out["resampled_from"] == 8000


def test_timeline_covers_a_long_recording(saved_dir, tmp_path, wav_writer):
    wav = wav_writer(tmp_path / "long.wav", seconds=3.2)
    table = predict.predict_timeline(wav, predict.load_model(saved_dir[0]), window_s=1.0, hop_s=0.5)
    assert table["start"].iloc[0] == 0 and table["end"].iloc[-1] == pytest.approx(3.2)
    assert len(table) == 6 and set(table["label"]) <= {"anger", "neutral", "sadness"}
    np.testing.assert_allclose(table[["anger", "neutral", "sadness"]].sum(axis=1), 1.0, rtol=1e-5)


def test_cli_predict_json_and_text(saved_dir, tmp_path, wav_writer, capsys):
    wav = wav_writer(tmp_path / "b.wav", seconds=0.6)
    assert main(["predict", str(wav), "--model", str(saved_dir[0]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["path"] == str(wav) and out["label"] in out["probabilities"]
    assert main(["predict", str(wav), "--model", str(saved_dir[0]), "--timeline", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["windows"]) >= 1
    assert main(["predict", str(wav), "--model", str(saved_dir[0])]) == 0
    assert capsys.readouterr().out.startswith(f"{wav}: ")


def test_clear_errors(saved_dir, tmp_path, capsys):
    with pytest.raises(ModelError, match="does not exist.*sercore train"):
        predict.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no saved model"):
        predict.load_model(tmp_path / "empty")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioError, match="bad.wav"):
        predict.predict_file(bad, predict.load_model(saved_dir[0]))
    assert main(["predict", str(bad), "--model", str(saved_dir[0])]) == 1
    assert "bad.wav" in capsys.readouterr().err
    assert main(["predict", str(bad), "--model", str(tmp_path / "nowhere")]) == 1
    assert "train" in capsys.readouterr().err


def test_cli_evaluate_and_predict_from_a_study(tmp_path, data_dir, wav_writer, monkeypatch, capsys):
    """A study folder works as --model (best validation run) and `sercore evaluate` prints its tables."""
    from test_study import run, tiny_registry, write_toy_corpus

    monkeypatch.setitem(sys.modules, "sercore.models", tiny_registry())
    monkeypatch.setenv("SERCORE_QUIET", "1")
    df = write_toy_corpus(tmp_path / "wav", wav_writer)
    st = run(df, tmp_path / "res", folds=2, train={"epochs": 2})
    assert main(["evaluate", "--study", str(st.dir), "--n-boot", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"][0]["n_runs"] == 2 and len(out["confusion"]["tiny/speaker_kfold"]) == 3
    assert main(["evaluate", "--study", str(st.dir), "--n-boot", "50"]) == 0
    text = capsys.readouterr().out
    assert "confusion matrix" in text and "per-class recall" in text
    ranked = st.results.sort_values("run_id", ignore_index=True)
    best = ranked.loc[ranked["val_uar"].idxmax()]  # best validation UAR, first on ties
    assert predict.resolve_model_dir(st.dir) == st.dir / "runs" / best["run_id"] / "model"
    assert main(["predict", df["path"][0], "--model", str(st.dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in st.labels


def test_cli_train_prints_results_and_writes_the_table(tmp_path, data_dir, wav_writer, monkeypatch, capsys):
    import sercore.corpora
    from test_study import tiny_registry, write_toy_corpus

    monkeypatch.setitem(sys.modules, "sercore.models", tiny_registry())
    monkeypatch.setenv("SERCORE_QUIET", "1")
    df = write_toy_corpus(tmp_path / "wav", wav_writer)
    monkeypatch.setattr(sercore.corpora, "load_corpus", lambda name, root=None: df)
    argv = ["train", "--model", "tiny", "--corpus", "toy", "--profile", "smoke", "--folds", "0", "--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "study folder:" in out.out and "tiny-speaker_kfold-f0-s0" in out.err
    assert (data_dir / "results" / "toy" / "smoke" / "results.parquet").exists()
    assert main(argv) == 0 and "skipped" in capsys.readouterr().err
    assert main(["train", "--model", "tiny", "--corpus", "toy", "--folds", "x"]) == 1
    assert "comma-separated" in capsys.readouterr().err
