"""The numbers the source documents claim, and verdicts on them from our runs.

:data:`CLAIMS` lists every claimed figure (see ``shared/papers/README.md``) with the corpus, protocol
and measure (test or validation accuracy) it was measured under; :data:`DIRECTION_CLAIMS` lists the
claimed comparisons ("b higher than a"). :func:`claims_table` and :func:`direction_claims_table` set each
beside ours; :func:`verdict` and :func:`direction_verdict` decide from a 95 % interval (the bootstrap of
:mod:`sercore.metrics`: test speakers and seeds resampled for speaker-independent protocols).

The rules are symmetric: a verdict is only as strong as the interval allows.

* A **value** claim is "reproduced" only if it lies inside our interval *and* the interval's
  half-width is at most :data:`VALUE_TOLERANCE`; inside a wider interval it is "not decided (interval
  too wide)". Outside the interval it is "refuted (ours lower/higher)" at a profile that trains to
  convergence (:attr:`sercore.profiles.Profile.converged`) and "not reproduced at <profile> (ours
  lower/higher)" at one that does not.
* A **"higher"** claim (b > a) is "reproduced" if the whole interval of b - a is above 0, "refuted"
  if it is below 0 (converged profiles only; otherwise "not reproduced at <profile>"), and "not decided
  (interval includes 0)" otherwise.
* An **"at least as good"** claim is a non-inferiority claim with margin
  :data:`NONINFERIORITY_MARGIN`: "reproduced" if the interval's low end is above -margin, "refuted" if
  its high end is below -margin, "not decided" otherwise.
* A claim is "not comparable" when the corpus, the protocol or (for value claims) the measure differs:
  a best validation accuracy is selected on the data it reports, our figures are test scores.
"""
from __future__ import annotations

from typing import Mapping, Sequence

#: Largest half-width (fraction, 0.10 = 10 points) of our 95 % interval at which a claim inside it counts
#: as "reproduced": a wider interval would also contain numbers the claim meant to exclude.
VALUE_TOLERANCE = 0.10

#: Non-inferiority margin (fraction, 0.03 = 3 UAR points) of "b at least as good as a": b may be worse by
#: less than this and still count as "as good".
NONINFERIORITY_MARGIN = 0.03


def _convergence(profile=None, converged: bool | None = None, reduced: str | None = None) -> tuple[bool, str]:
    """(converged, name) of the profile a verdict is given at. ``reduced`` (old API) names a profile that
    trains less than the documents did; an unknown profile counts as not converged."""
    if reduced:
        return False, str(reduced)
    name = "this profile"
    if profile is not None:
        from .errors import ConfigError
        from .profiles import Profile, get_profile

        try:
            prof = profile if isinstance(profile, Profile) else get_profile(str(profile))
        except ConfigError:
            return bool(converged), str(profile)
        name = prof.name
        if converged is None:
            converged = prof.converged
    return bool(converged), name


def verdict(claimed: float, estimate: float, low: float, high: float, *, comparable: bool = True,
            why: str = "", reduced: str | None = None, profile=None, converged: bool | None = None,
            tolerance: float = VALUE_TOLERANCE) -> str:
    """Whether a claimed number stands against our estimate and its 95 % interval.

    Parameters
    ----------
    claimed, estimate, low, high : float
        The claim and our estimate with its interval (same scale, fractions).
    comparable : bool
        False when corpus, protocol or measure differ: ``"not comparable (<why>)"``.
    why : str
        The reason printed with "not comparable".
    reduced : str, optional
        Old API: the name of a profile that does not train to convergence (same as passing a
        non-converged ``profile``).
    profile : str or Profile, optional
        The profile of our runs; its ``converged`` attribute decides whether a miss can be a refutation.
    converged : bool, optional
        Overrides the profile's attribute. With neither ``profile`` nor ``converged``, the runs are not
        known to be converged, so a miss is "not reproduced at this profile".
    tolerance : float
        Largest half-width at which a claim inside the interval is "reproduced" (:data:`VALUE_TOLERANCE`).

    Returns
    -------
    str
        ``"reproduced"``, ``"not decided (interval too wide: +-h points)"``, ``"refuted (ours lower)"``,
        ``"refuted (ours higher)"``, ``"not reproduced at <profile> (ours lower/higher)"``,
        ``"not decided (no interval)"`` or ``"not comparable (...)"``.
    """
    if not comparable or estimate is None or estimate != estimate:
        return "not comparable" + (f" ({why})" if why else "")
    if low != low or high != high:
        return "not decided (no interval)"
    done, name = _convergence(profile, converged, reduced)
    if low <= claimed <= high:
        half = (high - low) / 2
        if half <= tolerance + 1e-12:
            return "reproduced"
        return f"not decided (interval too wide: +-{100 * half:.1f} points > {100 * tolerance:g})"
    side = "ours lower" if claimed > high else "ours higher"
    if done:
        return f"refuted ({side})"
    return f"not reproduced at {name} ({side})"


