"""Classical baselines: features (shape, cache, bad files), leak guards of C selection and scaling,
and rows that join a study on the networks' folds."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from sercore import baselines as bl
from sercore import study as study_mod
from sercore.errors import AudioError, ConfigError
from sercore.protocols import make_splits, protocol_label
from test_study import EMOTIONS, write_toy_corpus



def write_corpus(folder, wav_writer) -> pd.DataFrame:
    """6 speakers (3 f, 3 m) x 3 emotions x 3 takes of 0.4 s tones; the emotion sets the pitch."""
    return write_toy_corpus(folder, wav_writer, takes=3, seconds=0.4)


@pytest.fixture
def toy(tmp_path, data_dir, wav_writer, monkeypatch):
    monkeypatch.setenv("SERCORE_QUIET", "1")
    return write_corpus(tmp_path / "wav", wav_writer)


def _run(df, root, name="logmel_lr", **kw):
    return bl.run_baseline("toy", name, kw.pop("protocol", "speaker_kfold"), "smoke", df=df, results_root=root,
                           k=3, folds=3, n_jobs=1, **kw)


@pytest.mark.parametrize("feature_set, width", [("egemaps", 88), ("compare", 6373), ("logmel_stats", 80)])
def test_features_shape_finite_and_cached(toy, data_dir, feature_set, width, monkeypatch):
    df = toy.iloc[:4]
    X = bl.baseline_features(df, feature_set, n_jobs=1)
    assert X.shape == (4, width) and X.dtype == np.float32 and np.isfinite(X).all()
    assert len(list((data_dir / "processed").glob(f"toy-baseline-{feature_set}-*.npz"))) == 1
    manifest = json.loads(next((data_dir / "processed").glob(f"toy-baseline-{feature_set}-*.json")).read_text())
    assert manifest["config"]["feature_set"] == feature_set
    if feature_set != "logmel_stats":
        import opensmile

        assert manifest["config"]["opensmile"] == opensmile.__version__
    # second call: read from the cache, no file is processed
    monkeypatch.setattr(bl, "_baseline_file", lambda *a: pytest.fail("recomputed instead of reading the cache"))
    np.testing.assert_array_equal(bl.baseline_features(df, feature_set, n_jobs=1), X)
    # rows in another order come back in that order
    np.testing.assert_array_equal(bl.baseline_features(df.iloc[::-1], feature_set, n_jobs=1), X[::-1])


def test_logmel_stats_are_the_spectrogram_statistics_of_the_whole_utterance(toy):
    from sercore.audio import load_audio
    from sercore.features import FeatureConfig, compute

    y = load_audio(toy["path"][0], sr=16000)
    x = bl.logmel_stats(y)
    S = compute(y, FeatureConfig(n_mels=40, n_fft=512, hop_length=160, duration=y.size / 16000))[:, :, 0]
    assert S.shape[1] == 1 + y.size // 160          # every frame, none padded beyond the utterance
    np.testing.assert_allclose(x, np.concatenate([S.mean(1), S.std(1)]), rtol=1e-5)
    # a tone's level counts (fixed dB reference): half the amplitude is ~6 dB lower in the means
    np.testing.assert_allclose(bl.logmel_stats(0.5 * y)[:40] - x[:40], -6.02, atol=0.05)


def test_changed_file_invalidates_the_cache(toy, wav_writer):
    df = toy.iloc[:3]
    X = bl.baseline_features(df, "egemaps", n_jobs=1)
    path = df["path"].iloc[1]
    wav_writer(pd.io.common.Path(path), seconds=0.6, freq=1500.0, seed=99)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    X2 = bl.baseline_features(df, "egemaps", n_jobs=1)
    np.testing.assert_array_equal(X2[[0, 2]], X[[0, 2]])
    assert not np.allclose(X2[1], X[1])


def test_corrupt_wav_raises_naming_the_file(toy, tmp_path):
    bad = tmp_path / "wav" / "s0_anger_0.wav"
    bad.write_bytes(b"RIFF\x00\x00not a wav at all")
    with pytest.raises(AudioError, match="s0_anger_0.wav") as err:
        bl.baseline_features(toy, "egemaps", n_jobs=1)
    assert err.value.path == str(bad)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="egemaps_svm"):
        bl.baseline_spec("mfcc_svm")
    with pytest.raises(ConfigError, match="compare"):
        bl.feature_spec("gemaps")
    assert bl.baseline_name("logmel_stats", "lr") == "logmel_lr"
    assert bl.baseline_spec("compare_lr")[:2] == ("compare", "lr")
    assert set(bl.BASELINES) == {"egemaps_svm", "egemaps_lr", "compare_svm", "logmel_lr"}


def test_c_selection_never_reads_the_test_rows(toy):
    X = bl.baseline_features(toy, "logmel_stats", n_jobs=1)
    y = toy["emotion"].map({e: i for i, e in enumerate(sorted(EMOTIONS))}).to_numpy()
    split = make_splits(toy, "speaker_kfold", k=3, seed=0)[0]
    clean = bl.select_c(X, y, split.train, split.val, "svm")
    poisoned = X.copy()
    poisoned[split.test] = np.nan
    dirty = bl.select_c(poisoned, y, split.train, split.val, "svm")
    assert dirty["C"] == clean["C"] and dirty["val_uar"] == clean["val_uar"]
    assert dirty["search"] == clean["search"] and len(clean["search"]) == len(bl.C_GRID)
    assert clean["val_uar"] == max(s["val_uar"] for s in clean["search"])


def test_scaler_is_fitted_on_training_rows_only(toy, tmp_path, monkeypatch):
    """Column 0 of the features is the row number, so every fit reveals which rows it saw."""
    from sklearn.preprocessing import StandardScaler

    real = bl.baseline_features(toy, "logmel_stats", n_jobs=1)
    monkeypatch.setattr(bl, "baseline_features", lambda df, fs, **kw: np.column_stack(
        [np.arange(len(df), dtype=np.float32), real]))
    seen = []
    orig_fit = StandardScaler.fit

    def spy(self, X, y=None, **kw):
        seen.append(set(np.asarray(X)[:, 0].astype(int)))
        return orig_fit(self, X, y, **kw)

    monkeypatch.setattr(StandardScaler, "fit", spy)
    st = _run(toy, tmp_path / "res", name="logmel_svm")
    splits = make_splits(toy, "speaker_kfold", k=3, seed=0)
    per_fold = len(bl.C_GRID) + 1
    assert len(seen) == 3 * per_fold
    for fold, split in enumerate(splits):
        fits = seen[fold * per_fold:(fold + 1) * per_fold]
        assert all(f == set(split.train) for f in fits[:-1])            # C search: training rows
        assert fits[-1] == set(split.train) | set(split.val)           # refit: training + validation
        assert not any(f & set(split.test) for f in fits)
    assert len(st.results) == 3


def test_rows_join_the_study_with_the_networks_schema_and_folds(toy, tmp_path, capsys):
    root = tmp_path / "res"
    st = _run(toy, root)
    assert list(st.results.columns) == study_mod.RESULT_COLUMNS
    r = st.results.sort_values("fold")
    assert (r["model"] == "logmel_lr").all() and (r["seed"] == 0).all() and (r["epochs"] == 0).all()
    assert (r["protocol_label"] == "speaker-independent").all() and (r["profile"] == "smoke").all()
    assert r["uar"].between(0, 1).all() and r["val_uar"].notna().all()
    # the same test/validation speakers as a network's run_study on this corpus and profile
    splits = make_splits(toy, "speaker_kfold", k=3, seed=0)
    assert r["test_speakers"].tolist() == [",".join(s.test_speakers) for s in splits]
    assert r["val_speakers"].tolist() == [",".join(s.val_speakers) for s in splits]
    # every utterance tested once; probabilities sum to 1; predictions match the labels
    assert sorted(st.predictions["utt_id"]) == sorted(toy["utt_id"])
    probs = st.predictions[[f"p_{e}" for e in st.labels]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert (probs.argmax(1) == st.predictions["pred"]).all()
    for _, row in r.iterrows():
        rdir = st.dir / "runs" / row["run_id"]
        res = json.loads((rdir / "result.json").read_text())
        assert res["history"] == [] and res["chosen_C"] in bl.C_GRID and res["feature_set"] == "logmel_stats"
        assert res["val_uar"] == max(c["val_uar"] for c in res["c_search"])
        assert np.asarray(res["confusion"]).sum() == row["n_test"]
        assert (rdir / "config.json").exists() and (rdir / "predictions.parquet").exists()
    # load_study / summaries pick the rows up; a second call skips the finished folds
    loaded = study_mod.load_study(st.dir)
    assert "logmel_lr" in set(loaded.summary(n_boot=50)["model"])
    capsys.readouterr()
    again = _run(toy, root)
    assert "finished earlier, skipped" in capsys.readouterr().err
    pd.testing.assert_frame_equal(again.results, st.results)


def test_speaker_norm_is_its_own_labelled_protocol(toy, tmp_path):
    st = _run(toy, tmp_path / "res", speaker_norm=True)
    assert set(st.results["protocol"]) == {"speaker_kfold+speaker-norm"}
    assert set(st.results["protocol_label"]) == {"speaker-independent, per-speaker normalisation"}
    st2 = _run(toy, tmp_path / "res")                           # the plain protocol beside it
    assert set(st2.results["protocol"]) == {"speaker_kfold", "speaker_kfold+speaker-norm"}
    assert protocol_label("random+speaker-norm") == "speaker-dependent, per-speaker normalisation"
    assert protocol_label("random+leaky-augmentation") == "speaker-dependent"
    X = np.random.default_rng(0).normal(3, 2, size=(6, 4))
    Z = bl.speaker_normalize(X, ["a", "a", "a", "b", "b", "b"])
    np.testing.assert_allclose(Z[:3].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(Z[3:].std(0), 1, atol=1e-5)


def test_cli_prints_folds_and_mean(toy, tmp_path, monkeypatch, capsys):
    from sercore.cli import main

    monkeypatch.setattr("sercore.corpora.load_corpus", lambda corpus, root=None: toy)
    assert main(["baseline", "toy", "--features", "logmel_stats", "--classifier", "lr", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "logmel_lr:" in out and "fold 0:" in out and "fold 1:" in out and "mean UAR" in out
    mean = float(out.split("mean UAR ")[1].split()[0])
    assert 0.0 <= mean <= 1.0


@pytest.mark.emodb
def test_egemaps_baselines_beat_chance_on_real_emodb(emodb_dir, data_dir, tmp_path, monkeypatch):
    """60 EmoDB utterances (6 per speaker), eGeMAPS + SVM and LR on 3 speaker folds: above chance."""
    from sercore.corpora import load_corpus

    monkeypatch.setenv("SERCORE_QUIET", "1")
    df = load_corpus("emodb", root=emodb_dir)
    df = df.groupby("speaker").sample(6, random_state=0).reset_index(drop=True)
    chance = 1 / df["emotion"].nunique()
    for name in ("egemaps_svm", "egemaps_lr"):
        st = bl.run_baseline("emodb", name, "speaker_kfold", "smoke", df=df, k=3, folds=3,
                             results_root=tmp_path / "res", n_jobs=1)
        r = st.results[st.results["model"] == name]
        assert len(r) == 3 and r["uar"].mean() > chance + 0.05, (name, r["uar"].tolist())


def test_baseline_grid_returns_report_tables(toy, tmp_path):
    res, pred = bl.run_baseline_grid("toy", ["logmel_lr"], ["speaker_kfold", "random"], "smoke", df=toy,
                                     results_root=tmp_path / "res")
    assert set(res["protocol"]) == {"speaker_kfold", "random"} and set(res["variant"]) == {"logmel_lr"}
    assert (res["seed"] == 0).all() and res["study_dir"].nunique() == 1
    assert len(pred) == res["n_test"].sum() and set(pred["run_id"]) == set(res["run_id"])
