"""Metrics against scikit-learn; bootstrap CIs; summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from sercore import metrics


@pytest.mark.parametrize("seed,k,n", [(0, 7, 200), (1, 4, 37), (2, 3, 10)])
def test_scores_match_sklearn(seed, k, n):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    s = metrics.scores(y, p, k)
    assert s["wa"] == pytest.approx(skm.accuracy_score(y, p))
    assert s["uar"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, k), skm.confusion_matrix(y, p, labels=range(k)))
    np.testing.assert_allclose(np.nan_to_num(metrics.per_class_recall(metrics.confusion_matrix(y, p, k))),
                               skm.recall_score(y, p, average=None, labels=range(k), zero_division=0))


def test_uar_ignores_absent_classes_like_sklearn():
    y, p = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert metrics.scores(y, p, 3)["uar"] == pytest.approx(skm.balanced_accuracy_score(y, p))


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, 300))
    est, lo, hi = metrics.bootstrap_ci(y, p, metric="uar", n_boot=300, seed=1)
    assert lo < est < hi and hi - lo < 0.2
    assert metrics.bootstrap_ci(y, p, n_boot=300, seed=1) == (est, lo, hi)
    # stratified by group gives the same point estimate
    assert metrics.bootstrap_ci(y, p, n_boot=50, seed=1, groups=np.arange(300) % 3)[0] == est
    assert metrics.bootstrap_ci(y, y, n_boot=50)[1:] == (1.0, 1.0)


def _speaker_preds(rng, *, folds=3, speakers_per_fold=2, seeds=(0, 1), n=20, k=4, acc=0.6, model="m"):
    """Synthetic per-utterance predictions of a speaker-fold study (speaker s's utterances are fixed)."""
    rows = []
    for f in range(folds):
        for j in range(speakers_per_fold):
            spk = f"s{f * speakers_per_fold + j}"
            y = rng.integers(0, k, n)
            for seed in seeds:
                p = np.where(rng.random(n) < acc, y, rng.integers(0, k, n))
                rows.append(pd.DataFrame({"model": model, "protocol": "speaker_kfold", "fold": f, "seed": seed,
                                          "speaker": spk, "utt_id": [f"{spk}_{i}" for i in range(n)],
                                          "true": y, "pred": p, "run_id": f"{model}-{f}-{seed}"}))
    return pd.concat(rows, ignore_index=True)


def _brute_force(pred, n_boot, seed, k, speaker=True):
    """Slow reference: replay the documented draw order, gather the rows of each draw, score them."""
    key = "speaker" if speaker else "utt_id"
    units = pred[["fold", key]].drop_duplicates().sort_values(["fold", key]).to_numpy().tolist()
    rng = np.random.default_rng(seed)
    if speaker:
        strata = [list(range(len(units)))]
    else:
        cls = pred.drop_duplicates(["fold", key]).set_index(["fold", key])["true"]
        ucls = np.array([cls[tuple(u)] for u in units])
        strata = [list(np.flatnonzero(ucls == c)) for c in np.unique(ucls)]
    picks = [[] for _ in range(n_boot)]
    for members in strata:
        idx = rng.integers(0, len(members), (n_boot, len(members)))
        for b in range(n_boot):
            picks[b] += [members[i] for i in idx[b]]
    folds = sorted(pred["fold"].unique())
    seed_picks = {}
    for f in folds:
        fs = sorted(pred.loc[pred["fold"] == f, "seed"].unique())
        idx = rng.integers(0, len(fs), (n_boot, len(fs)))
        seed_picks[f] = [[fs[i] for i in idx[b]] for b in range(n_boot)]
    out = {"uar": [], "wa": []}
    for b in range(n_boot):
        parts = []
        for u in picks[b]:
            f, name = units[u]
            for s in seed_picks[f][b]:
                parts.append(pred[(pred["fold"] == f) & (pred[key] == name) & (pred["seed"] == s)])
        rows = pd.concat(parts)
        sc = metrics.scores(rows["true"], rows["pred"], k)
        out["uar"].append(sc["uar"])
        out["wa"].append(sc["wa"])
    return {m: np.array(v) for m, v in out.items()}


def test_speaker_bootstrap_matches_brute_force():
    pred = _speaker_preds(np.random.default_rng(0), k=4)
    fast = metrics.hierarchical_bootstrap(pred, n_boot=40, seed=7, num_classes=4, return_draws=True)
    slow = _brute_force(pred, 40, 7, 4)
    for m in ("uar", "wa"):
        np.testing.assert_allclose(fast["draws"][m], slow[m], rtol=0, atol=1e-12)
        lo, hi = np.quantile(slow[m], [0.025, 0.975])
        assert fast[f"{m}_low"] == pytest.approx(lo) and fast[f"{m}_high"] == pytest.approx(hi)
    # the estimate is every speaker and seed once: all predictions pooled
    assert fast["uar"] == pytest.approx(metrics.scores(pred["true"], pred["pred"], 4)["uar"])
    assert (fast["n_folds"], fast["n_seeds"], fast["n_units"], fast["unit"]) == (3, 2, 6, "speakers")
    assert "test speakers and seeds" in fast["method"]


def test_utterance_bootstrap_is_class_stratified_and_matches_brute_force():
    pred = _speaker_preds(np.random.default_rng(1), n=6, k=3).assign(protocol="random")
    fast = metrics.hierarchical_bootstrap(pred, n_boot=25, seed=2, num_classes=3, return_draws=True)
    slow = _brute_force(pred, 25, 2, 3, speaker=False)
    np.testing.assert_allclose(fast["draws"]["uar"], slow["uar"], atol=1e-12)
    assert fast["unit"] == "utterances" and "within classes" in fast["method"]


def _per_speaker(y_by_speaker, p_by_speaker, seed=0, fold=None):
    rows = []
    for i, (y, p) in enumerate(zip(y_by_speaker, p_by_speaker)):
        rows.append(pd.DataFrame({"fold": i if fold is None else fold, "seed": seed, "speaker": f"s{i}",
                                  "utt_id": [f"s{i}_{j}" for j in range(len(y))], "true": y, "pred": p}))
    return pd.concat(rows, ignore_index=True)


def test_speaker_bootstrap_is_wider_than_utterance_resampling_when_speakers_differ():
    rng = np.random.default_rng(3)
    ys = [np.tile(np.arange(4), 15) for _ in range(6)]
    ps = [ys[0]] + [rng.integers(0, 4, 60) for _ in range(5)]     # one speaker perfect, five at chance
    pred = _per_speaker(ys, ps).assign(protocol="loso")
    spk = metrics.hierarchical_bootstrap(pred, n_boot=2000, seed=0)
    _, lo, hi = metrics.bootstrap_ci(pred["true"], pred["pred"], n_boot=2000, seed=0)
    assert spk["uar_high"] - spk["uar_low"] > 1.5 * (hi - lo)
    # the same corpus as utterance resampling (protocol "random") is as narrow as bootstrap_ci
    utt = metrics.hierarchical_bootstrap(pred, protocol="random", n_boot=2000, seed=0)
    assert utt["uar_high"] - utt["uar_low"] == pytest.approx(hi - lo, rel=0.25)


def test_interval_collapses_when_every_speaker_is_the_same():
    rng = np.random.default_rng(4)
    y = np.tile(np.arange(3), 10)
    p = np.where(rng.random(30) < 0.5, y, (y + 1) % 3)
    pred = _per_speaker([y] * 5, [p] * 5).assign(protocol="speaker_kfold")
    out = metrics.hierarchical_bootstrap(pred, n_boot=500)
    assert out["uar_low"] == pytest.approx(out["uar"]) and out["uar_high"] == pytest.approx(out["uar"])
    assert out["uar"] == pytest.approx(metrics.scores(y, p, 3)["uar"])


def test_seed_variance_is_inside_the_interval():
    y = np.tile(np.arange(4), 10)
    good, half = y.copy(), np.where(np.arange(40) < 20, y, (y + 1) % 4)
    one_seed = _per_speaker([y] * 4, [good] * 4, fold=0)
    two_seeds = pd.concat([one_seed, _per_speaker([y] * 4, [half] * 4, seed=1, fold=0)], ignore_index=True)
    a = metrics.hierarchical_bootstrap(one_seed, protocol="speaker_kfold", n_boot=1000)
    b = metrics.hierarchical_bootstrap(two_seeds, protocol="speaker_kfold", n_boot=1000)
    assert a["uar_low"] == a["uar_high"] == 1.0
    # identical speakers: only seeds vary. Draws are {0,0}, {0,1}, {1,1} with probability 1/4, 1/2, 1/4,
    # so the 2.5 and 97.5 percentiles are the two seeds' own scores, and the estimate is their mean
    uar_half = metrics.scores(y, half, 4)["uar"]
    assert (b["uar_low"], b["uar_high"]) == (pytest.approx(uar_half), pytest.approx(1.0))
    assert b["uar"] == pytest.approx((1.0 + uar_half) / 2) and b["n_seeds"] == 2


def test_paired_bootstrap_of_a_model_with_itself_is_zero():
    pred = _speaker_preds(np.random.default_rng(5), seeds=(0, 1, 2))
    d = metrics.paired_bootstrap(pred, pred.copy(), n_boot=500)
    assert (d["mean"], d["low"], d["high"], d["half_width"]) == (0.0, 0.0, 0.0, 0.0)
    assert (d["n"], d["wins"], d["n_folds"], d["n_seeds"], d["n_units"]) == (9, 0, 3, 3, 6)


def test_paired_bootstrap_uses_the_same_draw_for_both_models():
    rng = np.random.default_rng(6)
    a = _speaker_preds(rng, acc=0.4, model="a")
    b = a.assign(model="b", pred=np.where(rng.random(len(a)) < 0.5, a["true"], a["pred"]))
    da = metrics.hierarchical_bootstrap(a, n_boot=300, seed=9, num_classes=4, return_draws=True)
    db = metrics.hierarchical_bootstrap(b, n_boot=300, seed=9, num_classes=4, return_draws=True)
    d = metrics.paired_bootstrap(a, b, n_boot=300, seed=9, num_classes=4, return_draws=True)
    np.testing.assert_allclose(d["draws"], db["draws"]["uar"] - da["draws"]["uar"], atol=1e-12)
    assert d["mean"] == pytest.approx(db["uar"] - da["uar"]) and d["low"] > 0
    # pairing removes the speaker spread both share: narrower than the two intervals side by side
    assert d["high"] - d["low"] < (db["uar_high"] - db["uar_low"]) + (da["uar_high"] - da["uar_low"])


def test_paired_bootstrap_reuses_a_deterministic_baseline_for_every_seed():
    rng = np.random.default_rng(7)
    nets = _speaker_preds(rng, seeds=(0, 1, 2), model="net")
    base = nets[nets["seed"] == 0].assign(model="svm", pred=nets.loc[nets["seed"] == 0, "true"])  # perfect
    d = metrics.paired_bootstrap(base, nets, n_boot=400)
    assert d["n"] == 9 and d["wins"] == 0 and d["n_seeds"] == 3 and d["high"] < 0
    # b - a against a perfect a: minus the error of b, so the draws are b's interval shifted by -1
    alone = metrics.hierarchical_bootstrap(nets, n_boot=400)
    assert d["mean"] == pytest.approx(alone["uar"] - 1.0)
    assert (d["low"], d["high"]) == (pytest.approx(alone["uar_low"] - 1), pytest.approx(alone["uar_high"] - 1))


def test_bootstrap_errors_are_clear():
    from sercore.errors import ConfigError

    pred = _speaker_preds(np.random.default_rng(8))
    with pytest.raises(ConfigError, match="mix protocols"):
        metrics.hierarchical_bootstrap(pd.concat([pred, pred.assign(protocol="random")]))
    with pytest.raises(ConfigError, match="speaker"):
        metrics.hierarchical_bootstrap(pred.drop(columns="speaker"))
    with pytest.raises(ConfigError, match="different folds"):
        metrics.paired_bootstrap(pred, pred[pred["fold"] > 0])
    assert metrics.is_speaker_independent("loso+speaker-norm") and not metrics.is_speaker_independent("random")


def test_spread_and_summarize():
    s = metrics.spread([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["low"] < 0.6 < s["high"] and s["n"] == 3
    rng = np.random.default_rng(9)
    preds = pd.concat([_speaker_preds(rng, model="a"), _speaker_preds(rng, model="b", acc=0.9)],
                      ignore_index=True).assign(corpus="c")
    results = (preds.groupby(["corpus", "model", "protocol", "fold", "seed", "run_id"])
               .apply(lambda g: pd.Series(metrics.scores(g["true"], g["pred"], 4))).reset_index())
    out = metrics.summarize(results, preds, n_boot=200)
    assert list(out["model"]) == ["a", "b"] and list(out["n_runs"]) == [6, 6]
    one = metrics.hierarchical_bootstrap(preds[preds["model"] == "a"], n_boot=200)
    assert out.loc[0, "uar"] == pytest.approx(one["uar"]) and out.loc[0, "uar_low"] == pytest.approx(one["uar_low"])
    assert out.loc[0, "uar_mean"] == pytest.approx(results[results["model"] == "a"]["uar"].mean())
    assert out.loc[1, "uar_low"] <= out.loc[1, "uar"] <= out.loc[1, "uar_high"]
    assert out["method"].str.contains("test speakers").all() and list(out["n_units"]) == [6, 6]
    # without predictions: a t-interval over runs, and the method says so
    plain = metrics.summarize(results, n_boot=200)
    assert plain["method"].str.startswith("t-interval").all()
    assert plain.loc[0, "uar"] == pytest.approx(plain.loc[0, "uar_mean"])
    small = pd.DataFrame({"run_id": ["r1"] * 4, "true": [0, 1, 0, 1], "pred": [0, 1, 1, 1]})
    table = metrics.confusion_table(small, ["x", "y"], normalize=True)
    assert table.loc["y", "y"] == pytest.approx(1.0)
    assert metrics.recall_table(small, ["x", "y"])["x"] == pytest.approx(0.5)
