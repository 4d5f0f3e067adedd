"""Cross-corpus evaluation: train on one corpus, test on another over the emotions both carry.

A cross-corpus run is an ordinary speaker-independent run on the *source* corpus (its folds, its
validation speakers for early stopping, its training rows for the normaliser), restricted to the
emotions the two corpora share, whose trained network is then scored once more on the *whole target
corpus* (its utterances of those emotions). Each trained network therefore gives two rows: its
within-corpus test fold (protocol ``speaker_kfold``) and the target corpus (protocol
``speaker_kfold+to-<target>``), so the drop from one to the other is a paired difference of the
same networks (:func:`sercore.analysis.paired_difference` with ``column="protocol"``).

Decisions, stated once here and printed by the report:

* **Emotions.** The classes both corpora label. EmoDB and RAVDESS share six: anger, disgust, fear,
  happiness, neutral, sadness. EmoDB's *boredom* and RAVDESS's *calm* and *surprise* have no
  counterpart and are left out of both training and testing (merging calm into neutral is a
  judgement the corpora's authors did not make: RAVDESS labels them as different emotions).
* **Sample rate.** Every file is decoded at the feature configuration's rate (16 kHz): RAVDESS's
  original 48 kHz files are resampled on load (soxr, high quality), EmoDB is recorded at 16 kHz.
* **Loudness.** Nothing rescales the waveforms, so the corpora's recording levels differ in the
  log-mel (dB against full scale). With the plain protocol the target is standardised with the
  source training rows' statistics, so a level difference stays in the input: this is the honest
  "train here, deploy there" condition. The labelled variant ``+speaker-norm`` standardises every
  speaker (source and target) by its own mean and variance, which removes per-speaker level and
  channel offsets at the price of using each target speaker's unlabelled features.
* **Padding.** Both corpora are stored at the same padded length (the longer of the two corpora's
  longest utterance, capped by the profile's ``segments.max_s``), so one network takes both.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .errors import ConfigError

#: Protocol suffix of the rows scored on another corpus: ``speaker_kfold+to-ravdess``.
CROSS_SUFFIX = "+to-"


def cross_protocol(protocol: str, target: str) -> str:
    """The protocol name of ``protocol``'s networks scored on corpus ``target``.

    >>> cross_protocol("speaker_kfold+speaker-norm", "ravdess")
    'speaker_kfold+speaker-norm+to-ravdess'
    """
    return f"{protocol}{CROSS_SUFFIX}{target}"


def target_of(protocol: str) -> str | None:
    """The target corpus of a cross-corpus protocol name, else None.

    >>> target_of("speaker_kfold+to-emodb"), target_of("speaker_kfold")
    ('emodb', None)
    """
    if CROSS_SUFFIX not in protocol:
        return None
    return protocol.split(CROSS_SUFFIX, 1)[1].split("+")[0]


def shared_emotions(source: pd.DataFrame, target: pd.DataFrame,
                    emotions: Sequence[str] | None = None) -> list[str]:
    """The emotions both corpus tables carry (sorted), or the given ``emotions`` after checking that
    both carry each of them.

    Raises
    ------
    ConfigError
        Fewer than two shared emotions, or a requested emotion missing from a corpus.
    """
    have_s = set(source["emotion"].astype(str))
    have_t = set(target["emotion"].astype(str))
    if emotions is None:
        shared = sorted(have_s & have_t)
    else:
        shared = sorted(set(map(str, emotions)))
        for name, have in (("source", have_s), ("target", have_t)):
            missing = [e for e in shared if e not in have]
            if missing:
                raise ConfigError(f"cross-corpus emotions {missing} are not in the {name} corpus "
                                  f"(it has {sorted(have)}); pass emotions that both corpora label")
    if len(shared) < 2:
        raise ConfigError(f"the two corpora share {len(shared)} emotion(s) ({shared}); cross-corpus "
                          "evaluation needs at least two")
    return shared


def restrict(df: pd.DataFrame, emotions: Sequence[str]) -> pd.DataFrame:
    """The rows of ``df`` whose emotion is one of ``emotions``, re-indexed from 0."""
    return df[df["emotion"].astype(str).isin(set(emotions))].reset_index(drop=True)


def pair_corpora(df: pd.DataFrame, cross: str | None, cross_root=None, cross_df: pd.DataFrame | None = None,
                 emotions: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The source table and the target corpus's table (``cross_df`` or ``load_corpus(cross, cross_root)``),
    both restricted to their shared emotions (or ``emotions``); ``(df, None)`` without ``cross``.

    Raises
    ------
    ConfigError
        ``emotions`` given without ``cross``; see also :func:`shared_emotions`.
    """
    if cross is None:
        if emotions is not None:
            raise ConfigError("emotions=... selects the classes of a cross-corpus study; pass cross=<corpus> too")
        return df, None
    from .corpora import load_corpus

    target = cross_df if cross_df is not None else load_corpus(cross, cross_root)
    shared = shared_emotions(df, target, emotions)
    return restrict(df, shared), restrict(target, shared)


def left_out(df: pd.DataFrame, emotions: Sequence[str]) -> dict[str, int]:
    """Utterance counts of the emotions of ``df`` that cross-corpus evaluation leaves out."""
    counts = df["emotion"].astype(str).value_counts()
    return {e: int(n) for e, n in sorted(counts.items()) if e not in set(emotions)}


