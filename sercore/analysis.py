"""What the study notebooks compute, so that the notebooks stay thin (calls and figures only).

* Notebook set-up and display: :func:`setup_notebook`, :func:`md`, :func:`pct`.
* Corpus views: :func:`crop_table`, :func:`frames_lost`, :func:`one_per_emotion`.
* Training grids (resumable, shared between notebooks): :func:`run_grid`, :func:`classifiers`,
  :func:`default_models`.
* Tables with intervals: :func:`summary_table`, :func:`paired_difference`, :func:`history_table`.
* Error analysis: :func:`with_corpus`, :func:`per_run_scores`, :func:`load_run_model`, :func:`model_outputs`.

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
        os.environ["SERCORE_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    enable_compilation_cache()
    plots.set_style()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    if seed is not None:
        np.random.seed(seed)
    return Path(results_dir).expanduser().resolve() if results_dir else config.results_dir()


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


def default_models(profile: str) -> list[str]:
    """The classifiers notebooks 03 and 04 train under ``profile``: the profile's ``models`` (every
    classifier for ``full``; ``quick`` leaves out the three most expensive; two for ``smoke``)."""
    from .profiles import get_profile

    chosen = get_profile(profile).models
    return [m for m in classifiers() if chosen is None or m in chosen]


def run_grid(corpus: str, models: Sequence[str], protocols: Sequence[str], profile: str, *,
             seeds: Sequence[int] | None = None, results_root: str | os.PathLike | None = None,
             name: str | None = None, variant: str | None = None, corpus_root=None, df=None, seed: int = 0,
             **study_kw):
    """Train every (model, protocol) of a notebook with :func:`sercore.study.run_study`; resumable.

    Finished runs are reused (the study folder is ``<results_root>/<corpus>/<name or profile>``), so
    notebooks that need the same runs share them.

    Parameters
    ----------
    models, protocols : sequence of str
    profile : str
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
    for model in models:
        for protocol in protocols:
            use = list(seeds) if seeds is not None else [seed + s for s in prof.seeds_for(protocol)]
            st = run_study(corpus, model, protocol, profile, name=name, seeds=use, df=df,
                           results_root=results_root, **study_kw)
            run_protocol = protocol + (LEAKY_SUFFIX if study_kw.get("augment_before_split") else "")
            r = st.results[(st.results["model"] == model) & (st.results["protocol"] == run_protocol)]
            r = r[r["seed"].isin(use)]
            folds = study_kw.get("folds")
            if folds is not None:
                r = r[r["fold"].isin(list(range(folds)) if isinstance(folds, int) else list(folds))]
            # one run per (fold, seed): the latest if settings changed between calls
            r = r.sort_values("finished_at").drop_duplicates(["fold", "seed"], keep="last")
            r = r.sort_values(["fold", "seed"]).assign(variant=variant or model, study_dir=str(st.dir))
            res.append(r)
            if len(st.predictions):
                pred.append(st.predictions[st.predictions["run_id"].isin(r["run_id"])]
                            .assign(variant=variant or model))
    results = pd.concat(res, ignore_index=True) if res else pd.DataFrame()
    predictions = pd.concat(pred, ignore_index=True) if pred else pd.DataFrame()
    return results, predictions


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
        and ``attention`` (N, T) when asked.
    """
    import jax.numpy as jnp
    import numpy as np

    from .features import extract_features

    X = extract_features(rows, saved.feature_cfg, progress=False)
    Xn = saved.normalizer.apply(X)
    embs, weights = [], []
    for i in range(0, len(Xn), batch_size):
        xb = jnp.asarray(Xn[i:i + batch_size])
        if attention:
            z, w = saved.model.embed(xb, return_attention=True)
            weights.append(np.asarray(w))
        else:
            z = saved.model.embed(xb)
        embs.append(np.asarray(z))
    out = {"features": X, "embeddings": np.concatenate(embs)}
    if attention:
        out["attention"] = np.concatenate(weights)
    return out
