"""Studies: every (fold, seed) run of a model under a protocol, resumable, into one tidy results table.

Layout under :func:`sercore.config.results_dir` (``data/results``)::

    <corpus>/<study>/
        results.parquet, results.csv      one row per finished run (all models/protocols of the study)
        predictions.parquet               one row per test utterance per run
        runs/<run id>/
            config.json                   everything that defines the run
            checkpoint.npz                epoch checkpoint (state, optimiser, RNG, history, best state);
                                          only while the run is unfinished (deleted when it finishes)
            result.json                   written last: its presence means "finished"
            predictions.parquet
            model/                        saved best model (see sercore.predict)

A run id is ``<model>-<protocol>-f<fold>-s<seed>-<hash>``, the hash covering the feature, training,
model and augmentation settings. Re-running a study skips runs with a ``result.json`` and resumes a
run with only a checkpoint from its last finished epoch, so killing a study loses at most one epoch.

Leak guards: the normaliser is fitted on the training rows of each fold only, augmentation is applied
to training rows only, after the split; :func:`sercore.training.fit` never receives the test fold, and
the test fold is evaluated once after the best (validation) state is restored. The one deliberate
exception, ``augment_before_split=True``, exists to *demonstrate* the leak of source document 003: it
warns, and its protocol is labelled ``<protocol>+leaky-augmentation``.

>>> st = run_study("synthetic", "zhao2d", "speaker_kfold", profile="quick")   # doctest: +SKIP
>>> st.results[["fold", "uar"]]                                                 # doctest: +SKIP
>>> st.summary()                                                                # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import executors as _executors
from . import metrics
from .checkpoint import atomic_write_bytes, atomic_write_json
from .errors import ConfigError
from .profiles import Profile, get_profile

from .protocols import SPEAKER_NORM_SUFFIX  # noqa: F401 (runs standardised per speaker, a protocol variant)

LEAKY_SUFFIX = "+leaky-augmentation"

RESULT_COLUMNS = [
    "corpus", "model", "protocol", "protocol_label", "fold", "seed", "test_speakers", "val_speakers",
    "epochs", "best_epoch", "stopped_early", "wa", "uar", "macro_f1", "val_uar", "n_train", "n_val",
    "n_test", "train_seconds", "feature_key", "config_hash", "profile", "run_id", "sercore_version",
    "git_commit", "finished_at",
]


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _write_table(df: pd.DataFrame, path: Path) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Study:
    """A study folder and its tables.

    Attributes
    ----------
    dir : Path
    results : DataFrame
        One row per finished run; columns :data:`RESULT_COLUMNS`.
    predictions : DataFrame
        One row per test utterance per run: ``run_id``, ``corpus``, ``model``, ``protocol``, ``fold``,
        ``seed``, ``utt_id``, ``path``, ``speaker``, ``true``, ``pred`` (class indices),
        ``true_label``, ``pred_label``, ``p_<label>`` probabilities.
    labels : list of str
    """

    dir: Path
    results: pd.DataFrame
    predictions: pd.DataFrame
    labels: list[str] = field(default_factory=list)

    def summary(self, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Per (corpus, model, protocol): pooled scores with the speaker (or utterance) and seed bootstrap
        interval, and the spread over runs; see :func:`sercore.metrics.summarize`."""
        return metrics.summarize(self.results, self.predictions, n_boot=n_boot, seed=seed)

    def confusion(self, model: str | None = None, protocol: str | None = None, normalize: bool = False):
        """Confusion matrix pooled over the selected runs' test predictions (labelled DataFrame)."""
        return metrics.confusion_table(self._select(model, protocol), self.labels, normalize=normalize)

    def recall(self, model: str | None = None, protocol: str | None = None) -> pd.Series:
        """Per-class recall pooled over the selected runs."""
        return metrics.recall_table(self._select(model, protocol), self.labels)

    def history(self, run_id: str) -> pd.DataFrame:
        """Per-epoch training history of one run."""
        res = json.loads((self.dir / "runs" / run_id / "result.json").read_text())
        return pd.DataFrame(res["history"])

    def _select(self, model, protocol) -> pd.DataFrame:
        p = self.predictions
        if model is not None:
            p = p[p["model"] == model]
        if protocol is not None:
            p = p[p["protocol"] == protocol]
        return p


