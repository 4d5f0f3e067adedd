"""Classical SER baselines: utterance-level functionals + a linear classifier, on the networks' folds.

Every SER reader expects these rows: openSMILE's eGeMAPS (88 functionals, Eyben et al. 2016) and
ComParE 2016 (6373) with a linear SVM or logistic regression, and the per-utterance statistics of a
40-band log-mel. :func:`run_baseline` writes them as runs of an ordinary study
(:mod:`sercore.study`), so :func:`sercore.study.load_study`, the summaries and the report tables show
them next to the networks, on the very same folds (:func:`sercore.protocols.make_splits` with the
profile's ``k`` and fold selection).

Feature sets (:data:`FEATURE_SETS`)
    ``"egemaps"``  openSMILE eGeMAPSv02 functionals, 88 per utterance.
    ``"compare"``  openSMILE ComParE_2016 functionals, 6373 per utterance.
    ``"logmel_stats"``  mean and standard deviation over time of a 40-band log-mel (n_fft 512, hop 160
    at 16 kHz, dB re full scale; :func:`logmel_stats`), 80 per utterance.

Each utterance is read whole (:func:`sercore.audio.load_audio` at 16 kHz, no crop, no padding).
Matrices are cached under ``data/processed`` like :func:`sercore.features.extract_features`.

Classifiers (:data:`CLASSIFIERS`)
    ``"svm"``  ``StandardScaler`` + ``LinearSVC`` (one-vs-rest, squared hinge).
    ``"lr"``   ``StandardScaler`` + multinomial ``LogisticRegression``.
    Both use ``class_weight="balanced"`` (the metric is UAR).

Model selection. For each fold, ``C`` is chosen from :data:`C_GRID` by the UAR on the fold's
*validation* rows (held-out speakers for the speaker-independent protocols) of a pipeline fitted on
the training rows only; the pipeline is then refitted with that ``C`` on training + validation rows
and scored once on the test rows. The scaler is part of the pipeline, so its statistics come from
the rows it is fitted on, never from the test rows.

Per-speaker normalisation (``speaker_norm=True``) standardises each speaker's feature vectors with
that speaker's own mean and standard deviation, computed over all of the speaker's utterances
(unlabelled; for a test speaker that means its test utterances). It is therefore its own protocol
variant, ``<protocol>+speaker-norm`` (label ``"..., per-speaker normalisation"``), never silently
mixed with the plain one.

>>> st = run_baseline("emodb", "egemaps_svm", "speaker_kfold", "quick")   # doctest: +SKIP
>>> st.results.query("model == 'egemaps_svm'")[["fold", "uar"]]            # doctest: +SKIP
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import AudioError, ConfigError

__all__ = [
    "FEATURE_SETS", "CLASSIFIERS", "BASELINES", "C_GRID", "BASELINE_CODE_VERSION", "SAMPLE_RATE",
    "logmel_stats", "feature_spec", "baseline_features", "baseline_name", "baseline_spec",
    "make_classifier", "select_c", "class_scores", "speaker_normalize", "run_baseline", "run_baseline_grid",
    "REPORT_BASELINES",
]

#: Bump when a change here alters the feature numbers; invalidates the baseline feature caches.
BASELINE_CODE_VERSION = "1"
#: Audio is read at this rate for every feature set.
SAMPLE_RATE = 16000
#: Feature set -> (short name used in model names, description).
FEATURE_SETS = {
    "egemaps": ("egemaps", "openSMILE eGeMAPSv02 functionals (88 per utterance)"),
    "compare": ("compare", "openSMILE ComParE_2016 functionals (6373 per utterance)"),
    "logmel_stats": ("logmel", "mean + std over time of 40 log-mel bands (n_fft 512, hop 160; 80 per utterance)"),
}
#: Classifier -> description.
CLASSIFIERS = {
    "svm": "StandardScaler + LinearSVC, balanced class weights, C chosen on the validation speakers",
    "lr": "StandardScaler + LogisticRegression, balanced class weights, C chosen on the validation speakers",
}
#: Model name in results tables -> (feature set, classifier, one-line description).
BASELINES = {
    "egemaps_svm": ("egemaps", "svm", "eGeMAPSv02 functionals + linear SVM"),
    "egemaps_lr": ("egemaps", "lr", "eGeMAPSv02 functionals + logistic regression"),
    "compare_svm": ("compare", "svm", "ComParE 2016 functionals + linear SVM"),
    "logmel_lr": ("logmel_stats", "lr", "40-band log-mel mean/std + logistic regression"),
}
#: Default grid of the inverse regularisation strength C.
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)

_LOGMEL = {"n_mels": 40, "n_fft": 512, "hop_length": 160}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

def logmel_stats(y: np.ndarray, sr: int = SAMPLE_RATE, n_mels: int = 40, n_fft: int = 512,
                 hop_length: int = 160) -> np.ndarray:
    """Mean and standard deviation over time of a log-mel spectrogram of a whole utterance.

    The spectrogram is :func:`sercore.features.compute` with a clip length equal to the utterance's,
    so every frame comes from the utterance (no padding to a fixed length, no crop).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono waveform at ``sr`` (:func:`sercore.audio.load_audio`), ``n >= 1``.
    sr, n_mels, n_fft, hop_length : int
        Spectrogram settings (see :class:`sercore.features.FeatureConfig`).

    Returns
    -------
    np.ndarray, float32, shape (2 * n_mels,)
        Per-band means (dB), then per-band standard deviations.
    """
    from .features import FeatureConfig, compute

    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.size == 0:
        raise ConfigError("logmel_stats got an empty waveform")
    cfg = FeatureConfig(kind="logmel", sr=int(sr), duration=y.size / float(sr), n_fft=int(n_fft),
                        hop_length=int(hop_length), n_mels=int(n_mels))
    S = compute(y, cfg)[:, :, 0]
    return np.concatenate([S.mean(axis=1), S.std(axis=1)]).astype(np.float32)


def _opensmile_set(feature_set: str):
    import opensmile

    return {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}[feature_set]


_SMILES: dict[str, Any] = {}


def _smile(feature_set: str):
    """One ``opensmile.Smile`` per feature set and process (creating one costs ~0.1-0.4 s)."""
    if feature_set not in _SMILES:
        import opensmile

        _SMILES[feature_set] = opensmile.Smile(feature_set=_opensmile_set(feature_set),
                                               feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILES[feature_set]


def _check_feature_set(feature_set: str) -> None:
    if feature_set not in FEATURE_SETS:
        raise ConfigError(f"unknown baseline feature set {feature_set!r}; choose one of {sorted(FEATURE_SETS)}")


def feature_spec(feature_set: str) -> dict[str, Any]:
    """What defines a feature set's numbers (the cache key and the runs' ``config.json`` record it).

    Parameters
    ----------
    feature_set : {"egemaps", "compare", "logmel_stats"}

    Returns
    -------
    dict
        ``feature_set``, ``sr``, ``code_version``, and ``opensmile`` (package version) or the log-mel
        settings.
    """
    _check_feature_set(feature_set)
    spec: dict[str, Any] = {"feature_set": feature_set, "sr": SAMPLE_RATE, "code_version": BASELINE_CODE_VERSION}
    if feature_set == "logmel_stats":
        from .features import FEATURE_CODE_VERSION

        spec.update(_LOGMEL, feature_code_version=FEATURE_CODE_VERSION)
    else:
        import opensmile

        spec.update(opensmile=opensmile.__version__, opensmile_set=_opensmile_set(feature_set).name)
    return spec


def _baseline_file(path: str, feature_set: str) -> np.ndarray:
    """Features of one file (runs in feature worker processes); AudioError names the file."""
    y = load_audio_16k(path)
    if feature_set == "logmel_stats":
        x = logmel_stats(y, SAMPLE_RATE, **_LOGMEL)
    else:
        try:
            x = _smile(feature_set).process_signal(y, SAMPLE_RATE).to_numpy(np.float32).reshape(-1)
        except Exception as err:  # openSMILE raises plain RuntimeErrors
            raise AudioError(path, f"openSMILE could not process it ({type(err).__name__}: {err}); "
                                   "check or replace the file") from None
    if not np.all(np.isfinite(x)):
        raise AudioError(path, f"{feature_set} features are not finite ({int((~np.isfinite(x)).sum())} values); "
                               "the recording may be silent or corrupt; check or drop it")
    return x


def load_audio_16k(path: str) -> np.ndarray:
    """:func:`sercore.audio.load_audio` at :data:`SAMPLE_RATE`, whole utterance."""
    from .audio import load_audio

    return load_audio(path, sr=SAMPLE_RATE, require_speech=True)


def baseline_features(df: pd.DataFrame, feature_set: str, *, cache: bool = True, n_jobs: int | None = None,
                      progress: bool | None = None) -> np.ndarray:
    """Per-utterance feature vectors of every row of ``df``, cached under ``data/processed``.

    Parameters
    ----------
    df : pandas.DataFrame
        Utterance table (:func:`sercore.load_corpus`): columns ``path`` and, for the cache,
        ``corpus`` and ``utt_id``.
    feature_set : {"egemaps", "compare", "logmel_stats"}
    cache : bool
        Read/write ``data/processed/<corpus>-baseline-<feature_set>-<key>.npz`` (+ ``.json``
        manifest). The key covers :func:`feature_spec` (feature set, openSMILE version, code version)
        and the file list; the manifest records each file's size and modification time, and a
        mismatch recomputes (and replaces) the entry.
    n_jobs : int, optional
        Worker processes (default ``min(2, cpu count)``; small jobs run in this process), as in
        :func:`sercore.features.extract_features`.
    progress : bool, optional
        tqdm bar; default on unless :func:`sercore.config.quiet`.

    Returns
    -------
    np.ndarray, float32, shape (len(df), n_features)
        Row ``i`` belongs to ``df.iloc[i]``; finite.

    Raises
    ------
    AudioError
        A file cannot be read or yields non-finite features (the message names it).
    """
    from .config import quiet
    from .features import _Cache, _check_df, _corpus_name, _file_ids, _hash, _map_files, _unsort

    spec = feature_spec(feature_set)
    _check_df(df)
    show = (not quiet()) if progress is None else bool(progress)
    paths = [str(p) for p in df["path"]]
    if not paths:
        raise ConfigError("baseline_features got an empty table; pass the rows of sercore.load_corpus()")
    ids = _file_ids(df)
    entry = None
    if cache:
        stem = f"{_corpus_name(df)}-baseline-{feature_set}-{_hash([spec, sorted(ids)])}"
        entry = _Cache(stem, ids, paths, {"kind": "baseline", "spec": spec})
        n_feat = _cached_width(entry)
        if n_feat is not None:
            X_sorted = entry.load((n_feat,))
            if X_sorted is not None:
                return _unsort(X_sorted, entry.order)
    t0 = time.perf_counter()
    rows = _map_files(_baseline_file, [(p, feature_set) for p in paths], n_jobs, show,
                      desc=f"{feature_set} features")
    X = np.stack(rows).astype(np.float32, copy=False)
    if show or len(paths) >= 100:
        _say(f"{feature_set} features of {len(paths)} files: {time.perf_counter() - t0:.1f} s")
    if entry is not None:
        entry.save(X[entry.order], spec)
    return X


def _cached_width(entry) -> int | None:
    """Feature count recorded in a cache entry's manifest, or None when there is no usable manifest."""
    try:
        shape = json.loads(entry.manifest.read_text())["shape"]
        return int(shape[1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


# --------------------------------------------------------------------------------------------------
# Classifiers and model selection
# --------------------------------------------------------------------------------------------------

def baseline_name(feature_set: str, classifier: str) -> str:
    """Model name of a (feature set, classifier) pair: the :data:`BASELINES` name, e.g. ``"logmel_lr"``
    for ``("logmel_stats", "lr")``, or ``"<short>_<classifier>"`` for a pair not listed there."""
    _check_feature_set(feature_set)
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"unknown baseline classifier {classifier!r}; choose one of {sorted(CLASSIFIERS)}")
    for name, (fs, clf, _) in BASELINES.items():
        if (fs, clf) == (feature_set, classifier):
            return name
    return f"{FEATURE_SETS[feature_set][0]}_{classifier}"


def baseline_spec(name: str) -> tuple[str, str, str]:
    """``(feature_set, classifier, description)`` of a baseline model name (:data:`BASELINES`, or any
    ``<short feature set>_<classifier>`` such as ``"compare_lr"``)."""
    if name in BASELINES:
        return BASELINES[name]
    short = {v[0]: k for k, v in FEATURE_SETS.items()}
    head, _, clf = name.rpartition("_")
    if head in short and clf in CLASSIFIERS:
        fs = short[head]
        return fs, clf, f"{FEATURE_SETS[fs][1]} + {CLASSIFIERS[clf].split(',')[0]}"
    raise ConfigError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)} or "
                      f"<{'|'.join(short)}>_<{'|'.join(CLASSIFIERS)}>")


