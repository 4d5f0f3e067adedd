"""What the study notebooks compute, so that the notebooks stay thin (calls and figures only).

* Notebook set-up and display: :func:`setup_notebook`, :func:`md`, :func:`pct`.
* Corpus views: :func:`crop_table`, :func:`frames_lost`, :func:`one_per_emotion`.
* Training grids (resumable, shared between notebooks): :func:`run_grid`, :func:`classifiers`,
  :func:`default_models`.
* Tables with intervals: :func:`summary_table`, :func:`paired_difference`, :func:`history_table`.
* Error analysis: :func:`with_corpus`, :func:`per_run_scores`, :func:`load_run_model`, :func:`model_outputs`,
  :func:`listener_correlation` (per model, never pooled over models).
* What ran and how far it got, from each run's own records: :func:`run_configuration_table`,
  :func:`convergence_table`, :func:`convergence_statement`, :func:`undecidable_margin`.

The claims of the source documents and their verdicts are in :mod:`sercore.claims`; running the
notebooks and rendering them is :mod:`sercore.reports`.

Examples
--------
>>> from sercore import analysis
>>> results, predictions = analysis.run_grid("synthetic-small", ["zhao2d"], ["speaker_kfold"],
...                                          "smoke")   # doctest: +SKIP
>>> analysis.summary_table(results, predictions)        # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from . import config
from . import executors as _executors
from .reports import as_list  # noqa: F401  (notebooks parse their `models` parameter with it)

# ------------------------------------------------------------------------------------ notebook set-up
def setup_notebook(data_dir: str | os.PathLike | None = None, results_dir: str | os.PathLike | None = None,
                   *, seed: int | None = None) -> Path:
    """Prepare a study notebook: data tree, figure style, table display; return the results root.

    Parameters
    ----------
    data_dir : path-like, optional
        sercore's data tree (sets ``SERCORE_DATA_DIR`` for this kernel); default: as configured.
    results_dir : path-like, optional
        Root of training results; default ``config.results_dir()``.
    seed : int, optional
        Seeds numpy's global generator (only for incidental sampling in notebooks; training is seeded
        explicitly).
    """
    import numpy as np
    import pandas as pd

    from . import plots

    if data_dir:
        os.environ["SERCORE_DATA_DIR"] = str(in_checkout_path(data_dir))
    enable_compilation_cache()
    plots.set_style()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_colwidth", 400)   # sentences in tables (what an interval rules out) stay whole
    pd.set_option("display.width", 160)
    if seed is not None:
        np.random.seed(seed)
    return in_checkout_path(results_dir) if results_dir else config.results_dir()


def in_checkout_path(path: str | os.PathLike) -> Path:
    """An absolute path for a notebook parameter: relative paths are relative to the repository (the
    report runner injects paths inside the checkout that way, see :func:`sercore.reports.run_notebooks`),
    else to the working directory when sercore is not installed from a checkout."""
    p = Path(path).expanduser()
    if not p.is_absolute() and config.REPO_DIR is not None:
        p = config.REPO_DIR / p
    return p.resolve()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Keep JAX's compiled programs on disk (``<data_dir>/cache/jax``) so that each notebook's kernel
    (and every later run) reuses the compilations of the previous ones instead of repeating them.

    Respects an existing ``JAX_COMPILATION_CACHE_DIR``. Measured on this project's 2-core machine: the
    first epoch of a smoke run drops from ~34 s to ~6 s when the program is in the cache.
    """
    import sys

    folder = Path(path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or config.data_dir() / "cache" / "jax")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    if "jax" in sys.modules:  # already imported: environment variables are read at import only
        import jax

        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return folder


def md(text: str) -> None:
    """Display ``text`` as Markdown (findings written from computed numbers)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage string: ``pct(0.7312) == '73.1 %'``; ``'n/a'`` for NaN/None."""
    if x is None or x != x:
        return "n/a"
    return f"{100 * float(x):.{digits}f} %"


def frames_lost(durations, crop_s: float, *, sr: int = 16000, hop_length: int = 256):
    """Share of each utterance's STFT frames that a fixed crop to ``crop_s`` seconds throws away.

    Parameters
    ----------
    durations : array-like, shape (n,)
        Utterance durations (s).
    crop_s : float
        Clip length kept (s).

    Returns
    -------
    np.ndarray, shape (n,)
        Fraction in [0, 1): 0 for utterances no longer than the crop.
    """
    import numpy as np

    d = np.asarray(durations, dtype=float)
    frames = 1 + np.floor(d * sr / hop_length)
    kept = 1 + np.floor(crop_s * sr / hop_length)
    return np.clip(frames - kept, 0, None) / frames


def crop_table(df, crops_s: Sequence[float], *, sr: int = 16000, hop_length: int = 256):
    """What fixed-length crops cut off a corpus: one row per crop length.

    Columns: ``crop (s)``, ``utterances cropped (%)``, ``frames lost (%)`` (of all frames in the corpus),
    ``mean loss of cropped (%)``, ``padded (%)`` (utterances shorter than the crop, zero-padded).
    """
    import numpy as np
    import pandas as pd

    d = df["duration"].to_numpy(float)
    frames = 1 + np.floor(d * sr / hop_length)
    rows = []
    for c in crops_s:
        lost = frames_lost(d, c, sr=sr, hop_length=hop_length)
        cropped = lost > 0
        rows.append({"crop (s)": float(c), "utterances cropped (%)": 100 * cropped.mean(),
                     "frames lost (%)": 100 * float((lost * frames).sum() / frames.sum()),
                     "mean loss of cropped (%)": 100 * float(lost[cropped].mean()) if cropped.any() else 0.0,
                     "padded (%)": 100 * float((d < c).mean())})
    return pd.DataFrame(rows)