def _select_folds(folds: Sequence[int] | int | None, prof: Profile, n_splits: int, what: str) -> list[int]:
    """The folds to run: given explicitly (a list, or an int = the first ``folds``), else the profile's
    first ``prof.folds`` (all when None); a ConfigError names ``what`` if one is out of range."""
    if folds is None:
        folds = range(n_splits if prof.folds is None else min(prof.folds, n_splits))
    elif isinstance(folds, int):
        folds = range(min(folds, n_splits))
    folds = list(folds)
    if any(f < 0 or f >= n_splits for f in folds):
        raise ConfigError(f"folds {folds} out of range: {what} has {n_splits} folds")
    return folds


def study_dir(corpus: str, name: str, results_root: str | Path | None = None) -> Path:
    """``<results_root or config.results_dir()>/<corpus>/<name>``."""
    from .config import results_dir

    return Path(results_root or results_dir()) / corpus / name


def collect(directory: str | Path) -> Study:
    """Rebuild a study's tables from its finished runs and write ``results.parquet``/``.csv`` and
    ``predictions.parquet`` (atomically)."""
    directory = Path(directory)
    rows, preds, labels = [], [], []
    for result in sorted((directory / "runs").glob("*/result.json")):
        pfile = result.parent / "predictions.parquet"
        res = _read_run_file(result, lambda f: json.loads(f.read_text()))
        if pfile.exists():
            preds.append(_read_run_file(pfile, pd.read_parquet))
        rows.append({c: res.get(c) for c in RESULT_COLUMNS})
        labels = res.get("labels", labels)
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    if rows:
        _write_table(results, directory / "results.parquet")
        atomic_write_bytes(directory / "results.csv", results.to_csv(index=False).encode())
        _write_table(predictions, directory / "predictions.parquet")
    return Study(dir=directory, results=results, predictions=predictions, labels=list(labels))


def _read_run_file(path: Path, read):
    """``read(path)``, or a DataError naming the damaged file and how to redo only its run."""
    try:
        return read(path)
    except Exception as exc:  # a truncated json or parquet raises many types (pyarrow's included)
        from .errors import DataError

        raise DataError(f"{path} is damaged ({type(exc).__name__}: {exc}); delete the run folder "
                        f"{path.parent} and re-run the `sercore train` command that made it: only that "
                        "run is redone, the other runs are kept") from exc


def load_study(directory: str | Path) -> Study:
    """Read a study folder's tables (rebuilt from its runs, so they are always current)."""
    directory = Path(directory)
    if not (directory / "runs").is_dir():
        raise ConfigError(f"{directory} is not a study folder (no runs/ inside); run `sercore train` first "
                          "or pass the folder it printed")
    return collect(directory)


def feature_config_for(model: str, profile: Profile, features: dict | None = None):
    """Feature settings of a run: defaults < model's own (``model_info``) < profile < ``features``.

    The feature ``kind`` is always the model's (a profile cannot turn a raw-audio model into a
    spectrogram one).
    """
    from .features import FeatureConfig
    from .models import model_info

    info = model_info(model)
    if info.get("task", "classify") != "classify":
        raise ConfigError(f"model {model!r} is an autoencoder (task {info['task']!r}); studies train classifiers. "
                          "Train autoencoders directly, or use a fusion classifier such as 'ae_fusion'")
    own = dict(info.get("features", {}))
    prof = {k: v for k, v in profile.features.items() if k != "kind"}
    if own.get("kind") == "raw":  # spectrogram settings do not apply to waveforms
        prof = {k: v for k, v in prof.items() if k in ("sr", "duration", "crop")}
    return FeatureConfig(**{**own, **prof, **(features or {})})