def make_classifier(classifier: str, C: float, seed: int = 0):
    """An unfitted ``Pipeline(StandardScaler, classifier)`` with balanced class weights.

    Parameters
    ----------
    classifier : {"svm", "lr"}
    C : float
        Inverse regularisation strength.
    seed : int
        ``random_state`` of the solver (the fits are deterministic for a given seed).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if classifier == "svm":
        clf = LinearSVC(C=float(C), class_weight="balanced", dual=True, max_iter=20000, random_state=seed)
    elif classifier == "lr":
        clf = LogisticRegression(C=float(C), class_weight="balanced", max_iter=5000, random_state=seed)
    else:
        raise ConfigError(f"unknown baseline classifier {classifier!r}; choose one of {sorted(CLASSIFIERS)}")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def _fit(classifier: str, C: float, X: np.ndarray, y: np.ndarray):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    model = make_classifier(classifier, C)
    with warnings.catch_warnings():
        # tiny C on few rows: liblinear/lbfgs may stop at max_iter; the validation UAR judges the result
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model


def class_scores(model, X: np.ndarray, num_classes: int) -> np.ndarray:
    """Class probabilities, shape (len(X), num_classes), from a fitted pipeline.

    Logistic regression: ``predict_proba``. Linear SVM: a softmax over ``decision_function`` (an
    uncalibrated score whose argmax is the SVM's prediction). Classes absent from the training rows
    get probability 0.
    """
    classes = np.asarray(model.classes_, dtype=np.int64)
    if hasattr(model, "predict_proba") and hasattr(model[-1], "predict_proba"):
        p = model.predict_proba(X)
    else:
        d = np.asarray(model.decision_function(X), dtype=np.float64)
        if d.ndim == 1:  # two classes: one score for classes_[1]
            d = np.stack([-d, d], axis=1)
        d = d - d.max(axis=1, keepdims=True)
        p = np.exp(d)
        p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((len(X), num_classes), dtype=np.float64)
    out[:, classes] = p
    return out


def select_c(X: np.ndarray, y: np.ndarray, train, val, classifier: str,
             grid: Sequence[float] = C_GRID) -> dict[str, Any]:
    """Choose ``C`` by validation UAR: fit on ``X[train]``, score on ``X[val]``; nothing else is read.

    Parameters
    ----------
    X : np.ndarray, shape (N, n_features)
    y : np.ndarray of int, shape (N,)
    train, val : array of int
        Row positions; the test rows must be in neither.
    classifier : {"svm", "lr"}
    grid : sequence of float
        Candidate values of C; ties go to the first (smallest, with the default ascending grid).

    Returns
    -------
    dict
        ``C`` (float), ``val_uar``, ``val_wa`` of the chosen C, and ``search``: a list of
        ``{"C", "val_uar", "val_wa"}`` for every candidate.
    """
    from .metrics import scores

    train, val = np.asarray(train, np.int64), np.asarray(val, np.int64)
    if not len(grid):
        raise ConfigError("the C grid is empty; pass at least one value")
    Xtr, ytr, Xva, yva = X[train], y[train], X[val], y[val]
    num_classes = int(y.max()) + 1
    search = []
    for C in grid:
        model = _fit(classifier, C, Xtr, ytr)
        s = scores(yva, model.predict(Xva), num_classes)
        search.append({"C": float(C), "val_uar": s["uar"], "val_wa": s["wa"]})
    best = max(range(len(search)), key=lambda i: (search[i]["val_uar"], -i))
    return {"C": search[best]["C"], "val_uar": search[best]["val_uar"], "val_wa": search[best]["val_wa"],
            "search": search}


def speaker_normalize(X: np.ndarray, speakers, eps: float = 1e-8) -> np.ndarray:
    """Standardise each speaker's rows with that speaker's own mean and standard deviation.

    Uses no labels, but every row of a speaker (for a test speaker: its test utterances), which is
    why results with it are labelled as their own protocol variant.

    Parameters
    ----------
    X : np.ndarray, shape (N, n_features)
    speakers : array-like of str, shape (N,)
    eps : float
        Floor of the standard deviation (a constant feature or a one-utterance speaker gives 0).

    Returns
    -------
    np.ndarray, float32, shape (N, n_features)
    """
    X = np.asarray(X, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    if len(speakers) != len(X):
        raise ConfigError(f"speaker_normalize: {len(speakers)} speakers for {len(X)} rows")
    out = np.empty_like(X)
    for spk in np.unique(speakers):
        rows = speakers == spk
        mu, sd = X[rows].mean(axis=0), X[rows].std(axis=0)
        out[rows] = (X[rows] - mu) / np.maximum(sd, eps)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Studies
# --------------------------------------------------------------------------------------------------

def run_baseline(corpus: str, name: str, protocol: str = "speaker_kfold", profile="quick", *,
                 study: str | None = None, df: pd.DataFrame | None = None, root: str | Path | None = None,
                 folds: Sequence[int] | int | None = None, k: int | None = None,
                 results_root: str | Path | None = None, split_seed: int = 0, speaker_norm: bool = False,
                 progress: bool | None = None, c_grid: Sequence[float] = C_GRID,
                 n_jobs: int | None = None, cross: str | None = None, cross_root: str | Path | None = None,
                 cross_df: pd.DataFrame | None = None, emotions: Sequence[str] | None = None):
    """Run a classical baseline on every selected fold of ``protocol``, as runs of a study; resumable.

    The folds are those :func:`sercore.study.run_study` uses for a network with the same corpus,
    protocol, profile and ``split_seed``. Each fold becomes ``<study dir>/runs/<run id>/`` with
    ``config.json``, ``predictions.parquet`` and ``result.json`` in the networks' schema (every
    column of :data:`sercore.study.RESULT_COLUMNS`; ``seed`` 0, ``epochs`` and ``best_epoch`` 0,
    ``history`` empty, ``val_uar`` that of the chosen C), plus ``chosen_C``, ``c_search``,
    ``feature_set``, ``classifier`` and ``feature_spec``. ``n_train`` counts the rows the scored
    classifier was fitted on (training + validation). Runs with a ``result.json`` are skipped.

    Parameters
    ----------
    corpus : str
        Corpus name (:func:`sercore.load_corpus`).
    name : str
        Baseline model name (:data:`BASELINES`, e.g. ``"egemaps_svm"``; see :func:`baseline_spec`).
    protocol : {"speaker_kfold", "loso", "random"}
    profile : str or Profile
        Supplies ``k`` and which folds run (:mod:`sercore.profiles`).
    study : str, optional
        Study name (folder); default the profile's name, so the rows join the networks' study.
    df : DataFrame, optional
        Corpus table to use instead of ``load_corpus(corpus, root)``.
    root : path, optional
        Corpus folder.
    folds : int or sequence of int, optional
        As in :func:`sercore.study.run_study`.
    k : int, optional
        Folds of ``speaker_kfold``/``random`` (default: the profile's).
    results_root : path, optional
        Root of result folders (default ``config.results_dir()``).
    split_seed : int
        Seed of the protocol's shuffling (as in :func:`sercore.study.run_study`).
    speaker_norm : bool
        Standardise each speaker's features by its own statistics (:func:`speaker_normalize`);
        results carry the protocol ``<protocol>+speaker-norm``.
    progress : bool, optional
        Feature-extraction progress bar (default: on unless :func:`sercore.config.quiet`).
    c_grid : sequence of float
        Candidates of C (:func:`select_c`).
    n_jobs : int, optional
        Feature worker processes (:func:`baseline_features`).
    cross, cross_root, cross_df, emotions : optional
        Cross-corpus evaluation, as in :func:`sercore.study.run_study`: both corpora restricted to
        their shared emotions, and each fold's classifier also scored on the whole target corpus (a
        second run folder, protocol ``<protocol>+to-<cross>``).

    Returns
    -------
    sercore.study.Study
        The whole study's tables (networks' runs included).
    """
    from . import __version__, git_commit
    from .checkpoint import atomic_write_json
    from .corpora import load_corpus
    from .metrics import confusion_matrix, scores
    from .profiles import get_profile
    from .protocols import SPEAKER_NORM_SUFFIX, make_splits, protocol_label
    from .study import _hash, _say as study_say, _select_folds, _write_table, collect, study_dir

    feature_set, classifier, _ = baseline_spec(name)
    prof = get_profile(profile)
    k = int(k or prof.k)
    protocol_label(protocol)  # validates the name
    if "+" in protocol:
        raise ConfigError(f"protocol {protocol!r}: pass the plain protocol and speaker_norm=True for "
                          f"'{protocol.split('+')[0]}{SPEAKER_NORM_SUFFIX}'")
    if df is None:
        df = load_corpus(corpus, root)
    df = df.reset_index(drop=True)
    from .crosscorpus import pair_corpora

    df, df_t = pair_corpora(df, cross, cross_root, cross_df, emotions)
    labels = sorted(df["emotion"].astype(str).unique())
    y = df["emotion"].astype(str).map({lab: i for i, lab in enumerate(labels)}).to_numpy(np.int64)
    splits = make_splits(df, protocol, k=k, seed=split_seed)
    folds = _select_folds(folds, prof, len(splits), f"{protocol} on {corpus}")
    run_protocol = protocol + (SPEAKER_NORM_SUFFIX if speaker_norm else "")
    grid = [float(c) for c in c_grid]

    spec = feature_spec(feature_set)
    sdir = study_dir(corpus, study or prof.name, results_root)
    config_core = {"feature_set": feature_set, "classifier": classifier, "feature_spec": spec, "c_grid": grid,
                   "speaker_norm": bool(speaker_norm), "k": k, "split_seed": split_seed, "labels": labels,
                   "n_utterances": len(df), "refit": "train+val", "baseline_code_version": BASELINE_CODE_VERSION}
    if df_t is not None:   # only cross-corpus studies carry the key, so other runs keep their hashes
        config_core["cross"] = {"corpus": cross, "n_utterances": len(df_t), "emotions": labels}
    config_hash = _hash(config_core)
    feature_key = _hash(spec)
    X = None
    for i, fold in enumerate(folds, 1):
        split = splits[fold]
        run_id = f"{name}-{run_protocol}-f{fold}-s0-{config_hash}"
        rdir = sdir / "runs" / run_id
        if (rdir / "result.json").exists():
            study_say(f"[{i}/{len(folds)}] {run_id}: finished earlier, skipped")
            continue
        if X is None:
            X = baseline_features(df, feature_set, progress=progress, n_jobs=n_jobs)
            if speaker_norm:
                X = speaker_normalize(X, df["speaker"].astype(str).to_numpy())
            if df_t is not None:
                X_t = baseline_features(df_t, feature_set, progress=progress, n_jobs=n_jobs)
                if speaker_norm:
                    X_t = speaker_normalize(X_t, df_t["speaker"].astype(str).to_numpy())
        config = {"corpus": corpus, "model": name, "protocol": run_protocol, "fold": fold, "seed": 0,
                  "profile": prof.name, "test_speakers": list(split.test_speakers),
                  "val_speakers": list(split.val_speakers), **config_core}
        atomic_write_json(rdir / "config.json", config)
        t0 = time.perf_counter()
        # C from the validation rows of a fit on the training rows; the test rows are not passed
        sel = select_c(X, y, split.train, split.val, classifier, grid)
        refit = np.sort(np.concatenate([split.train, split.val]))
        model = _fit(classifier, sel["C"], X[refit], y[refit])
        seconds = time.perf_counter() - t0
        # the test rows: scored once, by the refitted classifier
        probs = class_scores(model, X[split.test], len(labels))
        pred_idx = np.asarray(model.predict(X[split.test]), dtype=np.int64)
        test = scores(y[split.test], pred_idx, len(labels))
        rows = df.iloc[split.test]
        pred = pd.DataFrame({
            "run_id": run_id, "corpus": corpus, "model": name, "protocol": run_protocol, "fold": fold,
            "seed": 0, "utt_id": rows["utt_id"].astype(str).to_numpy(), "path": rows["path"].astype(str).to_numpy(),
            "speaker": rows["speaker"].astype(str).to_numpy(), "true": y[split.test], "pred": pred_idx})
        pred["true_label"] = [labels[j] for j in pred["true"]]
        pred["pred_label"] = [labels[j] for j in pred["pred"]]
        for j, lab in enumerate(labels):
            pred[f"p_{lab}"] = probs[:, j]
        _write_table(pred, rdir / "predictions.parquet")
        res = {
            "corpus": corpus, "model": name, "protocol": run_protocol, "protocol_label": protocol_label(run_protocol),
            "fold": fold, "seed": 0, "test_speakers": ",".join(split.test_speakers),
            "val_speakers": ",".join(split.val_speakers), "epochs": 0, "best_epoch": 0, "stopped_early": False,
            "wa": test["wa"], "uar": test["uar"], "macro_f1": test["macro_f1"], "val_uar": sel["val_uar"],
            "n_train": int(refit.size), "n_val": int(split.val.size), "n_test": int(split.test.size),
            "train_seconds": seconds, "feature_key": feature_key, "config_hash": config_hash,
            "profile": prof.name, "run_id": run_id, "sercore_version": __version__, "git_commit": git_commit(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "labels": labels, "history": [],
            "confusion": confusion_matrix(y[split.test], pred_idx, len(labels)).tolist(), "resumed": False,
            "chosen_C": sel["C"], "c_search": sel["search"], "feature_set": feature_set, "classifier": classifier,
            "feature_spec": spec, "n_fit_for_C": int(split.train.size),
        }
        if df_t is not None:   # the same classifier on the other corpus, written before the run is marked done
            _score_cross_baseline(model, X_t, df_t, labels, res, config, sdir, cross, name, run_protocol, fold,
                                  config_hash)
        atomic_write_json(rdir / "result.json", res)  # last: marks the run finished
        study_say(f"[{i}/{len(folds)}] {run_id}: test UAR {test['uar']:.3f} WA {test['wa']:.3f} "
                  f"(C {sel['C']:g}, val UAR {sel['val_uar']:.3f}, {seconds:.1f} s)")
    return collect(sdir)


def _score_cross_baseline(model, X_t: np.ndarray, df_t: pd.DataFrame, labels, res: dict, config: dict, sdir: Path,
                          target: str, name: str, protocol: str, fold: int, config_hash: str) -> dict:
    """Score a fitted baseline on the whole target corpus, written as its own run folder."""
    from .metrics import confusion_matrix, scores
    from .study import write_cross_run

    y_t = df_t["emotion"].astype(str).map({lab: i for i, lab in enumerate(labels)}).to_numpy(np.int64)
    pred_idx = np.asarray(model.predict(X_t), dtype=np.int64)
    ev = {**scores(y_t, pred_idx, len(labels)), "pred": pred_idx, "probs": class_scores(model, X_t, len(labels)),
          "confusion": confusion_matrix(y_t, pred_idx, len(labels))}
    return write_cross_run(sdir, target, name, protocol, fold, 0, config_hash, df_t, y_t, ev, labels, res, config)


#: The classical rows every results table of the reports carries, next to the networks.
REPORT_BASELINES = ("logmel_lr", "egemaps_svm", "compare_svm")


def run_baseline_grid(corpus: str, names: Sequence[str], protocols: Sequence[str], profile="quick", *,
                      name: str | None = None, results_root: str | Path | None = None, df: pd.DataFrame | None = None,
                      corpus_root: str | Path | None = None, progress: bool | None = None):
    """Every (baseline, protocol) of a report, as :func:`sercore.analysis.run_grid` returns networks' runs.

    Parameters
    ----------
    names : sequence of str
        Baseline model names (:data:`BASELINES`; :data:`REPORT_BASELINES` in the reports).
    protocols : sequence of str
    profile, name, results_root, df, corpus_root, progress
        As for :func:`run_baseline` (``name`` = study name, default the profile's, so the rows join the
        networks' study folder and folds).

    Returns
    -------
    results, predictions : pandas.DataFrame
        One row per fold (``seed`` 0: the classifiers are deterministic); one row per test utterance,
        both with ``variant`` (= the baseline's name) and ``study_dir`` columns (results).
    """
    from .profiles import get_profile

    prof = get_profile(profile)
    res, pred = [], []
    for base in names:
        for protocol in protocols:
            st = run_baseline(corpus, base, protocol, prof, study=name, df=df, root=corpus_root,
                              results_root=results_root, progress=progress)
            r = st.results[(st.results["model"] == base) & (st.results["protocol"] == protocol)]
            r = r.sort_values(["fold"]).assign(variant=base, study_dir=str(st.dir))
            res.append(r)
            if len(st.predictions):
                pred.append(st.predictions[st.predictions["run_id"].isin(r["run_id"])].assign(variant=base))
    results = pd.concat(res, ignore_index=True) if res else pd.DataFrame()
    predictions = pd.concat(pred, ignore_index=True) if pred else pd.DataFrame()
    return results, predictions