def one_per_emotion(df, *, seed: int = 0) -> dict:
    """One example row per emotion, all from the same speaker and sentence where the corpus allows.

    Returns a dict ``emotion -> row`` (pandas Series), in canonical emotion order.
    """
    from .plots import emotion_order

    emotions = emotion_order(df["emotion"])
    best = None
    for (spk, text), grp in df.groupby(["speaker", "text"], dropna=False, sort=True):
        cover = grp["emotion"].nunique()
        if best is None or cover > best[0]:
            best = (cover, spk, text)
    out = {}
    for emo in emotions:
        rows = df[df["emotion"] == emo]
        if best is not None:
            pref = rows[(rows["speaker"] == best[1]) & (rows["text"] == best[2])]
            rows = pref if len(pref) else rows
        out[emo] = rows.sample(1, random_state=seed).iloc[0] if len(rows) > 1 else rows.iloc[0]
    return out


def classifiers() -> list[str]:
    """Every registered classifier a study trains on its own, in registry order (``ae_fusion`` needs a
    trained autoencoder and is studied in notebook 05)."""
    from .models import list_models, model_info

    return [m for m in list_models() if model_info(m)["task"] == "classify" and m != "ae_fusion"]


def notebook_profile(profile, n_seeds: int | None = None):
    """The profile a notebook trains under: ``profile`` with only the first ``n_seeds`` of its seeds
    (the notebooks' ``n_seeds`` parameter; None = all of them). Fewer seeds cost proportionally less and
    leave seed variance out of the intervals; the reports say which seeds ran, from the runs' records.
    The runs are the same runs a full-seed call trains first (same run ids), so they are reused later.

    >>> notebook_profile("standard", 1).seeds, notebook_profile("standard").seeds
    ((0,), (0, 1, 2))
    """
    from .errors import ConfigError
    from .profiles import get_profile

    prof = get_profile(profile)
    if n_seeds is None:
        return prof
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or not 1 <= n_seeds <= len(prof.seeds):
        raise ConfigError(f"n_seeds={n_seeds!r}: profile {prof.name!r} has {len(prof.seeds)} seed(s) "
                          f"{list(prof.seeds)}; give a whole number from 1 to {len(prof.seeds)}, or None for all")
    return prof.replace(seeds=prof.seeds[:n_seeds],
                        protocol_seeds={k: tuple(v)[:n_seeds] for k, v in prof.protocol_seeds.items()},
                        side_seeds=min(prof.side_seeds or n_seeds, n_seeds))


def profile_label(profile) -> str:
    """A profile's name, with the seeds it kept when :func:`notebook_profile` took some away.

    >>> profile_label(notebook_profile("standard", 1)), profile_label("standard")
    ('standard (1 of 3 seeds)', 'standard')
    """
    from .profiles import PROFILES, get_profile

    prof = get_profile(profile)
    full = PROFILES.get(prof.name)
    if full is None or len(prof.seeds) == len(full.seeds):
        return prof.name
    return f"{prof.name} ({len(prof.seeds)} of {len(full.seeds)} seeds)"


def default_models(profile: str) -> list[str]:
    """The classifiers notebooks 03 and 04 train under ``profile``: the profile's ``models`` (every
    classifier for ``full``; ``quick`` leaves out the three most expensive; two for ``smoke``)."""
    from .profiles import get_profile

    chosen = get_profile(profile).models
    return [m for m in classifiers() if chosen is None or m in chosen]


def run_grid(corpus: str, models: Sequence[str], protocols: Sequence[str], profile, *,
             seeds: Sequence[int] | None = None, results_root: str | os.PathLike | None = None,
             name: str | None = None, variant: str | None = None, corpus_root=None, df=None, seed: int = 0,
             **study_kw):
    """Train every (model, protocol) of a notebook with :func:`sercore.study.run_study`; resumable.

    Finished runs are reused (the study folder is ``<results_root>/<corpus>/<name or profile>``), so
    notebooks that need the same runs share them.

    Parameters
    ----------
    models, protocols : sequence of str
    profile : str or Profile
        A profile name, or a :class:`~sercore.profiles.Profile` (e.g. from :func:`notebook_profile`).
    seeds : sequence of int, optional
        Model seeds (default: the profile's for each protocol, :meth:`sercore.profiles.Profile.seeds_for`,
        offset by ``seed``).
    seed : int
        Base seed added to the profile's seeds when ``seeds`` is not given.
    name : str, optional
        Study folder name (default: the profile's name). Give variants of one model (other
        ``model_kwargs``) their own name, since results are grouped by model name.
    variant : str, optional
        Value of the ``variant`` column added to both tables (default: the model name).
    **study_kw
        Passed on (``model_kwargs``, ``augment``, ``augment_before_split``, ``train``, ``folds``, ...).

    Returns
    -------
    results, predictions : pandas.DataFrame
        The runs of this call only (one row per run; one row per test utterance per run), with
        ``variant`` and (results) ``study_dir`` columns.
    """
    import pandas as pd

    from .profiles import get_profile
    from .study import LEAKY_SUFFIX, run_study

    if df is None and corpus_root is not None:
        from .corpora import load_corpus

        df = load_corpus(corpus, corpus_root)
    res, pred = [], []
    prof = get_profile(profile)

    def study(model, protocol):
        use = list(seeds) if seeds is not None else [seed + s for s in prof.seeds_for(protocol)]
        return use, run_study(corpus, model, protocol, profile, name=name, seeds=use, df=df,
                              results_root=results_root, **study_kw)

    planned = None
    remote = _executors.resolve(study_kw.get("executor"))
    if remote is not None and hasattr(remote, "batch"):
        # Ray: every (model, protocol)'s unfinished runs go to the cluster at once (a failed run raises
        # RunError here, after all the others finished); then each study folder is read once more
        from .study import collect

        study_kw["executor"] = remote
        with remote.batch():
            planned = {(m, p): study(m, p) for m in models for p in protocols}
        done = {d: collect(d) for d in {st.dir for _, st in planned.values()}}
        planned = {key: (use, done[st.dir]) for key, (use, st) in planned.items()}
    for model in models:
        for protocol in protocols:
            use, st = planned[model, protocol] if planned is not None else study(model, protocol)
            run_protocol = protocol + (LEAKY_SUFFIX if study_kw.get("augment_before_split") else "")
            r, p = study_runs(st, model, run_protocol, seeds=use, folds=study_kw.get("folds"),
                              variant=variant or model)
            res.append(r)
            if p is not None:
                pred.append(p)
    results = pd.concat(res, ignore_index=True) if res else pd.DataFrame()
    predictions = pd.concat(pred, ignore_index=True) if pred else pd.DataFrame()
    return results, predictions


