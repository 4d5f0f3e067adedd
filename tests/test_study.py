"""Studies: tidy results, resumability, and the leak guards (normaliser, augmentation, test fold)."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from sercore import study as study_mod
from sercore.protocols import make_splits

EMOTIONS = {"anger": 880.0, "neutral": 220.0, "sadness": 440.0}


def tiny_registry():
    """A stand-in for sercore.models with one tiny, fast model (TinyNet from test_training)."""
    from test_training import TinyNet

    mod = types.ModuleType("sercore.models")
    mod.create = lambda name, *, num_classes=7, input_shape=None, seed=0, **kw: TinyNet(tuple(input_shape),
                                                                                           num_classes, seed)
    mod.model_info = lambda name: {"features": {"kind": "logmel"}, "task": "classify"}
    return mod


def write_toy_corpus(folder, wav_writer, takes: int = 2, seconds: float = 0.5) -> pd.DataFrame:
    """6 speakers (3 f, 3 m) x 3 emotions x ``takes`` takes of ``seconds`` s tones; the emotion sets the pitch."""
    rows = []
    for s in range(6):
        for e, freq in EMOTIONS.items():
            for t in range(takes):
                path = wav_writer(folder / f"s{s}_{e}_{t}.wav", seconds=seconds, freq=freq * (1 + 0.03 * s),
                                  seed=s * 10 + t)
                rows.append({"utt_id": f"s{s}{e[:3]}{t}", "path": str(path), "corpus": "toy", "speaker": f"s{s}",
                             "gender": "female" if s < 3 else "male", "emotion": e})
    return pd.DataFrame(rows).sort_values("path", ignore_index=True)


@pytest.fixture
def toy(tmp_path, data_dir, wav_writer, monkeypatch):
    monkeypatch.setitem(sys.modules, "sercore.models", tiny_registry())
    monkeypatch.setenv("SERCORE_QUIET", "1")
    return write_toy_corpus(tmp_path / "wav", wav_writer)


def run(df, root, **kw):
    args = dict(corpus="toy", model="tiny", protocol="speaker_kfold", profile="smoke", df=df, results_root=root,
                k=3, train={"epochs": 3, "learning_rate": 3e-2, "patience": 0})
    args.update(kw)
    return study_mod.run_study(**args)


def strip_times(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_results_table_predictions_and_skip_on_rerun(toy, tmp_path, capsys):
    st = run(toy, tmp_path / "res", folds=3)
    assert list(st.results.columns) == study_mod.RESULT_COLUMNS
    assert len(st.results) == 3 and set(st.results["fold"]) == {0, 1, 2}
    assert (st.results["protocol_label"] == "speaker-independent").all()
    assert st.results["feature_key"].nunique() == 1 and st.results["sercore_version"].notna().all()
    # every utterance tested exactly once over the k folds, by a run that did not train on its speaker
    assert sorted(st.predictions["utt_id"]) == sorted(toy["utt_id"])
    for _, r in st.results.iterrows():
        assert set(st.predictions.loc[st.predictions["run_id"] == r["run_id"], "speaker"]) == set(
            r["test_speakers"].split(","))
    probs = st.predictions[[f"p_{e}" for e in st.labels]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    sdir = st.dir
    assert (sdir / "results.parquet").exists() and (sdir / "results.csv").exists()
    run_dir = sdir / "runs" / st.results["run_id"][0]
    for name in ("config.json", "result.json", "predictions.parquet", "model/model.json"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "checkpoint.npz").exists()   # only kept while a run is unfinished
    assert pd.read_csv(sdir / "results.csv")["uar"].tolist() == pytest.approx(st.results["uar"].tolist())
    capsys.readouterr()
    again = run(toy, tmp_path / "res", folds=3)
    assert capsys.readouterr().err.count("skipped") == 3
    pd.testing.assert_frame_equal(again.results, st.results)
    summary = st.summary(n_boot=50)
    assert summary.loc[0, "n_runs"] == 3 and 0 <= summary.loc[0, "uar_low"] <= summary.loc[0, "uar"]
    assert st.confusion().to_numpy().sum() == len(toy)


def test_normaliser_and_augmentation_see_training_rows_only(toy, tmp_path, monkeypatch):
    import sercore.features as feats

    seen = {"norm": [], "aug": []}
    real_fit, real_aug = feats.fit_normalizer, feats.extract_augmented

    def spy_fit(X, train_idx, **kw):
        seen["norm"].append(np.asarray(train_idx))
        return real_fit(X, train_idx, **kw)

    def spy_aug(df, cfg=None, **kw):
        seen["aug"].append(df.copy())
        return real_aug(df, cfg, **kw)

    monkeypatch.setattr(feats, "fit_normalizer", spy_fit)
    monkeypatch.setattr(feats, "extract_augmented", spy_aug)
    st = run(toy, tmp_path / "res", folds=[0, 1], augment={"copies": 1, "snr_db": (10.0, 20.0)},
             train={"epochs": 1})
    splits = make_splits(toy, "speaker_kfold", k=3)
    assert len(seen["norm"]) == len(seen["aug"]) == 2
    for fold in (0, 1):
        np.testing.assert_array_equal(seen["norm"][fold], splits[fold].train)
        assert sorted(seen["aug"][fold]["utt_id"]) == sorted(toy.iloc[splits[fold].train]["utt_id"])
        assert not set(seen["aug"][fold]["speaker"]) & set(splits[fold].test_speakers + splits[fold].val_speakers)
    # n_train counts the originals plus one noisy copy of each
    assert st.results["n_train"].tolist() == [2 * splits[f].train.size for f in (0, 1)]


def test_resume_after_kill_equals_uninterrupted(toy, tmp_path):
    ref = run(toy, tmp_path / "a", folds=[0])

    def kill(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(toy, tmp_path / "b", folds=[0], on_epoch=kill)
    run_dir = next((tmp_path / "b").glob("toy/smoke/runs/*"))
    assert (run_dir / "checkpoint.npz").exists() and not (run_dir / "result.json").exists()
    resumed = run(toy, tmp_path / "b", folds=[0])
    res_a = json.loads((ref.dir / "runs" / ref.results["run_id"][0] / "result.json").read_text())
    res_b = json.loads((run_dir / "result.json").read_text())
    assert res_b["resumed"] and not res_a["resumed"]
    assert strip_times(res_a["history"]) == strip_times(res_b["history"])
    for key in ("uar", "wa", "macro_f1", "best_epoch", "confusion"):
        assert res_a[key] == res_b[key], key
    cols = [f"p_{e}" for e in ref.labels]
    np.testing.assert_array_equal(ref.predictions[cols].to_numpy(), resumed.predictions[cols].to_numpy())


def test_poisoned_test_fold_does_not_change_model_selection(toy, tmp_path, monkeypatch):
    import sercore.features as feats

    clean = run(toy, tmp_path / "clean", folds=[0])
    test_rows = make_splits(toy, "speaker_kfold", k=3)[0].test
    real_extract = feats.extract_features

    def poisoned(df, cfg=None, **kw):
        X = real_extract(df, cfg, **kw).copy()
        X[test_rows] = np.nan  # NaN features in every test utterance
        return X

    monkeypatch.setattr(feats, "extract_features", poisoned)
    bad = toy.copy()  # and shuffled labels among the test utterances
    bad.loc[test_rows, "emotion"] = np.random.default_rng(0).permutation(bad.loc[test_rows, "emotion"].to_numpy())
    dirty = run(bad, tmp_path / "dirty", folds=[0])
    h_clean, h_dirty = (json.loads((s.dir / "runs" / s.results["run_id"][0] / "result.json").read_text())
                        for s in (clean, dirty))
    assert strip_times(h_clean["history"]) == strip_times(h_dirty["history"])
    assert h_clean["best_epoch"] == h_dirty["best_epoch"] and h_clean["val_uar"] == h_dirty["val_uar"]


def test_leaky_augmentation_warns_and_is_labelled(toy, tmp_path):
    with pytest.warns(UserWarning, match="LEAK"):
        st = run(toy, tmp_path / "res", protocol="random", folds=[0], augment_before_split=True,
                 train={"epochs": 1})
    assert st.results["protocol"].tolist() == ["random+leaky-augmentation"]
    assert st.results["protocol_label"].tolist() == ["speaker-dependent"]
    # the pool held originals and noisy copies: both kinds were tested, 1/3 of 2 x 36 rows
    assert st.predictions["utt_id"].str.contains("~awgn").any()
    assert (~st.predictions["utt_id"].str.contains("~awgn")).any()
    assert st.results["n_test"].tolist() == [24]
