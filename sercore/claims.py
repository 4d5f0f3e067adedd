"""The numbers the source documents claim, and verdicts on them from our runs.

:data:`CLAIMS` lists every claimed figure (see ``shared/papers/README.md``) with the corpus and protocol
it was measured under; :func:`claims_table` sets each beside ours for the same network, corpus and
protocol; :func:`verdict` and :func:`direction_verdict` decide "reproduced", "refuted" or "not
comparable" from an estimate's 95 % interval.
"""
from __future__ import annotations

from typing import Mapping, Sequence

def verdict(claimed: float, estimate: float, low: float, high: float, *, comparable: bool = True,
            why: str = "", reduced: str | None = None) -> str:
    """Whether a claimed number stands against our estimate and its 95 % interval.

    ``"reproduced"`` if the claim lies inside ``[low, high]``, ``"refuted (ours lower)"`` /
    ``"refuted (ours higher)"`` if outside, ``"not comparable"`` (with ``why``) when the corpus or
    protocol differs, or when the estimate is missing.

    ``reduced`` names a profile that trains less than the documents did (e.g. ``"quick"``: smaller
    inputs, 8 epochs). A miss then says only ``"not reproduced at quick (ours lower)"``: a briefly
    trained model scoring below a claim does not refute it.
    """
    if not comparable or estimate is None or estimate != estimate:
        return "not comparable" + (f" ({why})" if why else "")
    if low != low or high != high:  # no interval (a single run)
        low = high = estimate
    if low <= claimed <= high:
        return "reproduced"
    side = "ours lower" if claimed > high else "ours higher"
    if reduced:
        return f"not reproduced at {reduced} ({side})"
    return f"refuted ({side})"


def direction_verdict(diff: Mapping[str, float], *, claim: str = "higher", comparable: bool = True,
                      why: str = "") -> str:
    """Verdict on a claimed direction (``b`` higher / not lower than ``a``) from :func:`paired_difference`.

    ``claim="higher"``: reproduced if the whole interval is above 0, refuted if it is below 0,
    ``"not shown (interval includes 0)"`` otherwise. ``claim="not lower"``: reproduced unless the
    whole interval is below 0.
    """
    if not comparable:
        return "not comparable" + (f" ({why})" if why else "")
    lo, hi, n = diff.get("low"), diff.get("high"), diff.get("n", 0)
    if not n or lo != lo or hi != hi:
        return "not enough runs for an interval"
    if claim == "not lower":
        return "refuted (lower)" if hi < 0 else "reproduced"
    if lo > 0:
        return "reproduced"
    return "refuted (lower)" if hi < 0 else "not shown (interval includes 0)"


