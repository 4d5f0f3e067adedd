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


def test_spread_and_summarize():
    s = metrics.spread([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["low"] < 0.6 < s["high"] and s["n"] == 3
    results = pd.DataFrame({"corpus": "c", "model": ["a", "a", "b"], "protocol": "p", "run_id": ["r1", "r2", "r3"],
                            "uar": [0.5, 0.7, 0.9], "wa": [0.5, 0.7, 0.9], "macro_f1": [0.5, 0.7, 0.9]})
    preds = pd.DataFrame({"run_id": ["r1"] * 4 + ["r2"] * 4 + ["r3"] * 4,
                          "true": [0, 1, 0, 1] * 3, "pred": [0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1]})
    out = metrics.summarize(results, preds, n_boot=100)
    assert list(out["model"]) == ["a", "b"] and list(out["n_runs"]) == [2, 1]
    assert out.loc[0, "uar_mean"] == pytest.approx(0.6)
    assert out.loc[1, "pooled_uar"] == pytest.approx(1.0)
    assert out.loc[0, "pooled_wa"] == pytest.approx(7 / 8)
    table = metrics.confusion_table(preds, ["x", "y"], normalize=True)
    assert table.loc["y", "y"] == pytest.approx(1.0)
    assert metrics.recall_table(preds, ["x", "y"])["x"] == pytest.approx(5 / 6)