def study_runs(st, model: str, protocol: str, *, seeds: Sequence[int] | None = None, folds=None, **extra):
    """The runs of ``model`` under ``protocol`` in study ``st`` (of the given seeds and folds; ``folds``
    an int means the first n), one per (fold, seed): the latest if settings changed between calls.

    Returns
    -------
    results, predictions : pandas.DataFrame
        Sorted by fold and seed, with ``study_dir`` (results) and the ``extra`` columns (both);
        predictions is None when the study has none.
    """
    r = st.results[(st.results["model"] == model) & (st.results["protocol"] == protocol)]
    if seeds is not None:
        r = r[r["seed"].isin(list(seeds))]
    if folds is not None:
        r = r[r["fold"].isin(list(range(folds)) if isinstance(folds, int) else list(folds))]
    r = r.sort_values("finished_at").drop_duplicates(["fold", "seed"], keep="last")
    r = r.sort_values(["fold", "seed"]).assign(study_dir=str(st.dir), **extra)
    p = st.predictions[st.predictions["run_id"].isin(r["run_id"])].assign(**extra) if len(st.predictions) else None
    return r, p


def summary_table(results, predictions=None, *, by: Sequence[str] = ("variant", "protocol"),
                  n_boot: int = 2000, seed: int = 0):
    """Per ``by`` group: runs, UAR / WA with the study's 95 % interval, and the mean over runs.

    A thin layer over :func:`sercore.metrics.summarize`. With ``predictions`` (as notebooks have them),
    ``uar`` / ``wa`` are the scores of all test predictions pooled and ``uar_low`` / ``uar_high`` (and
    ``wa_*``) a percentile bootstrap over test speakers and seeds (speaker-independent protocols) or
    over test utterances within classes and seeds (``random``); ``method`` says which. Without
    predictions, a t-interval over runs (and ``method`` says that).

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, ``n_runs``, ``uar``, ``uar_low``, ``uar_high``, ``wa``, ``wa_low``, ``wa_high``,
        ``uar_mean``, ``wa_mean`` (means of per-run scores, descriptive), ``method``, ``n_folds``,
        ``n_seeds``, ``n_units``, ``unit``.
    """
    from .metrics import summarize

    s = summarize(results, predictions, by=list(by), n_boot=n_boot, seed=seed)
    keep = list(by) + [c for c in ("n_runs", "uar", "uar_low", "uar_high", "wa", "wa_low", "wa_high",
                                   "uar_mean", "wa_mean", "method", "n_folds", "n_seeds", "n_units", "unit")
                       if c in s.columns]
    return s[keep]


def paired_difference(results, a: str, b: str, *, metric: str = "uar", column: str = "variant",
                      protocol: str | None = None, predictions=None, n_boot: int = 2000, seed: int = 0) -> dict:
    """Difference ``b - a`` of a metric between two models on the same folds and seeds, with a 95 % interval.

    With ``predictions`` (the method for claims): :func:`sercore.metrics.paired_bootstrap`, which
    resamples the same test speakers (speaker-independent protocols) or test utterances within classes
    (``random``), and the same seeds, for both models in each draw; seeds are matched by number, and a
    model with one seed per fold (a deterministic baseline) is reused for every seed of the other.
    Without ``predictions``: the old t-interval over per-(fold, seed) differences of ``results``, and
    ``method`` says so (kept for callers that have only run tables; do not use it for claims).

    Parameters
    ----------
    results : pandas.DataFrame
        Run table with ``column``, ``protocol``, ``fold``, ``seed``, ``run_id`` and ``metric``.
    a, b : str
        Values of ``column`` (model names or variants).
    protocol : str, optional
        Required when ``results`` holds several protocols.
    predictions : pandas.DataFrame, optional
        Per-utterance predictions of these runs (``run_id`` links them to ``results``).

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``half_width``, ``n`` (per-(fold, seed) pairs), ``wins`` (pairs in which
        b > a), ``n_folds``, ``n_seeds``, ``n_units``, ``unit``, ``method``. When a or b has no runs: NaNs and
        ``n == 0``.

    Raises
    ------
    ConfigError
        Several protocols in ``results`` and none chosen; the models' folds differ.
    """
    from .errors import ConfigError
    from .metrics import paired_bootstrap, spread

    empty = {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "half_width": float("nan"),
             "n": 0, "wins": 0, "n_folds": 0, "n_seeds": 0, "n_units": 0, "unit": "", "method": "no runs"}
    r = results if protocol is None else results[results["protocol"] == protocol]
    if "protocol" in r and r["protocol"].nunique() > 1:
        raise ConfigError(f"results hold protocols {sorted(r['protocol'].unique())}; pass protocol=")
    ra, rb = r[r[column] == a], r[r[column] == b]
    if not len(ra) or not len(rb):
        return empty
    if predictions is not None and len(predictions):
        pa = predictions[predictions["run_id"].isin(ra["run_id"])]
        pb = predictions[predictions["run_id"].isin(rb["run_id"])]
        if len(pa) and len(pb):
            proto = protocol or (r["protocol"].iloc[0] if "protocol" in r else None)
            return paired_bootstrap(pa, pb, protocol=proto, metric=metric, n_boot=n_boot, seed=seed)
    wide = r.pivot_table(index=["fold", "seed"], columns=column, values=metric, aggfunc="mean")
    d = (wide[b] - wide[a]).dropna().to_numpy()
    if not d.size:
        return empty
    s = spread(d)
    low, high = (max(-1.0, s["low"]), min(1.0, s["high"])) if d.size > 1 else (s["low"], s["high"])
    return {**empty, "mean": s["mean"], "low": low, "high": high, "half_width": (high - low) / 2,
            "n": int(d.size), "wins": int((d > 0).sum()),
            "n_folds": int(len(set(wide.dropna().index.get_level_values(0)))),
            "n_seeds": int(len(set(wide.dropna().index.get_level_values(1)))),
            "method": f"t-interval over {d.size} paired runs (no per-utterance predictions; not for claims)"}


