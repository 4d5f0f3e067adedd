"""What the notebooks compute (sercore.analysis) and the verdicts on the documents' claims (sercore.claims)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sercore import analysis, claims


def test_frames_lost_and_crop_table():
    import numpy as np
    import pandas as pd

    lost = analysis.frames_lost([1.0, 4.0, 8.0], 4.0, sr=16000, hop_length=256)
    assert lost[0] == 0 and lost[1] == 0
    assert lost[2] == pytest.approx((501 - 251) / 501)           # 1 + 8*16000//256 = 501 frames, 251 kept
    table = analysis.crop_table(pd.DataFrame({"duration": [1.0, 4.0, 8.0]}), [4.0], sr=16000, hop_length=256)
    row = table.iloc[0]
    assert row["utterances cropped (%)"] == pytest.approx(100 / 3)
    assert row["frames lost (%)"] == pytest.approx(100 * 250 / (63 + 251 + 501))
    assert row["padded (%)"] == pytest.approx(100 / 3)
    assert np.isfinite(table.to_numpy(float)).all()


def test_paired_difference_with_and_without_predictions():
    import numpy as np
    import pandas as pd

    from sercore import metrics

    rng = np.random.default_rng(0)
    rows = []
    for f in range(4):
        y = rng.integers(0, 3, 30)
        for variant, acc in (("a", 0.4), ("b", 0.8)):
            p = np.where(rng.random(30) < acc, y, (y + 1) % 3)
            rows.append(pd.DataFrame({"variant": variant, "protocol": "speaker_kfold", "fold": f, "seed": 0,
                                      "speaker": f"s{f}", "utt_id": [f"u{f}_{i}" for i in range(30)],
                                      "true": y, "pred": p, "run_id": f"{variant}{f}"}))
    preds = pd.concat(rows, ignore_index=True)
    res = (preds.groupby(["variant", "protocol", "fold", "seed", "run_id"])
           .apply(lambda g: pd.Series(metrics.scores(g["true"], g["pred"], 3))).reset_index())
    d = analysis.paired_difference(res, "a", "b", predictions=preds)
    ref = metrics.paired_bootstrap(preds[preds["variant"] == "a"], preds[preds["variant"] == "b"])
    assert d == ref and d["n"] == 4 and d["wins"] == 4 and d["low"] > 0
    assert claims.direction_verdict(d, claim="higher", converged=True) == "reproduced"
    old = analysis.paired_difference(res, "a", "b")            # no predictions: t-interval, labelled
    assert old["method"].startswith("t-interval") and old["n"] == 4
    assert old["mean"] == pytest.approx((res[res.variant == "b"]["uar"].to_numpy()
                                         - res[res.variant == "a"]["uar"].to_numpy()).mean())
    assert analysis.paired_difference(res, "a", "missing")["n"] == 0
    with pytest.raises(Exception, match="protocols"):
        analysis.paired_difference(pd.concat([res, res.assign(protocol="random")]), "a", "b")


def test_default_models_follow_the_profile():
    from sercore.models import list_models, model_info
    from sercore.profiles import get_profile

    classifiers = {m for m in list_models() if model_info(m)["task"] == "classify"} - {"ae_fusion"}
    assert set(analysis.default_models("full")) == classifiers
    quick = analysis.default_models("quick")
    assert set(quick) == set(get_profile("quick").models) and set(quick) < classifiers
    assert {"zhao1d", "zhao1d_bilstm", "dcnn_blstm_attn"}.isdisjoint(quick)
    assert analysis.default_models("smoke") == list(get_profile("smoke").models) == ["zhao2d", "attn_blstm"]
    assert set(analysis.classifiers()) == classifiers


# ------------------------------------------------------------ what ran, from the runs' own records
def _fake_run(root, model, fold, *, epochs, best, early, val_uar, profile="quick", uar=0.5):
    """A finished run folder as sercore.study writes it (config.json + result.json with history)."""
    from sercore.features import FeatureConfig
    from sercore.profiles import get_profile
    from sercore.training import TrainConfig

    prof = get_profile(profile)
    d = root / "runs" / f"{model}-speaker_kfold-f{fold}-s0-abc"
    d.mkdir(parents=True)
    cfg = {"model": model, "protocol": "speaker_kfold", "fold": fold, "seed": 0, "profile": profile,
           "features": FeatureConfig(**{"kind": "logmel", **prof.features}).to_dict(),
           "train": TrainConfig.from_dict(prof.train).to_dict(), "model_kwargs": prof.model_kwargs.get(model, {}),
           "augment": None, "leaky": False}
    hist = [{"epoch": e + 1, "val_uar": v, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.5}
            for e, v in enumerate(val_uar)]
    res = {"model": model, "protocol": "speaker_kfold", "fold": fold, "seed": 0, "epochs": epochs,
           "best_epoch": best, "stopped_early": early, "uar": uar, "history": hist, "run_id": d.name}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "result.json").write_text(json.dumps(res))
    return d


@pytest.fixture
def quick_like_study(tmp_path):
    root = tmp_path / "study"
    for f in range(3):
        _fake_run(root, "td_cnn_lstm", f, epochs=8, best=8, early=False, uar=0.4 + 0.05 * f,
                  val_uar=[0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6])
        _fake_run(root, "baseline_cnn", f, epochs=6, best=3, early=True, uar=0.3 + 0.05 * f,
                  val_uar=[0.2, 0.4, 0.5, 0.45, 0.44, 0.43])
    return root


def test_run_configuration_table_describes_what_ran_not_defaults(quick_like_study):
    t = analysis.run_configuration_table(quick_like_study, ["td_cnn_lstm", "baseline_cnn"])
    assert list(t.index) == ["td_cnn_lstm", "baseline_cnn"]
    td, cnn = t.loc["td_cnn_lstm"], t.loc["baseline_cnn"]
    assert td["windowing"].startswith("11 frames") and "step 5" in td["windowing"]   # quick, not 32/16
    assert "32 frames" not in " ".join(map(str, td.values))
    assert "block_dropouts (0, 0, 0, 0)" in cnn["settings that differ from the model's defaults"]
    assert "default (0.3, 0.3, 0.4, 0.4)" in cnn["settings that differ from the model's defaults"]
    assert "40 x 63" in td["input"] and "hop 768" in td["input"]
    assert cnn["epochs run (min/median/max)"] == "6 / 6 / 6" and cnn["best epoch (median)"] == "3"
    assert td["epoch cap"] == "8" and td["batch size"] == "16" and "constant" in td["learning rate"]
    assert td["augmentation"] == "none" and td["runs"] == 3


def test_convergence_table_and_statement(quick_like_study):
    c = analysis.convergence_table(quick_like_study)
    assert c.loc["td_cnn_lstm", "hit the epoch cap"] == 3 and c.loc["td_cnn_lstm", "still rising at the end"] == 3
    assert c.loc["baseline_cnn", "stopped early"] == 3 and c.loc["baseline_cnn", "share not converged"] == 0
    results = pd.DataFrame([{"variant": m, "protocol": "speaker_kfold", "run_id": d.name, "study_dir":
                             str(quick_like_study), "uar": json.loads((d / "result.json").read_text())["uar"]}
                            for d in sorted((quick_like_study / "runs").iterdir()) for m in [d.name.split("-")[0]]])
    text = analysis.convergence_statement(results, "quick")
    assert "3 of 6 runs stopped early" in text and "3 hit the 8-epoch cap" in text
    assert "still rising" in text and "not converged" in text
    margin = analysis.undecidable_margin(results)
    assert f"{100 * margin:.1f} points" in text and margin > 0


def test_convergence_statement_reads_the_profiles_converged_flag(quick_like_study):
    from sercore.profiles import get_profile

    flagged = type("P", (), {"name": "standard", "converged": True})()
    assert "meant to train until early stopping" in analysis.convergence_statement(quick_like_study, flagged)
    assert "not meant to converge" in analysis.convergence_statement(quick_like_study, get_profile("quick"))


def test_configuration_and_convergence_of_a_real_smoke_study(tmp_path, data_dir, wav_writer, monkeypatch):
    """On the records a real (tiny-model) smoke study writes."""
    import sys

    from test_study import run, tiny_registry, write_toy_corpus

    monkeypatch.setitem(sys.modules, "sercore.models", tiny_registry())
    monkeypatch.setenv("SERCORE_QUIET", "1")
    df = write_toy_corpus(tmp_path / "wav", wav_writer)
    st = run(df, tmp_path / "res", folds=2, train={"epochs": 3, "learning_rate": 3e-2, "patience": 1,
                                                    "batch_size": 4})
    t = analysis.run_configuration_table(st)
    assert t.loc["tiny", "runs"] == 2 and t.loc["tiny", "batch size"] == "4" and t.loc["tiny", "epoch cap"] == "3"
    assert "32 x" in t.loc["tiny", "input"]                         # smoke's 32 mels
    c = analysis.convergence_table(st)
    assert c.loc["tiny", "runs"] == 2
    assert c.loc["tiny", "stopped early"] + c.loc["tiny", "hit the epoch cap"] == 2


def test_listener_correlation_is_per_model_never_pooled():
    rng = np.random.default_rng(0)
    rec = rng.uniform(80, 100, 60)
    rows = []
    for model, sign in (("a", 1), ("b", -1)):
        for seed in range(2):
            ok = (sign * (rec - 90) + rng.normal(0, 2, 60)) > 0
            rows += [{"variant": model, "utt_id": f"u{i}", "recognition": rec[i], "correct": int(ok[i]),
                      "seed": seed} for i in range(60)]
    t = analysis.listener_correlation(pd.DataFrame(rows))
    assert list(t.index) == ["a", "b"] and (t["utterances"] == 60).all()    # one value per utterance and model
    assert t.loc["a", "spearman rho"] > 0.3 and t.loc["b", "spearman rho"] < -0.3
    assert t["recognition min (%)"].min() >= 80


def test_notebook_profile_keeps_the_first_seeds_and_rejects_bad_counts():
    from sercore.errors import ConfigError

    one = analysis.notebook_profile("standard", 1)
    assert one.seeds == (0,) and one.seeds_for("random") == (0,) and one.side == (0,)
    assert one.name == "standard" and one.train == analysis.notebook_profile("standard").train
    assert analysis.notebook_profile("standard", 2).seeds == (0, 1)
    assert analysis.notebook_profile("standard").seeds == (0, 1, 2)
    assert analysis.profile_label(one) == "standard (1 of 3 seeds)"
    assert analysis.profile_label("standard") == "standard"
    for bad in (0, 4, 1.5, "1", True):
        with pytest.raises(ConfigError, match="n_seeds"):
            analysis.notebook_profile("standard", bad)


def test_run_grid_with_fewer_seeds_trains_the_same_runs_a_full_grid_starts_with(tmp_path, data_dir, wav_writer,
                                                                                monkeypatch):
    """A notebook's n_seeds=1 trains seed 0 only, under the profile's own study name, so a later call with
    all the seeds reuses it (same run id) and trains only the others."""
    import sys

    from sercore.profiles import get_profile
    from test_study import tiny_registry, write_toy_corpus

    monkeypatch.setitem(sys.modules, "sercore.models", tiny_registry())
    monkeypatch.setenv("SERCORE_QUIET", "1")
    df = write_toy_corpus(tmp_path / "wav", wav_writer)
    two = get_profile("smoke", seeds=(0, 1), folds=1, train={"epochs": 1, "patience": 0})
    kw = dict(results_root=tmp_path / "res", df=df, k=3)
    r1, _ = analysis.run_grid("toy", ["tiny"], ["speaker_kfold"], analysis.notebook_profile(two, 1), **kw)
    assert r1["seed"].tolist() == [0] and r1["study_dir"].str.endswith("smoke").all()
    r2, _ = analysis.run_grid("toy", ["tiny"], ["speaker_kfold"], two, **kw)
    assert r2["seed"].tolist() == [0, 1]
    assert r2.loc[r2["seed"] == 0, "run_id"].item() == r1["run_id"].item()
    assert r2.loc[r2["seed"] == 0, "finished_at"].item() == r1["finished_at"].item()   # reused, not retrained