def direction_verdict(diff: Mapping[str, float], *, claim: str = "higher", comparable: bool = True,
                      why: str = "", profile=None, converged: bool | None = None,
                      margin: float = NONINFERIORITY_MARGIN) -> str:
    """Verdict on a claimed direction from a paired difference ``b - a`` (:func:`analysis.paired_difference`).

    Parameters
    ----------
    diff : mapping
        ``low``, ``high`` (95 % interval of b - a) and ``n`` (pairs).
    claim : {"higher", "at least as good"}
        ``"higher"``: b > a; reproduced if ``low > 0``, refuted if ``high < 0``, else "not decided
        (interval includes 0)". ``"at least as good"`` (alias ``"not lower"``): non-inferiority with
        ``margin``: reproduced if ``low > -margin``, refuted if ``high < -margin``, else "not decided".
    comparable, why : as in :func:`verdict`.
    profile, converged : as in :func:`verdict`: "refuted" only at a converged profile, otherwise
        "not reproduced at <profile> (b lower)".
    margin : float
        Non-inferiority margin (:data:`NONINFERIORITY_MARGIN`, 3 points).

    Returns
    -------
    str
    """
    if not comparable:
        return "not comparable" + (f" ({why})" if why else "")
    lo, hi, n = diff.get("low"), diff.get("high"), diff.get("n", 0)
    if not n or lo is None or hi is None or lo != lo or hi != hi:
        return "not decided (no interval)"
    done, name = _convergence(profile, converged)
    if claim in ("at least as good", "not lower"):
        m = f"{100 * margin:g}"
        if lo > -margin:
            return f"reproduced (b worse by less than the {m}-point margin)"
        if hi < -margin:
            return (f"refuted (b worse by more than {m} points)" if done else
                    f"not reproduced at {name} (b worse by more than {m} points)")
        return f"not decided (interval includes -{m} points)"
    if claim != "higher":
        from .errors import ConfigError

        raise ConfigError(f"unknown direction claim {claim!r}; use 'higher' or 'at least as good'")
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "refuted (b lower)" if done else f"not reproduced at {name} (b lower)"
    return "not decided (interval includes 0)"