def history_table(results):
    """Per-epoch training histories of the given runs as one long table for :func:`plots.learning_curves`.

    Parameters
    ----------
    results : pandas.DataFrame
        Runs from :func:`run_grid` (columns ``run_id`` and ``study_dir``).

    Returns
    -------
    pandas.DataFrame
        Columns ``variant``, ``protocol``, ``fold``, ``seed``, ``epoch``, ``metric`` ("loss" or "UAR"),
        ``split`` ("train" or "validation"), ``value``.
    """
    import pandas as pd

    rows = []
    for r in results.itertuples(index=False):
        path = Path(r.study_dir) / "runs" / r.run_id / "result.json"
        hist = json.loads(path.read_text()).get("history", [])
        for h in hist:
            base = {"variant": getattr(r, "variant", r.model), "protocol": r.protocol, "fold": r.fold,
                    "seed": r.seed, "epoch": h["epoch"]}
            for key, metric, split in (("train_loss", "loss", "train"), ("val_loss", "loss", "validation"),
                                       ("train_acc", "accuracy / UAR", "train (accuracy)"),
                                       ("val_uar", "accuracy / UAR", "validation (UAR)")):
                if key in h and h[key] is not None:
                    rows.append({**base, "metric": metric, "split": split, "value": float(h[key])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- error analysis
def with_corpus(predictions, df, columns: Sequence[str] = ("gender", "intensity", "recognition", "naturalness",
                                                           "duration", "text")):
    """Predictions joined with corpus columns (by ``utt_id``), plus ``correct`` (1/0) and ``confidence``
    (the predicted class's probability)."""
    import numpy as np

    cols = [c for c in columns if c in df.columns and c not in predictions.columns]
    out = predictions.merge(df[["utt_id", *cols]], on="utt_id", how="left")
    out["correct"] = (out["true"] == out["pred"]).astype(int)
    prob_cols = [c for c in out.columns if c.startswith("p_")]
    if prob_cols:
        out["confidence"] = out[prob_cols].to_numpy(float).max(axis=1)
    else:
        out["confidence"] = np.nan
    return out


def per_run_scores(predictions, by: str, *, metric: str = "accuracy"):
    """One row per (variant, protocol, run, ``by`` value): ``accuracy`` (or per-class ``recall`` when
    ``by="true_label"``) within that group, for bar charts with an interval over runs."""
    g = predictions.assign(_ok=(predictions["true"] == predictions["pred"]).astype(float))
    keys = [k for k in ("variant", "protocol", "run_id") if k in g.columns] + [by]
    out = g.groupby(keys, dropna=False)["_ok"].mean().rename(metric).reset_index()
    return out


def load_run_model(results_row):
    """The saved model of one run (a row of :func:`run_grid`'s results): a :class:`sercore.predict.SavedModel`."""
    from .predict import load_model

    return load_model(Path(results_row["study_dir"]) / "runs" / results_row["run_id"] / "model")


def model_outputs(saved, rows, *, attention: bool = False, batch_size: int = 32):
    """Features, embeddings (and attention weights) of a saved model on corpus rows.

    Parameters
    ----------
    saved : sercore.predict.SavedModel
    rows : pandas.DataFrame
        Corpus rows (``path`` column).
    attention : bool
        Also return attention weights (models that accept ``return_attention=True``).

    Returns
    -------
    dict
        ``features`` (N, *shape) log-mel dB as extracted (before normalisation), ``embeddings`` (N, D),
        and ``attention`` (N, T) when asked. For a model trained on crops the embedding is the mean over
        the windows that cover each utterance, and ``features`` and ``attention`` are those of its first
        window.
    """
    import jax.numpy as jnp
    import numpy as np

    from .features import extract_features

    from .features import valid_steps
    from .training import take_windows, window_starts

    X = extract_features(rows, saved.feature_cfg, progress=False)
    Xn = saved.normalizer.apply(X)
    prov = saved.meta.get("provenance", {})
    crop = int(prov.get("crop_frames") or 0)
    if crop:   # a model trained on crops: embed every window, average per utterance; attention of the first
        step = int(prov.get("window_step") or max(1, crop // 2))
        dur = rows["duration"].to_numpy() if "duration" in rows else None
        lengths = valid_steps(dur, saved.feature_cfg) if dur is not None else np.full(len(X), X.shape[-2])
        owner, starts = window_starts(lengths, crop, step, X.shape[-2])
        windows = take_windows(Xn, owner, starts, crop)
        first = np.r_[True, owner[1:] != owner[:-1]]
    else:
        owner, windows, first = np.arange(len(X)), Xn, np.ones(len(X), bool)
    embs, weights = [], []
    for i in range(0, len(windows), batch_size):
        xb = jnp.asarray(windows[i:i + batch_size])
        if attention:
            z, w = saved.model.embed(xb, return_attention=True)
            weights.append(np.asarray(w))
        else:
            z = saved.model.embed(xb)
        embs.append(np.asarray(z))
    z = np.concatenate(embs)
    sums = np.zeros((len(X), z.shape[1]))
    np.add.at(sums, owner, z)
    out = {"features": X if not crop else take_windows(X, owner[first], starts[first], crop),
           "embeddings": sums / np.bincount(owner, minlength=len(X))[:, None]}
    if attention:
        out["attention"] = np.concatenate(weights)[first]
    return out


# ------------------------------------------------------------------- what ran, and how far it got
def _run_records(study_or_results, models: Sequence[str] | None = None) -> list[dict]:
    """One dict per finished run, ``{"model", "run_dir", "config", "result"}``, read from the runs'
    own ``config.json`` and ``result.json``.

    ``study_or_results`` is a :class:`sercore.study.Study`, a study folder (with ``runs/``), or a
    results table with ``study_dir`` and ``run_id`` columns (:func:`run_grid`; its ``variant`` column,
    when present, names the rows).
    """
    import pandas as pd

    dirs: list[tuple[str | None, Path]] = []
    if isinstance(study_or_results, pd.DataFrame):
        r = study_or_results
        for row in r.itertuples(index=False):
            dirs.append((getattr(row, "variant", None), Path(row.study_dir) / "runs" / row.run_id))
    else:
        folder = Path(getattr(study_or_results, "dir", study_or_results))
        if not (folder / "runs").is_dir():
            from .errors import ConfigError

            raise ConfigError(f"{folder} is not a study folder (no runs/ inside)")
        dirs = [(None, d) for d in sorted((folder / "runs").iterdir()) if (d / "result.json").exists()]
    out = []
    for name, d in dirs:
        try:
            cfg = json.loads((d / "config.json").read_text())
            res = json.loads((d / "result.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        name = name or cfg.get("model") or res.get("model")
        if models is not None and name not in models and cfg.get("model") not in models:
            continue
        out.append({"model": name, "run_dir": d, "config": cfg, "result": res})
    return out


def _model_defaults(model: str) -> dict:
    """Constructor defaults of a registered model (its builder's and its module's class keywords)."""
    import importlib
    import inspect

    from . import models as _models

    try:
        entry = _models._entry(model)
    except Exception:  # noqa: BLE001  (an unregistered name has no defaults to compare with)
        return {}
    module_name, fn_name = entry.builder.split(":")
    module = importlib.import_module(f"sercore.models.{module_name}")
    found: dict = {}
    for obj in [getattr(module, fn_name)] + [v for v in vars(module).values()
                                             if inspect.isclass(v) and v.__module__ == module.__name__]:
        try:
            sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
        except (TypeError, ValueError):
            continue
        for p in sig.parameters.values():
            if p.default is not inspect.Parameter.empty and p.name not in ("rngs",):
                found.setdefault(p.name, p.default)
    found.update(entry.defaults)
    return found


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt_value(x)}" for k, x in v.items())
    return str(v)


def _same(a, b) -> bool:
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731  (JSON turns tuples into lists)
    return norm(a) == norm(b)


#: Model keywords that cut the input into windows (shown in their own column).
WINDOW_KEYS = ("window_size", "window_step", "segment_frames", "segment_step")


def run_configuration_table(study_or_results, models: Sequence[str] | None = None):
    """What was actually trained, per model, from each run's own ``config.json`` and ``result.json``.

    Reports describe this table, never the models' defaults: a profile changes input sizes, window
    lengths, dropouts and the training schedule.

    Parameters
    ----------
    study_or_results : Study, path or DataFrame
        A :class:`sercore.study.Study`, a study folder, or a results table from :func:`run_grid`
        (rows are named by its ``variant`` column).
    models : sequence of str, optional
        Keep only these models / variants (in this order); default every model found.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``model``; columns ``runs``, ``input`` (features and shape), ``windowing``,
        ``settings that differ from the model's defaults``, ``epochs run (min/median/max)``,
        ``epoch cap``, ``best epoch (median)``, ``batch size``, ``learning rate``, ``augmentation``,
        ``other training settings``. Where runs of one model differ, the distinct values are joined
        with `` | ``.
    """
    import numpy as np
    import pandas as pd

    from .training import TrainConfig

    train_defaults = TrainConfig().to_dict()
    shown_train = {"epochs", "batch_size", "learning_rate", "lr_schedule", "optimizer", "seed", "patience",
                   "min_epochs", "decay", "momentum", "eval_batch_size"}
    by_model: dict[str, list[dict]] = {}
    for rec in _run_records(study_or_results, models):
        by_model.setdefault(rec["model"], []).append(rec)
    order = [m for m in (models or []) if m in by_model] + [m for m in by_model if m not in (models or [])]

    def joined(values) -> str:
        return " | ".join(dict.fromkeys(values))

    rows = []
    for name in order:
        recs = by_model[name]
        inputs, windows, changed, lrs, augs, others, batches, caps = [], [], [], [], [], [], [], []
        for rec in recs:
            cfg = rec["config"]
            feat, train, kw = cfg.get("features", {}), cfg.get("train", {}), cfg.get("model_kwargs") or {}
            kind = feat.get("kind", "?")
            if kind == "raw":
                sr, dur = feat.get("sr", 16000), feat.get("duration", 0)
                inputs.append(f"raw audio, {int(sr * dur)} samples ({_fmt_value(dur)} s at {sr} Hz)")
            else:
                sr, hop = feat.get("sr", 16000), feat.get("hop_length", 256)
                try:
                    from .features import FeatureConfig

                    shape = " x ".join(map(str, FeatureConfig.from_dict(feat).shape))
                except Exception:  # noqa: BLE001  (a record from another sercore version)
                    shape = f"{feat.get('n_mels', '?')} mels"
                inputs.append(f"{kind} {shape} "
                              f"({_fmt_value(feat.get('duration'))} s, hop {hop} = {1000 * hop / sr:.0f} ms)")
            seg, crop = cfg.get("segments"), train.get("crop_frames")
            if seg and crop:   # trained on random crops, scored over windows covering each utterance
                inputs[-1] = (f"random {_fmt_value(seg.get('crop_s'))} s crops ({crop} "
                              f"{'samples' if kind == 'raw' else 'frames'}) of whole utterances, scored by the mean "
                              f"logits of windows every {_fmt_value(seg.get('step_s'))} s; stored as "
                              + inputs[-1])
            defaults = _model_defaults(cfg.get("model", name))
            eff = {**{k: v for k, v in defaults.items() if k in WINDOW_KEYS}, **kw}
            win = {k: eff[k] for k in WINDOW_KEYS if k in eff}
            if win:
                hop_ms = 1000 * feat.get("hop_length", 256) / feat.get("sr", 16000)
                if "window_size" in win:
                    windows.append(f"{win['window_size']} frames ({win['window_size'] * hop_ms / 1000:.2f} s), "
                                   f"step {win.get('window_step', '?')}")
                else:
                    windows.append(f"{win.get('segment_frames')} frames "
                                   f"({win.get('segment_frames', 0) * hop_ms / 1000:.2f} s), "
                                   f"step {win.get('segment_step', '?')}")
            else:
                windows.append("whole input")
            diff = {k: v for k, v in kw.items() if k not in WINDOW_KEYS and k != "encoder"
                    and not (k in defaults and _same(defaults[k], v))}
            changed.append("; ".join(f"{k} {_fmt_value(v)} (default {_fmt_value(defaults[k])})" if k in defaults
                                     else f"{k} {_fmt_value(v)}" for k, v in diff.items()) or "none")
            batches.append(str(train.get("batch_size", "?")))
            caps.append(str(train.get("epochs", "?")))
            sched = train.get("lr_schedule", "constant")
            extra = [f"{k.replace('_', ' ')} {_fmt_value(train[k])}" for k in sorted(train)
                     if ("warmup" in k or "lr_" in k) and k != "lr_schedule"]
            lrs.append(f"{train.get('optimizer', 'adam')} {_fmt_value(train.get('learning_rate', '?'))}, {sched}"
                       + (f" ({', '.join(extra)})" if extra else "")
                       + (f", decay {_fmt_value(train['decay'])}" if train.get("decay") else ""))
            aug = cfg.get("augment")
            aug_text = []
            if aug:
                aug_text.append(f"AWGN {_fmt_value(aug)}" if isinstance(aug, dict) else _fmt_value(aug))
            if cfg.get("leaky"):
                aug_text.append("LEAKY: augmented before the split")
            aug_keys = [k for k in train if any(w in k for w in ("mix", "mask", "specaug", "augment"))]
            aug_text += [f"{k.replace('_', ' ')} {_fmt_value(train[k])}" for k in sorted(aug_keys)
                         if train[k] not in (None, False, 0, 0.0, {}, [])]
            augs.append("; ".join(aug_text) or "none")
            rest = {k: v for k, v in train.items() if k not in shown_train and k not in aug_keys
                    and k not in ("crop_frames", "window_step")
                    and "warmup" not in k and "lr_" not in k
                    and not (k in train_defaults and _same(train_defaults[k], v))}
            rest.update({k: train[k] for k in ("patience", "min_epochs") if k in train})
            others.append(", ".join(f"{k.replace('_', ' ')} {_fmt_value(v)}" for k, v in rest.items()) or "none")
        epochs = np.array([r["result"].get("epochs", np.nan) for r in recs], dtype=float)
        best = np.array([r["result"].get("best_epoch", np.nan) for r in recs], dtype=float)
        rows.append({"model": name, "runs": len(recs), "input": joined(inputs), "windowing": joined(windows),
                     "settings that differ from the model's defaults": joined(changed),
                     "epochs run (min/median/max)": f"{np.nanmin(epochs):.0f} / {np.nanmedian(epochs):g} / "
                                                    f"{np.nanmax(epochs):.0f}",
                     "epoch cap": joined(caps), "best epoch (median)": f"{np.nanmedian(best):g}",
                     "batch size": joined(batches), "learning rate": joined(lrs), "augmentation": joined(augs),
                     "other training settings": joined(others)})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


#: Epochs at the end of a run that decide whether validation UAR was still rising.
RISING_WINDOW = 3


def _still_rising(history: Sequence[dict], window: int = RISING_WINDOW) -> bool:
    """True when validation UAR was still going up at the end of a run: its best value is in the last
    ``window`` epochs and the least-squares slope over those epochs is positive."""
    import numpy as np

    v = np.array([h.get("val_uar") for h in history if h.get("val_uar") is not None], dtype=float)
    if v.size < 2:
        return v.size == 1
    tail = v[-min(window, v.size):]
    slope = np.polyfit(np.arange(tail.size), tail, 1)[0] if tail.size > 1 else 0.0
    return bool(int(np.argmax(v)) >= v.size - tail.size and slope > 0)


def convergence_table(results):
    """How far each model's runs are from convergence, from the ``history`` in each run's result.json.

    Parameters
    ----------
    results : DataFrame, Study or path
        Runs as for :func:`run_configuration_table` (a :func:`run_grid` table, a Study or its folder).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``runs``, ``stopped early`` (runs stopped by patience before the cap),
        ``hit the epoch cap``, ``epoch cap``, ``epochs run (median)``, ``best epoch (median)``,
        ``best epoch = last epoch`` (runs), ``still rising at the end`` (runs whose validation UAR
        rose over the last :data:`RISING_WINDOW` epochs, with its best among them), and
        ``share not converged`` (runs that hit the cap while still rising).
    """
    import numpy as np
    import pandas as pd

    rows = []
    by_model: dict[str, list[dict]] = {}
    for rec in _run_records(results):
        by_model.setdefault(rec["model"], []).append(rec)
    for name, recs in by_model.items():
        cap = np.array([rec["config"].get("train", {}).get("epochs", np.nan) for rec in recs], float)
        run = np.array([rec["result"].get("epochs", len(rec["result"].get("history", []))) for rec in recs], float)
        best = np.array([rec["result"].get("best_epoch", np.nan) for rec in recs], float)
        early = np.array([bool(rec["result"].get("stopped_early")) for rec in recs])
        hit = (~early) & (run >= cap)
        rising = np.array([_still_rising(rec["result"].get("history", [])) for rec in recs])
        caps = sorted({int(c) for c in cap if c == c})
        rows.append({"model": name, "runs": len(recs), "stopped early": int(early.sum()),
                     "hit the epoch cap": int(hit.sum()), "epoch cap": "/".join(map(str, caps)),
                     "epochs run (median)": float(np.median(run)), "best epoch (median)": float(np.nanmedian(best)),
                     "best epoch = last epoch": int((best == run).sum()),
                     "still rising at the end": int(rising.sum()),
                     "share not converged": float((hit & rising).mean())})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def undecidable_margin(results, *, metric: str = "uar") -> float:
    """The median, over (variant, protocol) groups, of the 95 % t-interval half-width of the mean
    ``metric`` over runs (a fraction): differences between two models smaller than this cannot be
    told from the spread of the runs. NaN when no group has two runs."""
    import numpy as np

    from .metrics import spread

    keys = [k for k in ("variant", "protocol") if k in results.columns] or ["model"]
    halves = []
    for _, g in results.groupby(keys):
        v = g[metric].dropna().to_numpy(float)
        if v.size > 1:
            s = spread(v)
            halves.append((s["high"] - s["low"]) / 2)
    return float(np.median(halves)) if halves else float("nan")


def convergence_statement(results, profile, *, table=None) -> str:
    """One paragraph (Markdown) on how far a report's runs are from convergence, for the top of a report.

    Parameters
    ----------
    results : DataFrame
        The report's runs (:func:`run_grid`; ``uar`` column for the undecidable margin).
    profile : str or Profile
        Its profile; ``getattr(profile, "converged", False)`` says whether the profile is meant to
        train to convergence.
    table : DataFrame, optional
        :func:`convergence_table` of ``results`` when already computed.

    Returns
    -------
    str
        E.g. "**Convergence.** 7 of 40 runs stopped early; 33 hit the 8-epoch cap, 30 of them while
        validation UAR was still rising: these models are not converged, and differences below 12.3
        points cannot be decided at this profile."
    """
    from .profiles import get_profile

    prof = get_profile(profile) if isinstance(profile, str) else profile
    t = convergence_table(results) if table is None else table
    if t is None or not len(t):
        return "**Convergence.** No finished runs to judge."
    n, early, hit = int(t["runs"].sum()), int(t["stopped early"].sum()), int(t["hit the epoch cap"].sum())
    not_conv = int(round((t["share not converged"] * t["runs"]).sum()))
    caps = "/".join(sorted(set("/".join(t["epoch cap"].astype(str)).split("/")), key=lambda c: (len(c), c)))
    margin = undecidable_margin(results) if "uar" in getattr(results, "columns", []) else float("nan")
    if margin != margin:
        margin_text = "with one run per model the runs give no spread, so no difference between models can be decided"
    elif margin < 1e-3:
        margin_text = ("the runs of each model agree to the last utterance, so their spread cannot size which "
                       "differences are decidable")
    else:
        margin_text = (f"differences below {100 * margin:.1f} points (the median 95 % half-width of a model's mean "
                       f"UAR over its runs here) cannot be decided at this profile")
    declared = bool(getattr(prof, "converged", False))
    text = (f"**Convergence.** Profile **{prof.name}** is "
            f"{'meant to train until early stopping' if declared else 'not meant to converge (it is a reduced profile)'}. "
            f"{early} of {n} runs stopped early; {hit} hit the {caps}-epoch cap"
            + (f", {not_conv} of them while validation UAR was still rising" if hit else "") + ". ")
    if not_conv / max(n, 1) > 0.25:
        text += (f"These models are not converged: their scores understate what longer training reaches, "
                 f"rankings between them may change with it, and {margin_text}.")
    elif hit / max(n, 1) > 0.5:
        text += (f"Most runs were stopped by the cap, not by early stopping, so they may not be converged "
                 f"(validation UAR had stopped rising in {hit - not_conv} of them); {margin_text}.")
    elif hit:
        text += f"Most runs stopped on their own, but {hit} were cut off by the cap; {margin_text}."
    else:
        text += f"Every run stopped on its own (early stopping on the validation speakers); {margin_text}."
    return text


def listener_correlation(predictions, *, by: str = "variant", column: str = "recognition"):
    """Spearman correlation between the listeners' recognition rate of an utterance and how often a
    model classifies it correctly, computed for each model on its own.

    Each model's predictions are reduced to one value per utterance (the share of that model's runs,
    e.g. seeds, that got it right), so an utterance counts once per model; predictions of different
    models are never pooled as if they were independent observations.

    Parameters
    ----------
    predictions : DataFrame
        :func:`with_corpus` output (``utt_id``, ``correct``, ``column`` and ``by`` columns).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``utterances``, ``recognition min (%)``, ``recognition max (%)``,
        ``spearman rho``, ``p``.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    rows = []
    d = predictions[predictions[column].notna()]
    for name, g in d.groupby(by, sort=False):
        per = g.groupby("utt_id").agg(correct=("correct", "mean"), listeners=(column, "first"))
        if len(per) > 2 and per["correct"].nunique() > 1 and per["listeners"].nunique() > 1:
            rho, p = spearmanr(per["listeners"], per["correct"])
        else:
            rho, p = np.nan, np.nan
        rows.append({by: name, "utterances": len(per), "recognition min (%)": float(per["listeners"].min()),
                     "recognition max (%)": float(per["listeners"].max()), "spearman rho": float(rho),
                     "p": float(p)})
    return pd.DataFrame(rows).set_index(by) if rows else pd.DataFrame()


def paired_table(results, predictions, comparisons: Sequence[tuple], protocols: Sequence[str] | None = None, *,
                 metric: str = "uar", column: str = "variant", n_boot: int = 2000, seed: int = 0):
    """Paired differences ``b - a`` with their 95 % intervals and what each interval rules out.

    Parameters
    ----------
    results, predictions : pandas.DataFrame
        Runs and per-utterance predictions (:func:`run_grid`, :func:`sercore.baselines.run_baseline_grid`).
    comparisons : sequence of (a, b) or (a, b, description)
        Model names (values of ``column``); pairs with a model missing from ``results`` are skipped.
    protocols : sequence of str, optional
        Default: every protocol in ``results``.

    Returns
    -------
    pandas.DataFrame
        One row per comparison and protocol: ``comparison``, ``a``, ``b``, ``protocol``, ``difference``
        (points), ``low``, ``high`` (points), ``half-width`` (points), ``pairs``, ``pairs b > a``,
        ``interval`` (the method, :func:`sercore.metrics.paired_bootstrap`), ``what it rules out``.
    """
    import pandas as pd

    from .claims import rules_out

    have = set(results[column]) if len(results) else set()
    protocols = list(protocols) if protocols is not None else sorted(set(results["protocol"]))
    rows = []
    for comp in comparisons:
        a, b = comp[0], comp[1]
        what = comp[2] if len(comp) > 2 else f"{b} - {a}"
        if a not in have or b not in have:
            continue
        for protocol in protocols:
            sub = results[results["protocol"] == protocol]
            if not ({a, b} <= set(sub[column])):
                continue
            d = paired_difference(sub, a, b, metric=metric, column=column, protocol=protocol,
                                  predictions=predictions, n_boot=n_boot, seed=seed)
            rows.append({"comparison": what, "a": a, "b": b, "protocol": protocol,
                         "difference": 100 * d["mean"], "low": 100 * d["low"], "high": 100 * d["high"],
                         "half-width": 100 * d.get("half_width", (d["high"] - d["low"]) / 2),
                         "pairs": d["n"], "pairs b > a": d["wins"], "interval": d.get("method", ""),
                         "what it rules out": rules_out(d)})
    return pd.DataFrame(rows)


#: MIME type of a report's headline results (:func:`publish_headline`); HTML rendering ignores it, and
#: :func:`sercore.reports.run_notebooks` copies it into the manifest for ``reports/index.html``.
HEADLINE_MIME = "application/vnd.sercore.headline+json"


def headline_rows(summary, *, profile: str) -> list[dict]:
    """The rows :func:`publish_headline` publishes: per model and protocol, UAR with its interval."""
    from .baselines import BASELINES
    from .protocols import protocol_label

    rows = []
    for _, r in summary.iterrows():
        rows.append({"model": str(r["variant"]), "kind": "baseline" if r["variant"] in BASELINES else "network",
                     "protocol": str(r["protocol"]), "protocol_label": protocol_label(r["protocol"]),
                     "uar": float(r["uar"]), "uar_low": float(r["uar_low"]), "uar_high": float(r["uar_high"]),
                     "n_runs": int(r["n_runs"]), "profile": str(profile)})
    return rows


def publish_headline(summary, *, profile: str) -> list[dict]:
    """Hand a report's results table to ``reports/index.html``: emitted as a notebook output of type
    :data:`HEADLINE_MIME` (invisible in the HTML), which :func:`sercore.reports.run_notebooks` stores in
    the corpus's manifest. The index then shows every model's UAR on each corpus side by side."""
    from IPython.display import display

    rows = headline_rows(summary, profile=profile)
    display({HEADLINE_MIME: rows}, raw=True)
    return rows


def results_display(summary, *, digits: int = 1):
    """A results table for a report: one row per model and protocol, UAR and WA in % with their 95 %
    intervals, the runs behind them and the interval method, classical baselines marked as such.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summary_table`.
    """
    import pandas as pd

    from .baselines import BASELINES
    from .protocols import protocol_label

    def fmt(r, m):
        return f"{100 * r[m]:.{digits}f} [{100 * r[f'{m}_low']:.{digits}f}, {100 * r[f'{m}_high']:.{digits}f}]"

    rows = []
    for _, r in summary.iterrows():
        rows.append({"model": r["variant"], "kind": "classical baseline" if r["variant"] in BASELINES else "network",
                     "protocol": protocol_label(r["protocol"]) + (" (leaky augmentation)" if "leaky" in r["protocol"] else ""),
                     "UAR % [95 %]": fmt(r, "uar"), "WA % [95 %]": fmt(r, "wa"),
                     "runs": int(r["n_runs"]), "folds x seeds": f"{int(r['n_folds'])} x {int(r['n_seeds'])}",
                     "interval resamples": f"{r.get('unit', '?')} and seeds"})
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    out["_order"] = out["kind"].eq("classical baseline")
    return out.sort_values(["_order", "protocol", "model"]).drop(columns="_order").set_index("model")


def paired_display(paired, *, digits: int = 1):
    """:func:`paired_table` for a report: protocols by name, the difference and its interval in one
    column, indexed by the comparison; the interval method is stated once beside the table."""
    import pandas as pd

    from .protocols import protocol_label

    if not len(paired):
        return pd.DataFrame()
    out = pd.DataFrame({
        "comparison": paired["comparison"], "protocol": paired["protocol"].map(protocol_label),
        "b - a (UAR points) [95 %]": [f"{r.difference:+.{digits}f} [{r.low:+.{digits}f}, {r.high:+.{digits}f}]"
                                      for r in paired.itertuples()],
        "half-width": paired["half-width"].round(digits), "pairs (b > a)": [
            f"{p} ({w})" for p, w in zip(paired["pairs"], paired["pairs b > a"])],
        "what it rules out": paired["what it rules out"]})
    return out.set_index("comparison")
