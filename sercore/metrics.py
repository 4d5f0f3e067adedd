"""Classification metrics for SER, in plain numpy: WA, UAR, macro-F1, confusion matrices, bootstrap intervals.

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
    speakers); read it as a description of the spread, not an exact confidence statement. Claims and
    headline tables use :func:`hierarchical_bootstrap` / :func:`paired_bootstrap` instead.
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


#: Protocols whose test sets are whole speakers; ``+suffix`` variants (``loso+speaker-norm``, ...) count too.
SPEAKER_PROTOCOLS = ("speaker_kfold", "loso")


def is_speaker_independent(protocol: str | None) -> bool:
    """Whether ``protocol`` (or its ``+suffix`` variant) tests on speakers unseen in training.

    >>> is_speaker_independent("loso+speaker-norm"), is_speaker_independent("random")
    (True, False)
    """
    return protocol is not None and str(protocol).split("+")[0] in SPEAKER_PROTOCOLS


def _batch_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """WA, UAR and macro-F1 of a stack of confusion matrices, shape (B, K, K); as :func:`scores_from_confusion`."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    n = support.sum(axis=1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        wa = tp.sum(axis=1) / n
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        uar = recall.sum(axis=1) / present.sum(axis=1)
        used = present | (predicted > 0)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        macro_f1 = np.where(used, f1, 0.0).sum(axis=1) / used.sum(axis=1)
    return {"wa": wa, "uar": uar, "macro_f1": macro_f1}