def rules_out(diff: Mapping[str, float], *, unit: str = "points") -> str:
    """One sentence on what the interval of a paired difference ``b - a`` can and cannot rule out.

    Parameters
    ----------
    diff : mapping
        ``low`` and ``high`` of the 95 % interval (fractions; printed in percentage points).

    Returns
    -------
    str

    Examples
    --------
    >>> rules_out({"low": -0.041, "high": 0.03})
    'rules out b being better by more than 3.0 points or worse by more than 4.1 points; cannot rule out no difference, nor a difference of up to 4.1 points'
    >>> rules_out({"low": 0.02, "high": 0.12})
    'rules out no difference and b being worse; b is better by 2.0 to 12.0 points'
    """
    lo, hi = diff.get("low"), diff.get("high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return "no interval: rules out nothing"
    L, H = 100 * lo, 100 * hi
    if lo > 0:
        return f"rules out no difference and b being worse; b is better by {L:.1f} to {H:.1f} {unit}"
    if hi < 0:
        return f"rules out no difference and b being better; b is worse by {-H:.1f} to {-L:.1f} {unit}"
    return (f"rules out b being better by more than {H:.1f} {unit} or worse by more than {-L:.1f} {unit}; "
            f"cannot rule out no difference, nor a difference of up to {max(H, -L):.1f} {unit}")


#: Every number the source documents claim (see ``shared/papers/README.md``), with what it was measured
#: on. ``model`` is the sercore model that implements the claimed network (None: no counterpart);
#: ``protocol`` is the sercore protocol that matches the claim's ("random" = speaker-dependent
#: utterance split, "speaker_kfold" = speaker-independent, None = the document does not say);
#: ``metric`` is "wa" (accuracy) or "uar"; ``measure`` is what the number was measured on: "test"
#: (a held-out test split), "best test" (the best epoch's accuracy on the test split, i.e. selected on
#: it), "validation" (a validation split the model or its hyperparameters were selected on), or None
#: (not stated). Only "test" is comparable with our test scores.
CLAIMS = [
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9533,
     "protocol": "random", "measure": "test", "as_reported": "95.33 % speaker-dependent accuracy"},
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9589,
     "protocol": "speaker_kfold", "measure": "test", "as_reported": "95.89 % speaker-independent accuracy"},
    # seed 000: "I focused on the accuracy of speaker-dependent experiments. Validation accuracy was 0.73";
    # the 0.76 / 0.80 runs are "applied to the Berlin EmoDB dataset", same set-up; KerasTuner-tuned.
    {"source": "seed 000", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.73,
     "protocol": "random", "measure": "validation",
     "as_reported": "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)"},
    {"source": "seed 000", "model": "zhao2d_dense", "corpus": "emodb", "metric": "wa", "value": 0.76,
     "protocol": "random", "measure": "validation",
     "as_reported": "validation accuracy 0.76 (LSTM replaced by two dense layers)"},
    {"source": "seed 000", "model": "poolfix2d", "corpus": "emodb", "metric": "wa", "value": 0.80,
     "protocol": "random", "measure": "validation",
     "as_reported": "validation accuracy 0.80 (smaller pooling along time)"},
    {"source": "seed 001", "model": "td_cnn_lstm", "corpus": None, "metric": "wa", "value": 0.72,
     "protocol": "random", "measure": "test",
     "as_reported": "72 % test (74 % validation), 80/15/5 random split; corpus not named"},
    # seed 002 never says how it split EmoDB (no split, fold or speaker is mentioned): protocol None.
    {"source": "seed 002", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.8068,
     "protocol": None, "measure": "validation", "as_reported": "best validation accuracy 80.68 %"},
    {"source": "seed 002", "model": "td_cnn_lstm", "corpus": "emodb", "metric": "wa", "value": 0.62,
     "protocol": None, "measure": "validation",
     "as_reported": "best validation accuracy 62 % (18 windows of 5 frames)"},
    {"source": "seed 002", "model": "td_cnn_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6638,
     "protocol": None, "measure": "validation",
     "as_reported": "best validation accuracy 66.38 % (18 windows of 5 frames)"},
    {"source": "seed 002", "model": "zhao1d", "corpus": "emodb", "metric": "wa", "value": 0.654,
     "protocol": None, "measure": "validation", "as_reported": "best validation accuracy 65.4 %"},
    {"source": "seed 002", "model": "zhao1d_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6615,
     "protocol": None, "measure": "validation",
     "as_reported": "66.15 % ('the best accuracy', beside best validation accuracies; the paper's own "
                    "comparison table labels it '1D CNN-LSTM time distributed')"},
    # seed 003: 1:3 random test/train split of RAVDESS after AWGN augmentation; "Model testing accuracy".
    {"source": "seed 003", "model": "baseline_cnn", "corpus": "ravdess", "metric": "wa", "value": 0.9231,
     "protocol": "random+leaky-augmentation", "measure": "test",
     "as_reported": "test accuracy 92.31 % (random 1:3 split after AWGN augmentation)"},
    {"source": "seed 003", "model": None, "corpus": "ravdess", "metric": "wa", "value": 0.9583,
     "protocol": "random+leaky-augmentation", "measure": "test",
     "as_reported": "CNN + LSTM 95.83 % (layer sizes not given)"},
    {"source": "seed 003", "model": "attn_blstm", "corpus": "ravdess", "metric": "wa", "value": 0.9630,
     "protocol": "random+leaky-augmentation", "measure": "test",
     "as_reported": "CNN + attention LSTM 96.30 % (96.57 % at its best epoch on the test split)"},
    {"source": "seed 003", "model": "ae_fusion", "corpus": "ravdess", "metric": "wa", "value": 0.9754,
     "protocol": "random+leaky-augmentation", "measure": "best test",
     "as_reported": "CNN + FC autoencoder (300-d code) 97.54 % ('best accuracy' over epochs on the test split)"},
    {"source": "seed 004 (Zhang et al. 2021)", "model": "dcnn_blstm_attn", "corpus": "emodb", "metric": "uar",
     "value": 0.8786, "protocol": None, "measure": None,
     "as_reported": "UAR 87.86 % (protocol not stated in the README)"},
]

