"""Classification metrics for SER, in plain numpy: WA, UAR, macro-F1, confusion matrices, bootstrap CIs.

Vocabulary used across sercore and the SER literature:

- **WA** (weighted accuracy) = plain accuracy, the fraction of utterances classified correctly.
- **UAR** (unweighted average recall) = mean over classes of per-class recall (= scikit-learn's
  ``balanced_accuracy_score``); insensitive to class imbalance, so it is the headline metric.
- **macro-F1** = unweighted mean of per-class F1.

Classes absent from ``y_true`` are left out of UAR (their recall is undefined), as scikit-learn does;
for macro-F1 the classes are those in ``y_true`` or ``y_pred`` (scikit-learn's default labels).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of utterances of true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Class indices.
    num_classes : int, optional
        Matrix size ``K``; defaults to ``max(y_true, y_pred) + 1``.

    Returns
    -------
    np.ndarray of int64, shape (K, K)
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes with no true utterances."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """WA, UAR and macro-F1 from a confusion matrix (rows = true, columns = predicted)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    wa = float(tp.sum() / n) if n else float("nan")
    present = support > 0
    uar = float(np.mean(tp[present] / support[present])) if present.any() else float("nan")
    used = present | (predicted > 0)
    denom = support + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    macro_f1 = float(f1[used].mean()) if used.any() else float("nan")
    return {"wa": wa, "uar": uar, "macro_f1": macro_f1}


def scores(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """WA (accuracy), UAR (balanced accuracy) and macro-F1 of one set of predictions.

    Examples
    --------
    >>> scores([0, 0, 1, 2], [0, 1, 1, 2])["uar"]
    0.8333333333333334
    """
    y_true = np.asarray(y_true)
    if num_classes is None:
        num_classes = int(max(np.max(y_true, initial=-1), np.max(y_pred, initial=-1)) + 1)
    out = scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes))
    out["n"] = int(y_true.size)
    return out


def bootstrap_ci(y_true, y_pred, *, metric: str = "uar", n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, groups=None) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap confidence interval of a metric, resampling utterances.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    metric : {"uar", "wa", "macro_f1"}
    n_boot : int
        Number of bootstrap resamples.
    level : float
        Coverage of the interval (0.95 gives the 2.5 and 97.5 percentiles).
    seed : int
        Seed of the resampling; the same seed gives the same interval.
    groups : array-like, optional
        If given (e.g. the run or fold of each utterance), resample within each group (stratified
        bootstrap), which keeps every fold's size fixed.

    Returns
    -------
    (estimate, low, high) : tuple of float
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    est = scores(y_true, y_pred, k)[metric]
    rng = np.random.default_rng(seed)
    n = y_true.size
    if groups is None:
        index_sets = [np.arange(n)]
    else:
        groups = np.asarray(groups)
        index_sets = [np.flatnonzero(groups == g) for g in pd.unique(groups)]
    stats = np.empty(n_boot)
    flat = y_true * k  # encode (true, pred) pairs as one int for a fast bincount
    for b in range(n_boot):
        idx = np.concatenate([s[rng.integers(0, s.size, s.size)] for s in index_sets])
        cm = np.bincount(flat[idx] + y_pred[idx], minlength=k * k).reshape(k, k)
        stats[b] = scores_from_confusion(cm)[metric]
    alpha = (1.0 - level) / 2
    low, high = np.nanquantile(stats, [alpha, 1 - alpha])
    return float(est), float(low), float(high)


def spread(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, standard deviation and a t-interval of per-fold (or per-seed) scores.

    The t-interval treats folds as independent samples, which they are not quite (they share training
    speakers); read it as a description of the spread, not an exact confidence statement.
    """
    from scipy import stats as st

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    if v.size > 1:
        half = float(st.t.ppf(0.5 + level / 2, v.size - 1) * std / np.sqrt(v.size))
    else:
        half = float("nan")
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "n": int(v.size)}


def summarize(results: pd.DataFrame, predictions: pd.DataFrame | None = None, *,
              by: Sequence[str] = ("corpus", "model", "protocol"), n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """One row per (corpus, model, protocol): fold/seed spread of WA/UAR/F1 and pooled bootstrap CIs.

    Parameters
    ----------
    results : DataFrame
        The study's run table (one row per run; columns ``wa``, ``uar``, ``macro_f1`` and ``by``).
    predictions : DataFrame, optional
        The per-utterance table (columns ``true``, ``pred``, ``run_id`` and ``by``). When given,
        UAR and WA are also computed on all test utterances pooled, with a bootstrap CI resampling
        utterances within runs.

    Returns
    -------
    DataFrame
        Columns ``n_runs``, ``uar_mean``, ``uar_std``, ``uar_low``, ``uar_high`` (t-interval over
        runs), same for ``wa`` and ``macro_f1``, and if predictions are given ``pooled_uar``,
        ``pooled_uar_low``, ``pooled_uar_high``, ``pooled_wa``, ``pooled_wa_low``, ``pooled_wa_high``.
    """
    by = [c for c in by if c in results.columns]
    rows = []
    for key, grp in results.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_runs"] = len(grp)
        for m in ("uar", "wa", "macro_f1"):
            s = spread(grp[m].to_numpy())
            row.update({f"{m}_mean": s["mean"], f"{m}_std": s["std"], f"{m}_low": s["low"], f"{m}_high": s["high"]})
        if predictions is not None and len(predictions):
            sel = predictions[predictions["run_id"].isin(grp["run_id"])] if "run_id" in grp else predictions
            if len(sel):
                for m in ("uar", "wa"):
                    est, lo, hi = bootstrap_ci(sel["true"].to_numpy(), sel["pred"].to_numpy(), metric=m,
                                               n_boot=n_boot, seed=seed, groups=sel["run_id"].to_numpy())
                    row.update({f"pooled_{m}": est, f"pooled_{m}_low": lo, f"pooled_{m}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_table(predictions: pd.DataFrame, labels: Sequence[str], normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix of a predictions table as a labelled DataFrame (rows true, columns predicted).

    ``normalize=True`` divides each row by its count, so the diagonal is per-class recall.
    """
    cm = confusion_matrix(predictions["true"].to_numpy(), predictions["pred"].to_numpy(), len(labels))
    table = pd.DataFrame(cm, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
    return table


def recall_table(predictions: pd.DataFrame, labels: Sequence[str]) -> pd.Series:
    """Per-class recall of a predictions table, indexed by label."""
    cm = confusion_matrix(predictions["true"].to_numpy(), predictions["pred"].to_numpy(), len(labels))
    return pd.Series(per_class_recall(cm), index=pd.Index(labels, name="emotion"), name="recall")
