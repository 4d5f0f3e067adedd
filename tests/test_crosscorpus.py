"""Cross-corpus evaluation: shared emotions only, nothing of the target in training or selection,
two rows per trained network (its own test fold and the whole target corpus)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sercore import crosscorpus
from sercore.errors import ConfigError
from sercore.protocols import protocol_label
from test_recipe import seg_profile  # noqa: F401 (fixture: smoke with segments)
from test_study import toy, write_toy_corpus  # noqa: F401 (fixture: a 6-speaker tone corpus, tiny model)


def target_corpus(folder, wav_writer) -> pd.DataFrame:
    """A second toy corpus: other speakers, one emotion the source lacks (calm), longer files."""
    df = write_toy_corpus(folder, wav_writer, takes=1, seconds=0.8)
    df = df.assign(corpus="toy2", speaker="t" + df["speaker"], utt_id="t" + df["utt_id"])
    extra = df[df["emotion"] == "neutral"].assign(emotion="calm", utt_id=lambda d: d["utt_id"] + "c")
    return pd.concat([df, extra], ignore_index=True).sort_values("path", ignore_index=True)


def test_shared_emotions_and_what_is_left_out():
    a = pd.DataFrame({"emotion": ["anger", "boredom", "neutral", "sadness"]})
    b = pd.DataFrame({"emotion": ["anger", "calm", "neutral", "sadness", "surprise"]})
    assert crosscorpus.shared_emotions(a, b) == ["anger", "neutral", "sadness"]
    assert crosscorpus.left_out(b, ["anger", "neutral", "sadness"]) == {"calm": 1, "surprise": 1}
    assert crosscorpus.shared_emotions(a, b, ["sadness", "anger"]) == ["anger", "sadness"]
    with pytest.raises(ConfigError, match="boredom"):
        crosscorpus.shared_emotions(a, b, ["boredom", "anger"])
    with pytest.raises(ConfigError, match="at least two"):
        crosscorpus.shared_emotions(pd.DataFrame({"emotion": ["anger"]}), b)
    assert crosscorpus.target_of("speaker_kfold+speaker-norm+to-ravdess") == "ravdess"
    assert protocol_label("speaker_kfold+to-ravdess") == "speaker-independent, tested on ravdess"
    assert protocol_label("speaker_kfold+speaker-norm+to-emodb") == (
        "speaker-independent, per-speaker normalisation, tested on emodb")


@pytest.mark.parametrize("speaker_norm", [False, True])
def test_cross_study_scores_each_network_on_the_whole_target(toy, tmp_path, wav_writer, seg_profile, monkeypatch,
                                                             speaker_norm):
    from sercore import study as study_mod

    target = target_corpus(tmp_path / "wav2", wav_writer)
    import sercore.training as training

    seen, original = [], training.fit

    def spy(net, train, val, *a, **kw):     # what the network is trained and selected on
        seen.append((len(train[0]), len(val[0])))
        return original(net, train, val, *a, **kw)

    monkeypatch.setattr(training, "fit", spy)
    st = study_mod.run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "res",
                             folds=[0, 1], k=3, progress=False, cross="toy2", cross_df=target,
                             speaker_norm=speaker_norm)
    base = "speaker_kfold" + ("+speaker-norm" if speaker_norm else "")
    res = st.results.set_index("protocol")
    assert sorted(set(st.results["protocol"])) == sorted({base, base + "+to-toy2"})
    assert (st.results.groupby("protocol").size() == 2).all()            # 2 folds, each on both corpora
    cross_rows = st.results[st.results["protocol"] == base + "+to-toy2"]
    assert (cross_rows["n_test"] == len(target[target["emotion"] != "calm"])).all()
    # training and validation rows are source rows only: 6 speakers x 3 emotions x 2 takes split 3 ways
    assert all(n_train + n_val <= len(toy) for n_train, n_val in seen)
    xp = st.predictions[st.predictions["protocol"] == base + "+to-toy2"]
    assert set(xp["corpus"]) == {"toy2"} and set(xp["speaker"]) <= set(target["speaker"])
    assert "calm" not in set(xp["true_label"]) and not xp.isna().any().any()
    # each cross row is the same network as a within row: same fold, seed, epochs and validation score
    within = st.results[st.results["protocol"] == base].set_index(["fold", "seed"])
    for _, row in cross_rows.iterrows():
        twin = within.loc[(row["fold"], row["seed"])]
        assert row["best_epoch"] == twin["best_epoch"] and row["val_uar"] == twin["val_uar"]
    run_dir = st.dir / "runs" / cross_rows["run_id"].iloc[0]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["cross"]["corpus"] == "toy2" and config["cross"]["emotions"] == ["anger", "neutral", "sadness"]
    assert config["test_corpus"] == "toy2"
    assert len(res) == 4 and np.isfinite(st.results["uar"]).all()
    # a rerun trains nothing
    seen.clear()
    again = study_mod.run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "res",
                                folds=[0, 1], k=3, progress=False, cross="toy2", cross_df=target,
                                speaker_norm=speaker_norm)
    assert not seen and len(again.results) == 4


def test_cross_options_are_checked(toy, tmp_path, seg_profile):
    from sercore.study import run_study

    with pytest.raises(ConfigError, match="cross"):
        run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "r", folds=[0],
                  k=3, emotions=["anger", "neutral"])
    with pytest.raises(ConfigError, match="leak"):
        run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "r", folds=[0],
                  k=3, cross="toy", cross_df=toy, augment_before_split=True)


def test_cross_bootstrap_resamples_target_speakers_once_across_folds():
    from sercore.metrics import hierarchical_bootstrap

    rng = np.random.default_rng(0)
    rows = []
    for fold in range(5):                      # 5 networks, each scoring the same 4 target speakers
        for spk in "abcd":
            for i in range(10):
                t = int(rng.integers(0, 3))
                rows.append({"fold": fold, "seed": 0, "speaker": spk, "utt_id": f"{spk}{i}", "true": t,
                             "pred": t if rng.random() < 0.6 else int(rng.integers(0, 3))})
    p = pd.DataFrame(rows)
    cross = hierarchical_bootstrap(p, protocol="speaker_kfold+to-x", n_boot=300)
    within = hierarchical_bootstrap(p, protocol="speaker_kfold", n_boot=300)
    assert cross["n_units"] == 4 and cross["n_seeds"] == 5 and "target corpus" in cross["method"]
    assert within["n_units"] == 20                              # (fold, speaker): wrong for cross rows
    assert cross["uar"] == pytest.approx(within["uar"])        # same point estimate, other interval
    assert cross["uar_high"] - cross["uar_low"] > within["uar_high"] - within["uar_low"]


def test_cross_grid_and_table(toy, tmp_path, wav_writer, seg_profile):
    target = target_corpus(tmp_path / "wav2", wav_writer)
    res, pred = crosscorpus.run_cross_grid("toy", "toy2", ["tiny"], seg_profile.replace(k=3, folds=2),
                                           seeds=[0], speaker_norm=(False, True), source_df=toy,
                                           target_df=target, results_root=tmp_path / "res", progress=False)
    assert set(res["tested_on"]) == {"within", "cross"} and set(res["normalisation"]) == {"training rows",
                                                                                         "per speaker"}
    assert len(res) == 2 * 2 * 2 and set(pred["run_id"]) == set(res["run_id"])
    table = crosscorpus.cross_table(res, pred, n_boot=200)
    assert len(table) == 2 and set(table["direction"]) == {"toy -> toy2"}
    for _, r in table.iterrows():
        assert r["within_low"] <= r["within"] <= r["within_high"]
        assert r["cross_low"] <= r["cross"] <= r["cross_high"]
        assert r["drop"] == pytest.approx(r["cross"] - r["within"])
        assert r["drop_low"] <= r["drop_high"] and r["n_target_speakers"] == 6


def test_cross_baseline_scores_the_fitted_classifier_on_the_target(toy, tmp_path, wav_writer):
    from sercore import baselines as bl

    target = target_corpus(tmp_path / "wav2", wav_writer)
    st = bl.run_baseline("toy", "logmel_lr", "speaker_kfold", "smoke", df=toy, results_root=tmp_path / "res", k=3,
                         folds=2, n_jobs=1, cross="toy2", cross_df=target)
    res = st.results.set_index("protocol")
    assert sorted(set(st.results["protocol"])) == ["speaker_kfold", "speaker_kfold+to-toy2"]
    cross_rows = st.results[st.results["protocol"] == "speaker_kfold+to-toy2"]
    assert len(cross_rows) == 2 and (cross_rows["n_test"] == len(target[target["emotion"] != "calm"])).all()
    xp = st.predictions[st.predictions["protocol"] == "speaker_kfold+to-toy2"]
    assert set(xp["corpus"]) == {"toy2"} and "calm" not in set(xp["true_label"]) and not xp.isna().any().any()
    for _, row in cross_rows.iterrows():     # confusion and UAR describe the same predictions
        p = xp[xp["run_id"] == row["run_id"]]
        cm = np.asarray(json.loads((st.dir / "runs" / row["run_id"] / "result.json").read_text())["confusion"])
        assert cm.sum() == len(p) and np.trace(cm) == (p["true"] == p["pred"]).sum()
    assert len(res) == 4