class _Design:
    """Per-unit, per-seed confusion matrices of one or more models on one protocol, on a shared seed axis.

    Units are the resampled entities: ``(fold, speaker)`` for speaker-independent protocols (each test
    speaker is in one fold), ``(fold, utterance)`` otherwise. Cross-corpus protocols (``+to-<corpus>``)
    score every target speaker in every fold: there the units are the target speakers and every
    (fold, seed) network is a replicate (one fold, seed slot ``fold * 1000 + seed``). ``C[m]`` has shape (U, S, K*K): model m's
    confusion counts of unit u under the s-th seed of the axis. A model with a single seed in a fold
    (deterministic, e.g. a classical baseline) fills every seed slot of that fold with it. ``avail[f]``
    lists the seed slots that every model can supply in fold f; draws pick seeds among those only.
    """

    def __init__(self, preds: Sequence[pd.DataFrame], protocol: str | None, num_classes: int | None = None):
        from .errors import ConfigError

        need = {"fold", "seed", "true", "pred"}
        for p in preds:
            missing = need - set(p.columns)
            if missing:
                raise ConfigError(f"predictions lack column(s) {sorted(missing)} needed for the bootstrap")
            if not len(p):
                raise ConfigError("no predictions to bootstrap")
        self.speaker = is_speaker_independent(protocol)
        # cross-corpus rows (protocol "<p>+to-<corpus>"): every fold's network scores the same target
        # speakers, so a speaker is one unit across folds and the folds' networks are replicates
        self.replicates = "+to-" in (protocol or "")
        key = "speaker" if self.speaker else "utt_id"
        frames = []
        for p in preds:
            p = p.copy()
            if self.replicates:
                p["seed"] = p["fold"].astype(np.int64) * 1000 + p["seed"].astype(np.int64)
                p["fold"] = 0
            if key not in p.columns:
                if self.speaker:
                    raise ConfigError("speaker-independent bootstrap needs a 'speaker' column in predictions")
                # no utterance ids: the i-th test row of a (fold, seed) run is the same utterance in every run
                p[key] = p.groupby(["fold", "seed"]).cumcount()
            frames.append(p)
        k = num_classes or int(max(max(p["true"].max(), p["pred"].max()) for p in frames) + 1)
        self.k = k
        units = pd.concat([p[["fold", key]] for p in frames]).drop_duplicates()
        units = units.sort_values(["fold", key]).reset_index(drop=True)
        self.units = units
        self.unit_fold = units["fold"].to_numpy()
        self.folds = np.unique(self.unit_fold)
        unit_index = {(f, u): i for i, (f, u) in enumerate(zip(units["fold"], units[key]))}
        self.seed_axis = np.unique(np.concatenate([p["seed"].to_numpy() for p in frames]))
        s_index = {s: j for j, s in enumerate(self.seed_axis)}
        U, S = len(units), len(self.seed_axis)
        # true class of each unit (for class-stratified utterance resampling); speakers have none
        first = frames[0].drop_duplicates(["fold", key]).set_index(["fold", key])["true"]
        self.unit_class = np.array([first.get((f, u), -1) for f, u in zip(units["fold"], units[key])])
        self.C = []
        multi = [[] for _ in self.folds]     # per fold: seed-slot sets of the models with several seeds there
        present = np.zeros((len(self.folds), S), dtype=bool)
        for p in frames:
            c = np.zeros((U, S, k * k))
            u = np.array([unit_index[t] for t in zip(p["fold"], p[key])])
            j = np.array([s_index[s] for s in p["seed"]])
            np.add.at(c, (u, j, p["true"].to_numpy(np.int64) * k + p["pred"].to_numpy(np.int64)), 1.0)
            for fi, f in enumerate(self.folds):
                seeds_f = np.unique(p.loc[p["fold"] == f, "seed"])
                in_f = self.unit_fold == f
                if seeds_f.size == 0:
                    raise ConfigError(f"fold {f} has no predictions for one of the models compared")
                slots = [s_index[s] for s in seeds_f]
                present[fi, slots] = True
                if seeds_f.size == 1:  # deterministic in this fold: its one seed stands for every seed
                    c[np.ix_(in_f, np.arange(S))] = c[in_f, slots[0]][:, None, :]
                else:
                    multi[fi].append(set(slots))
            self.C.append(c)
        self.avail = []
        for fi, f in enumerate(self.folds):
            if multi[fi]:
                slots = np.array(sorted(set.intersection(*multi[fi])), dtype=np.int64)
                if slots.size == 0:
                    raise ConfigError(f"fold {f}: the models compared share no seed numbers")
            else:  # every model has one seed here: nothing to resample
                slots = np.flatnonzero(present[fi])[:1]
            self.avail.append(slots)

    def weights(self, n_boot: int, rng: np.random.Generator) -> np.ndarray:
        """Draw weights, shape (n_boot, U*S): unit counts times seed counts of the unit's fold.

        Random numbers are consumed in a fixed, documented order (see :func:`hierarchical_bootstrap`):
        unit indices (``rng.integers(0, n, (n_boot, n))``) for each stratum in turn (one stratum of all
        units for speakers, one per true class, in class order, for utterances), then seed indices for each
        fold in fold order (``rng.integers(0, m, (n_boot, m))`` over the fold's m usable seed slots).
        """
        U, S = self.C[0].shape[:2]
        w = np.zeros((n_boot, U))
        strata = [np.arange(U)] if self.speaker else [np.flatnonzero(self.unit_class == c)
                                                      for c in np.unique(self.unit_class)]
        rows = np.arange(n_boot)[:, None]
        for members in strata:
            idx = rng.integers(0, members.size, (n_boot, members.size))
            np.add.at(w, (rows, members[idx]), 1.0)
        v = np.zeros((n_boot, len(self.folds), S))
        for fi, slots in enumerate(self.avail):
            idx = rng.integers(0, slots.size, (n_boot, slots.size))
            np.add.at(v, (rows, fi, slots[idx]), 1.0)
        fold_pos = np.searchsorted(self.folds, self.unit_fold)
        return (w[:, :, None] * v[:, fold_pos, :]).reshape(n_boot, U * S)

    def point_weights(self) -> np.ndarray:
        """Every unit once and every usable seed of its fold once: the estimate the interval is about."""
        U, S = self.C[0].shape[:2]
        v = np.zeros((len(self.folds), S))
        for fi, slots in enumerate(self.avail):
            v[fi, slots] = 1.0
        return v[np.searchsorted(self.folds, self.unit_fold)].reshape(1, U * S)

    def stats(self, weights: np.ndarray, m: int) -> dict[str, np.ndarray]:
        cm = weights @ self.C[m].reshape(-1, self.k * self.k)
        return _batch_scores(cm.reshape(-1, self.k, self.k))

    def counts(self) -> dict:
        return {"n_folds": int(len(self.folds)), "n_seeds": int(max(len(a) for a in self.avail)),
                "n_units": int(len(self.units)),
                "unit": "speakers" if self.speaker else "utterances"}

    def method(self, n_boot: int, level: float) -> str:
        if self.replicates:
            return (f"bootstrap over the target corpus's speakers and the trained networks (folds x seeds; "
                    f"{n_boot} draws, percentile {100 * level:g} %)")
        seeds = " and seeds within folds" if any(len(a) > 1 for a in self.avail) else ""
        what = "test speakers" if self.speaker else "test utterances within classes"
        return f"bootstrap over {what}{seeds} ({n_boot} draws, percentile {100 * level:g} %)"