def _durations(df: pd.DataFrame) -> np.ndarray:
    """Seconds of audio per row: the corpus table's ``duration`` column, else read from the files' headers."""
    if "duration" in df.columns and df["duration"].notna().all():
        return df["duration"].to_numpy(np.float64)
    import soundfile as sf

    from .errors import AudioError

    out = []
    for path in df["path"].astype(str):
        try:
            info = sf.info(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable header
            raise AudioError(f"{path}: cannot read the audio header ({exc}); replace or remove the file") from exc
        out.append(info.frames / info.samplerate)
    return np.asarray(out, np.float64)


def segment_settings(cfg_feat, segments: Mapping, durations) -> tuple[Any, int, int]:
    """Feature config holding utterances whole, and the crop and window hop in time steps.

    Parameters
    ----------
    cfg_feat : FeatureConfig
        The model's features (its ``duration`` is replaced).
    segments : mapping
        ``crop_s`` (training crop and scoring window, seconds), ``step_s`` (hop between scoring
        windows), ``max_s`` (longest stored utterance; longer ones keep their first ``max_s`` seconds).
    durations : array of float
        The corpus's utterance durations (seconds).

    Returns
    -------
    (FeatureConfig, crop, step)
        ``duration`` = the longest utterance rounded up to 0.25 s (at most ``max_s``, at least
        ``crop_s``); ``crop`` and ``step`` in frames (spectrograms) or samples (waveforms).
    """
    crop_s, step_s = float(segments["crop_s"]), float(segments.get("step_s", segments["crop_s"] / 2))
    if not (crop_s > 0 and step_s > 0):
        raise ConfigError(f"segments need crop_s > 0 and step_s > 0, got {dict(segments)}")
    longest = float(np.nanmax(np.asarray(durations, np.float64))) if len(durations) else crop_s
    duration = min(max(np.ceil(longest * 4) / 4, crop_s), float(segments.get("max_s", 12.0)))
    cfg = cfg_feat.replace(duration=float(max(duration, crop_s)))
    if cfg.kind == "raw":
        crop, step = int(round(crop_s * cfg.sr)), int(round(step_s * cfg.sr))
    else:
        crop, step = 1 + int(round(crop_s * cfg.sr / cfg.hop_length)), max(1, int(round(step_s * cfg.sr / cfg.hop_length)))
    return cfg, min(crop, cfg.shape[-2]), step


def trained_input_shape(model: str, profile: str | Profile, durations=None) -> tuple[int, ...]:
    """The input shape ``model`` is trained on under ``profile``: its fixed-length features, or the crop
    of a profile with ``segments`` (whose stored length depends on the corpus's ``durations``)."""
    prof = get_profile(profile)
    cfg = feature_config_for(model, prof)
    if not prof.segments:
        return cfg.shape
    cfg, crop, _ = segment_settings(cfg, prof.segments, [0.0] if durations is None else durations)
    return cfg.shape[:-2] + (crop, cfg.shape[-1])


def run_study(corpus: str = "synthetic", model: str = "zhao2d", protocol: str = "speaker_kfold",
              profile: str | Profile = "quick", *, name: str | None = None, df: pd.DataFrame | None = None,
              root: str | Path | None = None, folds: Sequence[int] | int | None = None,
              seeds: Sequence[int] | None = None, k: int | None = None, features: dict | None = None,
              train: dict | None = None, model_kwargs: dict | None = None, augment: dict | None = None,
              augment_before_split: bool = False, results_root: str | Path | None = None,
              progress: bool | None = None, on_epoch: Callable[[dict], None] | None = None,
              split_seed: int = 0, speaker_norm: bool = False, cross: str | None = None,
              cross_root: str | Path | None = None, cross_df: pd.DataFrame | None = None,
              emotions: Sequence[str] | None = None, executor=None) -> Study:
    """Train and test ``model`` on every selected fold and seed of ``protocol``; resumable.

    Parameters
    ----------
    corpus : str
        Corpus name (:func:`sercore.load_corpus`).
    model : str
        Model name (:func:`sercore.models.create`).
    protocol : {"speaker_kfold", "loso", "random"}
    profile : str or Profile
        ``"smoke"``, ``"quick"``, ``"standard"`` or ``"full"`` (:mod:`sercore.profiles`).
    name : str, optional
        Study name (folder); default = the profile's name.
    df : DataFrame, optional
        Corpus table to use instead of ``load_corpus(corpus, root)`` (e.g. a subset).
    folds : int or sequence of int, optional
        Which folds to run (default: the profile's first ``folds``, or all); an int = the first n.
    seeds : sequence of int, optional
        Model seeds (default: the profile's).
    k : int, optional
        Folds of ``speaker_kfold``/``random`` (default: the profile's).
    features, train, model_kwargs, augment : dict, optional
        Overrides of the profile's feature / training / augmentation settings, and extra model
        constructor arguments.
    augment_before_split : bool
        Leak demonstration only: augment every utterance, then split the noisy copies together with
        the originals (as source document 003 did). Warns; results are labelled
        ``<protocol>+leaky-augmentation``.
    results_root : path, optional
        Root of result folders (default ``config.results_dir()``).
    progress : bool, optional
        tqdm bars (default: only on an interactive terminal; one line per run otherwise).
    on_epoch : callable, optional
        Passed to :func:`sercore.training.fit` (tests interrupt runs with it).
    split_seed : int
        Seed of the protocol's speaker/utterance shuffling (fixed across model seeds).
    speaker_norm : bool
        Standardise every utterance with its own speaker's statistics instead of the training rows'
        (:func:`sercore.features.speaker_normalize`): a test speaker is then normalised with its own
        unlabelled test features. Its results are a protocol variant, ``<protocol>+speaker-norm``.
    cross : str, optional
        Cross-corpus evaluation (:mod:`sercore.crosscorpus`): both corpora are restricted to the
        emotions they share (or ``emotions``), and every trained network is also scored on the whole
        of corpus ``cross``, as a second run folder whose protocol is ``<protocol>+to-<cross>``
        (prediction rows carry the target corpus's name). Nothing of the target corpus is used in
        training, normalisation (except its own statistics under ``speaker_norm``) or model selection.
    cross_root, cross_df : optional
        The target corpus's folder or table (as ``root`` / ``df`` for the source).
    emotions : sequence of str, optional
        The classes of a cross-corpus study (default: every emotion both corpora label).
    executor : {"serial", "ray"} or executor object, optional
        Where the runs execute (:mod:`sercore.executors`): ``serial`` in this process, one after
        another; ``ray`` as one Ray task per unfinished (fold, seed), after this process has extracted
        (cached) the features. Default ``$SERCORE_EXECUTOR``, else serial. The run folders are the
        same either way; under Ray a failed run is reported (:class:`~sercore.errors.RunError`) after
        the others finish.

    Segments. Under a profile with ``segments`` (``standard``), features hold each utterance whole
    (padded to the corpus's longest, :func:`segment_settings`), training draws a random crop of
    ``crop_s`` seconds of each utterance every epoch, and validation and test utterances are scored by
    the mean logits of windows covering all of them (:func:`sercore.training.window_starts`).

    Returns
    -------
    Study
        The study's tables, including runs from earlier calls.
    """
    from . import __version__, git_commit
    from .corpora import load_corpus
    from .features import extract_augmented, extract_features, fit_normalizer, speaker_normalize, valid_steps
    from .models import create
    from .predict import save_model
    from .protocols import make_splits, protocol_label
    from .config import quiet
    from .training import TrainConfig, evaluate, fit

    prof = get_profile(profile, train=train, features=features)
    if augment is not None:
        prof = prof.replace(augment=augment or None)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    k = int(k or prof.k)
    name = name or prof.name
    show = (not quiet()) if progress is None else progress
    protocol_label(protocol)  # validates the name

    df_in, model_kwargs_in = df, model_kwargs   # as given: what a remote run receives
    if df is None:
        df = load_corpus(corpus, root)
    df = df.reset_index(drop=True)
    if cross is not None and augment_before_split:
        raise ConfigError("augment_before_split is a leak demonstration of one corpus; it cannot be "
                          "combined with cross-corpus evaluation (cross=...)")
    from .crosscorpus import pair_corpora

    df, df_t = pair_corpora(df, cross, cross_root, cross_df, emotions)
    labels = sorted(df["emotion"].astype(str).unique())
    cfg_feat = feature_config_for(model, prof, features)
    # the profile's per-model settings (e.g. window lengths that keep their duration at a coarser hop)
    model_kwargs = {**prof.model_kwargs.get(model, {}), **(model_kwargs or {})}
    tcfg = TrainConfig.from_dict({**prof.train})
    input_shape = cfg_feat.shape
    lengths = None
    lengths_t = None
    if prof.segments:
        both = _durations(df) if df_t is None else np.concatenate([_durations(df), _durations(df_t)])
        cfg_feat, crop, step = segment_settings(cfg_feat, prof.segments, both)
        tcfg = tcfg.replace(crop_frames=crop, window_step=step)
        input_shape = cfg_feat.shape[:-2] + (crop, cfg_feat.shape[-1])
        lengths = valid_steps(_durations(df), cfg_feat)
        if df_t is not None:
            lengths_t = valid_steps(_durations(df_t), cfg_feat)
    X = extract_features(df, cfg_feat, progress=show)
    X_t = None if df_t is None else extract_features(df_t, cfg_feat, progress=show)
    run_protocol = protocol
    aug = prof.augment
    if augment_before_split:
        warnings.warn("augment_before_split=True: noisy copies of test utterances will be in the training set. "
                      "This reproduces a LEAK for demonstration; its scores are inflated and labelled "
                      f"'{protocol}{LEAKY_SUFFIX}'.", UserWarning, stacklevel=2)
        _say(f"WARNING: LEAKY AUGMENTATION BEFORE SPLIT ({protocol}{LEAKY_SUFFIX}): scores are inflated by design")
        aug = aug or {"copies": 1, "snr_db": (10.0, 30.0)}
        X_aug = extract_augmented(df, cfg_feat, snr_db=tuple(aug.get("snr_db", (10.0, 30.0))),
                                  copies=int(aug.get("copies", 1)), seed=split_seed, progress=show)
        copies = int(aug.get("copies", 1))
        df_aug = pd.concat([df.assign(utt_id=df["utt_id"].astype(str) + f"~awgn{c}") for c in range(copies)],
                           ignore_index=True)
        df = pd.concat([df, df_aug], ignore_index=True)
        X = np.concatenate([X, X_aug])
        if lengths is not None:
            lengths = np.concatenate([lengths, np.tile(lengths, copies)])
        run_protocol = protocol + LEAKY_SUFFIX
        aug = None  # already in the pool
    if speaker_norm:
        run_protocol += SPEAKER_NORM_SUFFIX
    y = df["emotion"].astype(str).map({lab: i for i, lab in enumerate(labels)}).to_numpy(np.int32)
    splits = make_splits(df, protocol, k=k, seed=split_seed)
    folds = _select_folds(folds, prof, len(splits), f"{protocol} on {corpus}")

    sdir = study_dir(corpus, name, results_root)
    config_core = {"features": cfg_feat.to_dict(), "train": tcfg.to_dict(), "model_kwargs": model_kwargs or {},
                   "augment": aug, "k": k, "split_seed": split_seed, "labels": labels,
                   "n_utterances": len(df), "leaky": bool(augment_before_split),
                   "segments": prof.segments, "speaker_norm": bool(speaker_norm), "input_shape": list(input_shape)}
    if df_t is not None:   # only cross-corpus studies carry the key, so other runs keep their hashes
        config_core["cross"] = {"corpus": cross, "n_utterances": len(df_t), "emotions": labels}
    config_hash = _hash(config_core)
    remote = _executors.resolve(executor)
    if remote is not None:   # the same runs as below, one task each, in the executor's workers
        args = {"corpus": corpus, "model": model, "protocol": protocol, "profile": profile, "name": name,
                "df": df_in, "root": root, "k": k, "features": features, "train": train,
                "model_kwargs": model_kwargs_in, "augment": augment, "augment_before_split": augment_before_split,
                "results_root": str(sdir.parent.parent.resolve()), "on_epoch": on_epoch, "split_seed": split_seed,
                "speaker_norm": speaker_norm, "cross": cross, "cross_root": cross_root, "cross_df": cross_df,
                "emotions": emotions}
        jobs = [(rid, {**args, "folds": [f], "seeds": [s]}) for f in folds for s in seeds
                if not (sdir / "runs" / (rid := f"{model}-{run_protocol}-f{f}-s{s}-{config_hash}") / "result.json").exists()]
        if len(jobs) < len(folds) * len(seeds):
            _say(f"{len(folds) * len(seeds) - len(jobs)} of {len(folds) * len(seeds)} run(s) finished earlier, skipped")
        _executors.run_remote(remote, jobs, sdir)
        return collect(sdir)
    total = len(folds) * len(seeds)
    done = 0
    for fold in folds:
        split = splits[fold]
        for seed in seeds:
            done += 1
            run_id = f"{model}-{run_protocol}-f{fold}-s{seed}-{config_hash}"
            rdir = sdir / "runs" / run_id
            if (rdir / "result.json").exists():
                _say(f"[{done}/{total}] {run_id}: finished earlier, skipped")
                continue
            resumed = (rdir / "checkpoint.npz").exists()
            config = {"corpus": corpus, "model": model, "protocol": run_protocol, "fold": fold, "seed": seed,
                      "profile": prof.name, "test_speakers": list(split.test_speakers),
                      "val_speakers": list(split.val_speakers), **config_core}
            atomic_write_json(rdir / "config.json", config)

            # normalisation statistics and augmentation: training rows only, after the split
            normalizer = fit_normalizer(X, split.train, lengths=lengths)
            X_train, y_train = X[split.train], y[split.train]
            len_train = None if lengths is None else lengths[split.train]
            spk_train = df["speaker"].to_numpy()[split.train]
            if aug:
                copies = int(aug.get("copies", 1))
                X_noisy = extract_augmented(df.iloc[split.train], cfg_feat,
                                            snr_db=tuple(aug.get("snr_db", (10.0, 30.0))), copies=copies,
                                            seed=seed, progress=show)
                X_train = np.concatenate([X_train, X_noisy])
                y_train = np.concatenate([y_train, np.tile(y_train, copies)])
                spk_train = np.concatenate([spk_train, np.tile(spk_train, copies)])
                if len_train is not None:
                    len_train = np.concatenate([len_train, np.tile(len_train, copies)])
            part = (lambda rows: None if lengths is None else lengths[rows])
            if speaker_norm:   # each speaker's own statistics, test speakers' included (a labelled variant)
                X_train = speaker_normalize(X_train, spk_train, lengths=len_train)
                X_all = speaker_normalize(X, df["speaker"].to_numpy(), lengths=lengths)
                X_val, X_test = X_all[split.val], X_all[split.test]
            else:
                X_train = normalizer.apply(X_train)
                X_val, X_test = normalizer.apply(X[split.val]), None

            net = create(model, num_classes=len(labels), input_shape=input_shape, seed=seed,
                         **(model_kwargs or {}))
            t0 = time.perf_counter()
            result = fit(net, (X_train, y_train), (X_val, y[split.val]), tcfg.replace(seed=seed),
                         num_classes=len(labels), checkpoint=rdir / "checkpoint.npz",
                         checkpoint_meta={"run_id": run_id}, on_epoch=on_epoch, progress=show,
                         desc=f"{model} f{fold} s{seed}", train_lengths=len_train, val_lengths=part(split.val))
            # the test fold: used once, after the best validation state has been restored
            if X_test is None:
                X_test = normalizer.apply(X[split.test])
            test = evaluate(net, X_test, y[split.test], batch_size=tcfg.eval_batch_size,
                            lengths=part(split.test), crop_frames=tcfg.crop_frames, window_step=tcfg.window_step)

            _write_table(_prediction_table(run_id, corpus, model, run_protocol, fold, seed, df.iloc[split.test],
                                           y[split.test], test, labels), rdir / "predictions.parquet")
            res = {
                "corpus": corpus, "model": model, "protocol": run_protocol,
                "protocol_label": protocol_label(run_protocol), "fold": fold, "seed": seed,
                "test_speakers": ",".join(split.test_speakers), "val_speakers": ",".join(split.val_speakers),
                "epochs": result.epochs_run, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                "wa": test["wa"], "uar": test["uar"], "macro_f1": test["macro_f1"],
                "val_uar": result.best.get("val_uar"), "n_train": int(len(X_train)), "n_val": int(split.val.size),
                "n_test": int(split.test.size), "train_seconds": result.train_seconds,
                "feature_key": cfg_feat.key(), "config_hash": config_hash, "profile": prof.name, "run_id": run_id,
                "sercore_version": __version__, "git_commit": git_commit(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "labels": labels,
                "history": result.history, "confusion": test["confusion"].tolist(), "resumed": resumed,
            }
            save_model(rdir / "model", net, cfg_feat, labels, normalizer, model, model_kwargs,
                       extra={**{k_: res[k_] for k_ in ("corpus", "protocol", "fold", "seed", "uar", "wa", "val_uar",
                                                        "test_speakers", "run_id")},
                              "crop_frames": tcfg.crop_frames, "window_step": tcfg.window_step,
                              "speaker_norm": bool(speaker_norm)},
                       input_shape=input_shape)
            if df_t is not None:   # the same network on the other corpus; written first, so that the
                # within-corpus result.json (which marks the run finished) implies this one
                _score_cross(net, df_t, X_t, lengths_t, labels, normalizer, speaker_norm, tcfg, res, config,
                             sdir, cross, model, run_protocol, fold, seed, config_hash)
            atomic_write_json(rdir / "result.json", res)  # last: marks the run finished
            # the finished run lives on in result.json and model/; its checkpoint (optimiser state and
            # two copies of the weights, ~4x the model) would only fill the disk
            (rdir / "checkpoint.npz").unlink(missing_ok=True)
            collect(sdir)
            _say(f"[{done}/{total}] {run_id}: test UAR {test['uar']:.3f} WA {test['wa']:.3f} "
                 f"(best epoch {result.best_epoch}/{result.epochs_run}, val UAR {res['val_uar']:.3f}, "
                 f"{time.perf_counter() - t0:.0f} s{', resumed' if resumed else ''})")
    return collect(sdir)


def _prediction_table(run_id: str, corpus: str, model: str, protocol: str, fold: int, seed: int,
                      rows: pd.DataFrame, y_true: np.ndarray, test: Mapping, labels: Sequence[str]) -> pd.DataFrame:
    """One row per scored utterance: ids, true and predicted class, class probabilities."""
    pred = pd.DataFrame({
        "run_id": run_id, "corpus": corpus, "model": model, "protocol": protocol, "fold": fold,
        "seed": seed, "utt_id": rows["utt_id"].astype(str).to_numpy(), "path": rows["path"].astype(str).to_numpy(),
        "speaker": rows["speaker"].astype(str).to_numpy(), "true": np.asarray(y_true).astype(np.int64),
        "pred": np.asarray(test["pred"]).astype(np.int64)})
    pred["true_label"] = [labels[i] for i in pred["true"]]
    pred["pred_label"] = [labels[i] for i in pred["pred"]]
    for j, lab in enumerate(labels):
        pred[f"p_{lab}"] = np.asarray(test["probs"])[:, j]
    return pred


def _score_cross(net, df_t: pd.DataFrame, X_t: np.ndarray, lengths_t, labels: Sequence[str], normalizer,
                 speaker_norm: bool, tcfg, res: Mapping, config: Mapping, sdir: Path, target: str, model: str,
                 protocol: str, fold: int, seed: int, config_hash: str) -> dict:
    """Score a trained network on the whole target corpus and write that evaluation as its own run
    folder (protocol ``<protocol>+to-<target>``); returns its result record."""
    from .features import speaker_normalize
    from .training import evaluate

    y_t = df_t["emotion"].astype(str).map({lab: i for i, lab in enumerate(labels)}).to_numpy(np.int32)
    if speaker_norm:
        Xn = speaker_normalize(X_t, df_t["speaker"].to_numpy(), lengths=lengths_t)
    else:
        Xn = normalizer.apply(X_t)   # the source training rows' statistics
    ev = evaluate(net, Xn, y_t, batch_size=tcfg.eval_batch_size, lengths=lengths_t,
                  crop_frames=tcfg.crop_frames, window_step=tcfg.window_step)
    return write_cross_run(sdir, target, model, protocol, fold, seed, config_hash, df_t, y_t, ev, labels, res, config)


def write_cross_run(sdir: Path, target: str, model: str, protocol: str, fold: int, seed: int, config_hash: str,
                    df_t: pd.DataFrame, y_t: np.ndarray, ev: Mapping, labels: Sequence[str], res: Mapping,
                    config: Mapping) -> dict:
    """Write a trained classifier's scores on the whole target corpus as its own run folder (protocol
    ``<protocol>+to-<target>``), from the within-corpus run's record ``res`` and ``config``; used by
    networks and classical baselines alike. ``ev`` holds ``wa``, ``uar``, ``macro_f1``, ``confusion``,
    ``pred`` and ``probs``. Returns the result record."""
    from .crosscorpus import cross_protocol
    from .protocols import protocol_label

    xprotocol = cross_protocol(protocol, target)
    run_id = f"{model}-{xprotocol}-f{fold}-s{seed}-{config_hash}"
    rdir = sdir / "runs" / run_id
    atomic_write_json(rdir / "config.json", {**config, "protocol": xprotocol, "test_corpus": target})
    _write_table(_prediction_table(run_id, target, model, xprotocol, fold, seed, df_t, y_t, ev, labels),
                 rdir / "predictions.parquet")
    speakers = sorted(df_t["speaker"].astype(str).unique())
    out = {**res, "protocol": xprotocol, "protocol_label": protocol_label(xprotocol), "run_id": run_id,
           "test_speakers": ",".join(speakers), "wa": ev["wa"], "uar": ev["uar"], "macro_f1": ev["macro_f1"],
           "n_test": int(len(df_t)), "confusion": np.asarray(ev["confusion"]).tolist(), "test_corpus": target,
           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(rdir / "result.json", out)
    return out


def _windows(X: np.ndarray, lengths, crop: int, step: int) -> np.ndarray:
    """Every scoring window (:func:`sercore.training.window_starts`) of the rows of ``X``, stacked."""
    from .training import take_windows, window_starts

    rows, starts = window_starts(lengths, crop, step, X.shape[-2])
    return take_windows(X, rows, starts, crop)


def fold_autoencoders(corpus: str, profile: str, *, ae: str = "dense_ae", ae_kwargs: Mapping | None = None,
                      protocol: str = "speaker_kfold", folds: Sequence[int] | int | None = None, seed: int = 0,
                      results_root: str | Path | None = None, df=None, model: str = "baseline_cnn"):
    """One autoencoder per fold, trained on that fold's training rows only; weights saved, resumable.

    The test speakers' audio never reaches the autoencoder (seed 003 trained its autoencoders on all
    of RAVDESS + CREMA-D, which includes its own test utterances).

    Returns
    -------
    dict
        ``paths`` {fold: weights .npz for ``ae_fusion(encoder=...)``}, ``history`` (DataFrame with
        ``fold``, ``epoch``, ``train_mse``, ``val_mse``), ``folds`` (list of int).
    """
    from .corpora import load_corpus
    from .features import extract_features, fit_normalizer, valid_steps
    from .models import create, save_weights
    from .protocols import make_splits
    from .training import TrainConfig, fit_autoencoder

    prof = get_profile(profile)
    if df is None:
        df = load_corpus(corpus)
    df = df.reset_index(drop=True)
    cfg = feature_config_for(model, prof)
    tcfg = TrainConfig.from_dict(prof.train)
    lengths, crop, step = None, 0, 0
    if prof.segments:   # the classifier sees crops: the autoencoder learns every window of the training rows
        cfg, crop, step = segment_settings(cfg, prof.segments, _durations(df))
        lengths = valid_steps(_durations(df), cfg)
    splits = make_splits(df, protocol, k=prof.k, seed=0)
    folds = _select_folds(folds, prof, len(splits), f"{protocol} on {corpus}")
    X = None
    kwargs = dict(ae_kwargs or {})
    tag = json.dumps({"ae": ae, "kw": kwargs, "cfg": cfg.key(), "train": tcfg.to_dict(), "seed": seed,
                      "segments": prof.segments},
                      sort_keys=True)
    key = hashlib.sha1(tag.encode()).hexdigest()[:8]
    root = study_dir(corpus, f"{profile}-autoencoders", results_root)
    paths, hist = {}, []
    for fold in folds:
        path = root / f"{ae}-{protocol}-f{fold}-s{seed}-{key}.npz"
        hpath = path.with_suffix(".history.json")
        if not (path.exists() and hpath.exists()):
            if X is None:
                X = extract_features(df, cfg, progress=False)
            split = splits[fold]
            norm = fit_normalizer(X, split.train, lengths=lengths)
            X_tr, X_va = norm.apply(X[split.train]), norm.apply(X[split.val])
            if crop:
                X_tr = _windows(X_tr, lengths[split.train], crop, step)
                X_va = _windows(X_va, lengths[split.val], crop, step)
            net = create(ae, input_shape=X_tr.shape[1:], seed=seed, **kwargs)
            h = fit_autoencoder(net, X_tr, X_va,
                                epochs=tcfg.epochs, batch_size=tcfg.batch_size,
                                learning_rate=tcfg.learning_rate, patience=tcfg.patience, seed=seed)
            save_weights(net, path)
            atomic_write_bytes(hpath, h.to_json(orient="records").encode())
        paths[fold] = path
        hist.append(pd.read_json(hpath, orient="records").assign(fold=fold))
    return {"paths": paths, "history": pd.concat(hist, ignore_index=True), "folds": folds}