#: Claimed comparisons between two networks: ``b`` is "higher" than ``a`` (or "at least as good", a
#: non-inferiority claim). ``measure`` as in :data:`CLAIMS`; a comparison is judged on our test scores
#: even where the documents compared validation accuracies (both sides are measured alike, so the
#: selection bias of a validation figure largely cancels in the difference), but only on the claim's
#: corpus and protocol (a claim with protocol None is judged under each protocol we ran, and says so).
DIRECTION_CLAIMS = [
    {"source": "seed 000", "a": "zhao2d", "b": "zhao2d_dense", "claim": "higher", "corpus": "emodb",
     "protocol": "random", "measure": "validation", "metric": "wa",
     "as_reported": "two dense layers instead of the one-step LSTM: validation accuracy 0.76, "
                    "'higher than the original model' (0.73)"},
    {"source": "seed 000", "a": "zhao2d", "b": "poolfix2d", "claim": "higher", "corpus": "emodb",
     "protocol": "random", "measure": "validation", "metric": "wa",
     "as_reported": "smaller pooling along time: validation accuracy 'increased to 0.80'"},
    {"source": "seed 002", "a": "td_cnn_lstm", "b": "td_cnn_bilstm", "claim": "higher", "corpus": "emodb",
     "protocol": None, "measure": "validation", "metric": "wa",
     "as_reported": "'use of BiLSTM improves accuracy': time-distributed 2D CNN 62 % -> 66.38 %"},
    {"source": "seed 002", "a": "zhao1d", "b": "zhao1d_bilstm", "claim": "higher", "corpus": "emodb",
     "protocol": None, "measure": "validation", "metric": "wa",
     "as_reported": "'use of BiLSTM improves accuracy': 1D CNN 65.4 % -> 66.15 %"},
]

PROTOCOL_NAMES = {"random": "speaker-dependent (random utterance folds)",
                  "random+leaky-augmentation": "speaker-dependent, noisy copies of test utterances in training",
                  "speaker_kfold": "speaker-independent (speaker folds)", "loso": "leave-one-speaker-out",
                  None: "not stated"}

MEASURE_NAMES = {"test": "test accuracy", "best test": "best-epoch accuracy on the test split",
                 "validation": "validation accuracy", None: "an unstated measure"}


def _measure_phrase(c: Mapping) -> str:
    if c["measure"] == "validation" and "best validation" in c.get("as_reported", ""):
        return "best validation accuracy"
    return MEASURE_NAMES.get(c["measure"], str(c["measure"]))


def claims_table(summary, corpus: str, *, claims: Sequence[Mapping] | None = None, profile=None,
                 tolerance: float = VALUE_TOLERANCE):
    """Each claimed number beside ours on the same model, corpus, protocol and measure, with a verdict.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`sercore.analysis.summary_table` (columns ``variant``, ``protocol``, ``wa``/``uar``
        (or the older ``wa_mean``/``uar_mean``), ``*_low``, ``*_high``, ``n_runs``, optional ``method``).
    corpus : str
        The corpus this run used; a claim on another corpus is "not comparable".
    profile : str or Profile, optional
        The profile of the runs; only one with ``converged=True`` can refute (see :func:`verdict`).
    tolerance : float
        :data:`VALUE_TOLERANCE`.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``model``, ``claimed``, ``as reported``, ``claimed on``, ``claimed protocol``,
        ``measure``, ``ours``, ``our protocol``, ``interval``, ``verdict``.
    """
    import pandas as pd

    rows = []
    by = summary.set_index(["variant", "protocol"])
    for c in claims or CLAIMS:
        model, metric = c["model"], c["metric"]
        proto = c["protocol"] or "speaker_kfold"
        have = model is not None and (model, proto) in by.index
        row = {"source": c["source"], "model": model or "(none in sercore)",
               "claimed": f"{metric.upper()} {100 * c['value']:.2f} %", "as reported": c["as_reported"],
               "claimed on": c["corpus"] or "not stated", "claimed protocol": PROTOCOL_NAMES[c["protocol"]],
               "measure": MEASURE_NAMES.get(c.get("measure"), "")}
        if have:
            s = by.loc[(model, proto)]
            col = metric if metric in s.index else f"{metric}_mean"
            est, lo, hi = (float(s[col]), float(s[f"{metric}_low"]), float(s[f"{metric}_high"]))
            row["ours"] = (f"{metric.upper()} {100 * est:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] "
                           f"({int(s['n_runs'])} runs)")
            row["our protocol"] = PROTOCOL_NAMES.get(proto, proto)
            row["interval"] = str(s["method"]) if "method" in s.index else ""
        else:
            est = lo = hi = float("nan")
            row["ours"], row["our protocol"], row["interval"] = "not run", "", ""
        why = []
        if model is None:
            why.append("no matching network")
        if c["corpus"] != corpus:
            why.append(f"claimed on {c['corpus'] or 'an unnamed corpus'}, this run is on {corpus}")
        if c["protocol"] is None:
            why.append("claimed protocol unknown")
        if c.get("measure") != "test":
            why.append(f"{_measure_phrase(c)} vs our test accuracy")
        if not have and model is not None:
            why.append("model/protocol not run here" + (" (not among this run's models)"
                                                        if model not in set(summary["variant"]) else
                                                        " (notebook 05 runs the leaky protocol for its base network)"
                                                        if "leaky" in proto else ""))
        row["verdict"] = verdict(c["value"], est, lo, hi, comparable=not why, why="; ".join(why),
                                 profile=profile, converged=None if profile is not None else False,
                                 tolerance=tolerance)
        rows.append(row)
    return pd.DataFrame(rows)