#: The corpus each corpus is tested against by default (notebook 06). The synthetic corpora come from
#: one synthesiser (synthetic-small's speakers 03, 08, 09, 10 are synthetic's too; synthetic-small, the
#: CI corpus, is paired with itself so that CI need not generate the full one): they check the
#: pipeline, they are not a cross-corpus result.
PARTNERS = {"emodb": "ravdess", "ravdess": "emodb", "synthetic": "synthetic-small",
            "synthetic-small": "synthetic-small"}


def run_cross_grid(source: str, target: str, models: Sequence[str], profile, *,
                   baselines: Sequence[str] = (), seeds: Sequence[int] | None = None,
                   speaker_norm: Sequence[bool] = (False,), protocol: str = "speaker_kfold",
                   results_root=None, source_root=None, target_root=None, source_df=None, target_df=None,
                   emotions: Sequence[str] | None = None, name: str | None = None, progress: bool | None = None):
    """Train every model (and baseline) on ``source``'s folds and score it there and on ``target``.

    Runs live in ``<results_root>/<source>/<name or "<profile>-cross-<target>">`` and are reused.

    Returns
    -------
    results, predictions : pandas.DataFrame
        Both the within-corpus rows (protocol ``<protocol>[+speaker-norm]``) and the target rows
        (``...+to-<target>``), with columns ``variant`` (model name), ``direction``
        (``"emodb -> ravdess"``), ``tested_on`` (``"within"`` / ``"cross"``) and ``normalisation``
        (``"training rows"`` / ``"per speaker"``).
    """
    from .analysis import study_runs
    from .baselines import run_baseline
    from .corpora import load_corpus
    from .profiles import get_profile
    from .protocols import SPEAKER_NORM_SUFFIX
    from .study import run_study

    prof = get_profile(profile)
    use = list(seeds) if seeds is not None else list(prof.side)
    if source_df is None:
        source_df = load_corpus(source, source_root)
    if target_df is None:
        target_df = load_corpus(target, target_root)
    study = name or f"{prof.name}-cross-{target}"
    res, pred = [], []
    jobs = [(m, False) for m in models] + [(b, True) for b in baselines]
    for model, is_baseline in jobs:
        for norm in speaker_norm:
            kw = dict(df=source_df, results_root=results_root, speaker_norm=norm, cross=target,
                      cross_df=target_df, emotions=emotions, progress=progress)
            if is_baseline:
                st = run_baseline(source, model, protocol, prof, study=study, **kw)
            else:
                st = run_study(source, model, protocol, prof, name=study, seeds=use, **kw)
            base = protocol + (SPEAKER_NORM_SUFFIX if norm else "")
            for proto, where in ((base, "within"), (cross_protocol(base, target), "cross")):
                r, p = study_runs(st, model, proto, seeds=None if is_baseline else use, variant=model,
                                  direction=f"{source} -> {target}", tested_on=where,
                                  normalisation="per speaker" if norm else "training rows")
                res.append(r)
                if p is not None:
                    pred.append(p)
    results = pd.concat(res, ignore_index=True) if res else pd.DataFrame()
    predictions = pd.concat(pred, ignore_index=True) if pred else pd.DataFrame()
    return results, predictions


def cross_table(results: pd.DataFrame, predictions: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0):
    """Per (direction, variant, normalisation): within-corpus and cross-corpus UAR with 95 % intervals,
    and the drop (cross - within) with an interval from independent draws of the two bootstraps
    (the two are scored on different speakers, so they cannot be paired by speaker).

    Returns
    -------
    pandas.DataFrame
        ``direction``, ``variant``, ``normalisation``, ``within``, ``within_low``, ``within_high``,
        ``cross``, ``cross_low``, ``cross_high``, ``drop``, ``drop_low``, ``drop_high``, ``n_runs``,
        ``n_source_speakers``, ``n_target_speakers``, ``method``.
    """
    import numpy as np

    from .metrics import hierarchical_bootstrap

    rows = []
    for (direction, variant, norm), grp in results.groupby(["direction", "variant", "normalisation"], sort=False):
        row = {"direction": direction, "variant": variant, "normalisation": norm}
        draws = {}
        for where in ("within", "cross"):
            g = grp[grp["tested_on"] == where]
            p = predictions[predictions["run_id"].isin(g["run_id"])]
            if not len(p):
                row.update({where: float("nan"), f"{where}_low": float("nan"), f"{where}_high": float("nan")})
                continue
            b = hierarchical_bootstrap(p, protocol=g["protocol"].iloc[0], metrics=("uar",), n_boot=n_boot,
                                       seed=seed + (where == "cross"), return_draws=True)
            row.update({where: b["uar"], f"{where}_low": b["uar_low"], f"{where}_high": b["uar_high"]})
            row[f"n_{'source' if where == 'within' else 'target'}_speakers"] = int(p["speaker"].nunique())
            if where == "within":
                row["n_runs"] = int(len(g))
            draws[where] = b["draws"]["uar"]
        if len(draws) == 2:
            d = draws["cross"] - draws["within"]
            row.update({"drop": row["cross"] - row["within"], "drop_low": float(np.percentile(d, 2.5)),
                        "drop_high": float(np.percentile(d, 97.5))})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["method"] = ("within: bootstrap over the source's test speakers and seeds; cross: over the target's "
                     "speakers and the trained networks; drop: difference of independent draws")
    return out