def _percentile(stats: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def _one_protocol(predictions: pd.DataFrame, protocol: str | None) -> str | None:
    from .errors import ConfigError

    if protocol is None and "protocol" in predictions.columns:
        found = pd.unique(predictions["protocol"])
        if len(found) > 1:
            raise ConfigError(f"predictions mix protocols {list(found)}; pass protocol= or select one")
        protocol = found[0] if len(found) else None
    return protocol


def hierarchical_bootstrap(predictions: pd.DataFrame, *, protocol: str | None = None,
                           metrics: Sequence[str] = ("uar", "wa", "macro_f1"), n_boot: int = 2000,
                           level: float = 0.95, seed: int = 0, num_classes: int | None = None,
                           return_draws: bool = False) -> dict:
    """Point estimate and percentile interval of one model's test scores, resampling the protocol's units.

    The one interval method sercore uses for claims and headline tables:

    * speaker-independent protocols (:func:`is_speaker_independent`: ``speaker_kfold``, ``loso`` and
      their ``+suffix`` variants): a cluster bootstrap over **test speakers**. Each draw picks as many
      speakers as were tested, with replacement, and pools their test predictions;
    * other protocols (``random``): a bootstrap over **test utterances, stratified by true class**
      (class supports stay fixed);
    * in both, where a fold was trained with several seeds, each draw also picks that fold's seeds with
      replacement (as many as it has), so the interval includes the seed-to-seed variance.

    A draw's score is computed on the pooled confusion matrix of the drawn units under the drawn seeds
    (a weighted sum of precomputed per-unit, per-seed confusion matrices). The point estimate uses every
    unit and every seed once: the score of all test predictions pooled (for UAR and WA, the mean over
    seeds of the pooled score when every fold has the same seeds).

    Parameters
    ----------
    predictions : DataFrame
        One row per test utterance per run, of ONE model on ONE protocol: columns ``fold``, ``seed``,
        ``true``, ``pred``, and ``speaker`` (speaker-independent protocols) or ``utt_id`` (others).
    protocol : str, optional
        Default: the table's ``protocol`` column (which must hold one value).
    metrics : sequence of {"uar", "wa", "macro_f1"}
    n_boot : int
        Number of draws.
    level : float
        Coverage: 0.95 gives the 2.5 and 97.5 percentiles of the draws.
    seed : int
        Seed of the resampling (``numpy.random.default_rng(seed)``); see ``_Design.weights`` for the
        order in which random numbers are drawn.
    num_classes : int, optional
    return_draws : bool
        Also return the draws' scores (``draws``: dict metric -> array of shape (n_boot,)), for checks.

    Returns
    -------
    dict
        For each metric m: ``m`` (estimate), ``m_low``, ``m_high``; and ``method`` (the sentence a report
        prints), ``n_folds``, ``n_seeds`` (most seeds a fold has), ``n_units``, ``unit`` ("speakers" or
        "utterances").

    Raises
    ------
    ConfigError
        Columns missing, no predictions, or several protocols in the table with none chosen.
    """
    protocol = _one_protocol(predictions, protocol)
    design = _Design([predictions], protocol, num_classes)
    rng = np.random.default_rng(seed)
    draws = design.stats(design.weights(n_boot, rng), 0)
    point = design.stats(design.point_weights(), 0)
    out = {}
    for m in metrics:
        out[m] = float(point[m][0])
        out[f"{m}_low"], out[f"{m}_high"] = _percentile(draws[m], level)
    out = {**out, "method": design.method(n_boot, level), **design.counts()}
    if return_draws:
        out["draws"] = {m: draws[m] for m in metrics}
    return out


def paired_bootstrap(pred_a: pd.DataFrame, pred_b: pd.DataFrame, *, protocol: str | None = None,
                     metric: str = "uar", n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                     num_classes: int | None = None, return_draws: bool = False) -> dict:
    """Score difference ``b - a`` of two models tested on the same folds, with a paired bootstrap interval.

    Each draw resamples the units once (test speakers for speaker-independent protocols, test
    utterances within classes otherwise; see :func:`hierarchical_bootstrap`) and the seeds of each fold
    once, and scores **both** models on that same draw, so the interval is of the paired difference:
    what the two models share (which speakers are easy, which seeds) cancels. Seeds are matched by seed
    number; a model with one seed in a fold (deterministic, e.g. a classical baseline trained with seed
    0 only) is reused for every seed the other model draws.

    Parameters
    ----------
    pred_a, pred_b : DataFrame
        Per-utterance predictions of model a and model b on one protocol (columns as in
        :func:`hierarchical_bootstrap`). Both must cover the same folds; units missing from one model
        count as zero for it (they should not happen: a fold's test set is fixed by the protocol).
    protocol, n_boot, level, seed, num_classes, return_draws
        As in :func:`hierarchical_bootstrap` (``draws``: the differences, shape (n_boot,)).
    metric : {"uar", "wa", "macro_f1"}

    Returns
    -------
    dict
        ``mean`` (difference of the pooled point estimates, b - a), ``low``, ``high`` (percentile
        interval), ``half_width`` ((high - low) / 2), ``n`` (per-(fold, seed) pairs), ``wins`` (pairs in
        which b scores higher than a, per-run scores), ``n_folds``, ``n_seeds``, ``n_units``, ``unit``,
        ``method``.
    """
    from .errors import ConfigError

    protocol = _one_protocol(pd.concat([pred_a, pred_b], ignore_index=True), protocol)
    fa, fb = set(pred_a["fold"]), set(pred_b["fold"])
    if fa != fb:
        raise ConfigError(f"models compared on different folds ({sorted(fa)} vs {sorted(fb)}); "
                          "a paired difference needs the same test sets")
    design = _Design([pred_a, pred_b], protocol, num_classes)
    rng = np.random.default_rng(seed)
    w = design.weights(n_boot, rng)
    d = design.stats(w, 1)[metric] - design.stats(w, 0)[metric]
    p0 = design.point_weights()
    mean = float(design.stats(p0, 1)[metric][0] - design.stats(p0, 0)[metric][0])
    low, high = _percentile(d, level)
    # per-(fold, seed) runs: b's runs against a's run of the same seed (or a's only run in that fold)
    k = design.k
    def run_scores(p):
        return {(f, s): scores(g["true"], g["pred"], k)[metric] for (f, s), g in p.groupby(["fold", "seed"])}
    ra, rb = run_scores(pred_a), run_scores(pred_b)
    pairs = []
    for f in design.folds:
        sa = sorted(s for ff, s in ra if ff == f)
        sb = sorted(s for ff, s in rb if ff == f)
        for s in sorted(set(sa) | set(sb)):
            xa = ra.get((f, s), ra[(f, sa[0])] if len(sa) == 1 else None)
            xb = rb.get((f, s), rb[(f, sb[0])] if len(sb) == 1 else None)
            if xa is not None and xb is not None:
                pairs.append(xb - xa)
    pairs = np.asarray(pairs)
    method = "paired " + design.method(n_boot, level) + ", same draw for both models"
    out = {"mean": mean, "low": low, "high": high, "half_width": (high - low) / 2, "n": int(pairs.size),
           "wins": int((pairs > 0).sum()), **design.counts(), "method": method}
    if return_draws:
        out["draws"] = d
    return out


def summarize(results: pd.DataFrame, predictions: pd.DataFrame | None = None, *,
              by: Sequence[str] = ("corpus", "model", "protocol"), n_boot: int = 2000,
              seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per (corpus, model, protocol): scores with the study's interval, and the spread over runs.

    Parameters
    ----------
    results : DataFrame
        The study's run table (one row per run; columns ``wa``, ``uar``, ``macro_f1``, ``run_id`` and
        ``by``).
    predictions : DataFrame, optional
        The per-utterance table (columns ``run_id``, ``fold``, ``seed``, ``speaker``, ``utt_id``,
        ``true``, ``pred``). When given, the headline estimate and interval of each metric come from
        :func:`hierarchical_bootstrap` (test speakers and seeds resampled for speaker-independent
        protocols, utterances within classes and seeds otherwise). Without it (or for a group with no
        predictions) they fall back to the mean over runs and a t-interval over runs, and ``method``
        says so.
    n_boot, seed, level
        Bootstrap draws, its seed, and the interval's coverage.

    Returns
    -------
    DataFrame
        ``by`` columns, ``n_runs``; for m in uar, wa, macro_f1: ``m`` (estimate: all test predictions
        pooled), ``m_low``, ``m_high`` (the interval), ``m_mean`` and ``m_std`` (mean and standard
        deviation of the per-run scores, descriptive); ``method``, ``n_folds``, ``n_seeds``, ``n_units``,
        ``unit``.
    """
    by = [c for c in by if c in results.columns]
    rows = []
    for key, grp in results.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_runs"] = len(grp)
        for m in ("uar", "wa", "macro_f1"):
            s = spread(grp[m].to_numpy())
            row.update({f"{m}_mean": s["mean"], f"{m}_std": s["std"]})
        sel = None
        if predictions is not None and len(predictions):
            sel = predictions[predictions["run_id"].isin(grp["run_id"])] if "run_id" in grp else predictions
        if sel is not None and len(sel):
            protocol = row.get("protocol", grp["protocol"].iloc[0] if "protocol" in grp else None)
            row.update(hierarchical_bootstrap(sel, protocol=protocol, n_boot=n_boot, seed=seed, level=level))
        else:
            for m in ("uar", "wa", "macro_f1"):
                s = spread(grp[m].to_numpy(), level=level)
                row.update({m: s["mean"], f"{m}_low": max(0.0, s["low"]) if s["low"] == s["low"] else s["low"],
                            f"{m}_high": min(1.0, s["high"]) if s["high"] == s["high"] else s["high"]})
            row.update({"method": f"t-interval over {len(grp)} runs ({100 * level:g} %; no per-utterance "
                                  "predictions)", "n_folds": int(grp["fold"].nunique()) if "fold" in grp else 0,
                        "n_seeds": int(grp["seed"].nunique()) if "seed" in grp else 0, "n_units": 0, "unit": ""})
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