#: Every number the source documents claim (see ``shared/papers/README.md``), with what it was measured
#: on. ``model`` is the sercore model that implements the claimed network (None: no counterpart);
#: ``protocol`` is the sercore protocol that matches the claim's ("random" = speaker-dependent
#: utterance split, "speaker_kfold" = speaker-independent); ``metric`` is "wa" (accuracy) or "uar".
CLAIMS = [
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9533,
     "protocol": "random", "as_reported": "95.33 % speaker-dependent accuracy"},
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9589,
     "protocol": "speaker_kfold", "as_reported": "95.89 % speaker-independent accuracy"},
    {"source": "seed 000", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.73,
     "protocol": "random", "as_reported": "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)"},
    {"source": "seed 000", "model": "zhao2d_dense", "corpus": "emodb", "metric": "wa", "value": 0.76,
     "protocol": "random", "as_reported": "validation accuracy 0.76 (LSTM replaced by two dense layers)"},
    {"source": "seed 000", "model": "poolfix2d", "corpus": "emodb", "metric": "wa", "value": 0.80,
     "protocol": "random", "as_reported": "validation accuracy 0.80 (smaller pooling along time)"},
    {"source": "seed 001", "model": "td_cnn_lstm", "corpus": None, "metric": "wa", "value": 0.72,
     "protocol": "random", "as_reported": "72 % test (74 % validation), 80/15/5 random split; corpus not named"},
    {"source": "seed 002", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.8068,
     "protocol": "random", "as_reported": "best validation accuracy 80.68 %"},
    {"source": "seed 002", "model": "td_cnn_lstm", "corpus": "emodb", "metric": "wa", "value": 0.62,
     "protocol": "random", "as_reported": "best validation accuracy 62 % (18 windows of 5 frames)"},
    {"source": "seed 002", "model": "td_cnn_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6638,
     "protocol": "random", "as_reported": "best validation accuracy 66.38 %"},
    {"source": "seed 002", "model": "zhao1d", "corpus": "emodb", "metric": "wa", "value": 0.654,
     "protocol": "random", "as_reported": "best validation accuracy 65.4 %"},
    {"source": "seed 002", "model": "zhao1d_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6615,
     "protocol": "random", "as_reported": "66.15 % (the paper's own comparison table labels it "
                                          "'1D CNN-LSTM time distributed')"},
    {"source": "seed 003", "model": "baseline_cnn", "corpus": "ravdess", "metric": "wa", "value": 0.9231,
     "protocol": "random+leaky-augmentation", "as_reported": "test accuracy 92.31 % (random 1:3 split after AWGN "
                                                              "augmentation)"},
    {"source": "seed 003", "model": None, "corpus": "ravdess", "metric": "wa", "value": 0.9583,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + LSTM 95.83 % (layer sizes not given)"},
    {"source": "seed 003", "model": "attn_blstm", "corpus": "ravdess", "metric": "wa", "value": 0.9630,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + attention LSTM 96.30 %"},
    {"source": "seed 003", "model": "ae_fusion", "corpus": "ravdess", "metric": "wa", "value": 0.9754,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + FC autoencoder (300-d code) 97.54 %"},
    {"source": "seed 004 (Zhang et al. 2021)", "model": "dcnn_blstm_attn", "corpus": "emodb", "metric": "uar",
     "value": 0.8786, "protocol": None, "as_reported": "UAR 87.86 % (protocol not stated in the README)"},
]

PROTOCOL_NAMES = {"random": "speaker-dependent (random utterance folds)",
                  "random+leaky-augmentation": "speaker-dependent, noisy copies of test utterances in training",
                  "speaker_kfold": "speaker-independent (speaker folds)", "loso": "leave-one-speaker-out",
                  None: "not stated"}


def claims_table(summary, corpus: str, *, claims: Sequence[Mapping] | None = None, profile: str | None = None):
    """Each claimed number beside ours on the same model, corpus and protocol, with a verdict.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summary_table` (columns ``variant``, ``protocol``, ``wa_mean/low/high``,
        ``uar_mean/low/high``), one row per model and protocol of this run.
    corpus : str
        The corpus this run used; a claim on another corpus is "not comparable".
    profile : str, optional
        The profile of the runs. Any profile but ``full`` trains less than the documents did, so a
        claim outside our interval is "not reproduced at <profile>" rather than "refuted".

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``model``, ``claimed``, ``as reported``, ``claimed on``, ``claimed protocol``, ``ours``,
        ``our protocol``, ``verdict``. "reproduced": the claim lies in our 95 % interval over runs;
        "refuted": outside it (at ``full``; see ``profile``).
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
               "claimed on": c["corpus"] or "not stated", "claimed protocol": PROTOCOL_NAMES[c["protocol"]]}
        if have:
            s = by.loc[(model, proto)]
            est, lo, hi = (float(s[f"{metric}_mean"]), float(s[f"{metric}_low"]), float(s[f"{metric}_high"]))
            row["ours"] = f"{metric.upper()} {100 * est:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] ({int(s['n_runs'])} runs)"
            row["our protocol"] = PROTOCOL_NAMES[proto]
        else:
            est = lo = hi = float("nan")
            row["ours"], row["our protocol"] = "not run", ""
        why = []
        if model is None:
            why.append("no matching network")
        if c["corpus"] != corpus:
            why.append(f"claimed on {c['corpus'] or 'an unnamed corpus'}, this run is on {corpus}")
        if c["protocol"] is None:
            why.append("claimed protocol unknown")
        if not have and model is not None:
            why.append("model/protocol not run here" + (" (notebook 05 shows the leaky protocol)"
                                                        if "leaky" in proto else
                                                        " (not among this run's models)"
                                                        if model not in set(summary["variant"]) else ""))
        row["verdict"] = verdict(c["value"], est, lo, hi, comparable=not why, why="; ".join(why),
                                 reduced=profile if profile not in (None, "full") else None)
        rows.append(row)
    return pd.DataFrame(rows)