def direction_claims_table(results, predictions, corpus: str, *, claims: Sequence[Mapping] | None = None,
                           profile=None, column: str = "variant", margin: float = NONINFERIORITY_MARGIN,
                           n_boot: int = 2000, seed: int = 0):
    """Each claimed comparison (:data:`DIRECTION_CLAIMS`) judged from our paired difference, per protocol run.

    Parameters
    ----------
    results, predictions : pandas.DataFrame
        Runs and per-utterance predictions (as from :func:`sercore.analysis.run_grid`).
    corpus : str
    profile : str or Profile, optional
        As in :func:`claims_table`.
    column : str
        Column of ``results`` that names the models (``variant``).

    Returns
    -------
    pandas.DataFrame
        One row per claim and protocol of ours: ``source``, ``claim``, ``as reported``, ``protocol``,
        ``difference`` (b - a in points with its interval), ``half-width``, ``pairs b > a``, ``interval``
        (method), ``what it rules out`` (:func:`rules_out`), ``verdict``.
    """
    import pandas as pd

    from .analysis import paired_difference

    protocols = sorted(results["protocol"].unique()) if len(results) else []
    rows = []
    for c in claims or DIRECTION_CLAIMS:
        a, b, metric = c["a"], c["b"], c.get("metric", "uar")
        sign = ">" if c["claim"] == "higher" else ">= (non-inferiority)"
        targets = [c["protocol"]] if c["protocol"] is not None else protocols or [None]
        for proto in targets:
            row = {"source": c["source"], "claim": f"{b} {sign} {a}", "as reported": c["as_reported"],
                   "protocol": PROTOCOL_NAMES.get(proto, proto)
                   + (" (claimed protocol not stated)" if c["protocol"] is None else "")}
            why = []
            if c["corpus"] != corpus:
                why.append(f"claimed on {c['corpus'] or 'an unnamed corpus'}, this run is on {corpus}")
            sub = results[results["protocol"] == proto] if proto is not None else results.iloc[:0]
            ran = set(sub[column]) if len(sub) else set()
            if a not in ran or b not in ran:
                why.append(f"{a} and {b} not both run under {PROTOCOL_NAMES.get(proto, proto)}")
            if why:
                d = {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "wins": 0,
                     "half_width": float("nan"), "method": ""}
            else:
                d = paired_difference(sub, a, b, metric=metric, column=column, protocol=proto,
                                      predictions=predictions, n_boot=n_boot, seed=seed)
            row.update({"difference": (f"{metric.upper()} {100 * d['mean']:+.1f} points "
                                       f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]" if d["n"] else ""),
                        "half-width": round(100 * d["half_width"], 1), "pairs b > a": f"{d['wins']} of {d['n']}",
                        "interval": d["method"], "what it rules out": rules_out(d) if d["n"] else "",
                        "verdict": direction_verdict(d, claim=c["claim"], comparable=not why, why="; ".join(why),
                                                     profile=profile,
                                                     converged=None if profile is not None else False,
                                                     margin=margin)})
            rows.append(row)
    return pd.DataFrame(rows)
