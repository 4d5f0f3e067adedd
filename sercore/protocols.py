"""Evaluation protocols: named split generators over a corpus table that cannot leak.

Each protocol takes the corpus DataFrame of :func:`sercore.load_corpus` (one row per utterance,
columns ``speaker``, ``gender``, ``emotion``) and returns a list of :class:`Split`, one per fold, of
positional row indices. Every fold has three disjoint parts:

- ``train`` — the rows the model, the normaliser and the augmentation see;
- ``val`` — rows held out *from the training side* for early stopping and checkpoint choice
  (for the speaker-independent protocols these are whole held-out speakers, not utterances);
- ``test`` — rows used once, after training, to report the fold's scores.

Protocols
---------
``random``
    Speaker-dependent stratified k-fold over utterances, as the source documents did (their
    "validation accuracy" numbers). The same speakers appear in train and test, so scores measure
    recognition of *known* voices; results are labelled ``speaker-dependent``.
``speaker_kfold``
    Speaker-independent k-fold: speakers are dealt to folds alternately by gender, so with EmoDB's
    5 women and 5 men and ``k=5`` each test fold is one man + one woman. The validation speakers of
    fold ``i`` are the test speakers of fold ``i+1``: every speaker is validation once.
``loso``
    Leave-one-speaker-out: one test speaker per fold; validation = ``n_val_speakers`` other
    speakers (both genders where possible).

Examples
--------
>>> splits = make_splits(df, "speaker_kfold", k=5, seed=0)            # doctest: +SKIP
>>> [s.test_speakers for s in splits]                                 # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ConfigError

#: Protocol name -> whether it is speaker-independent.
PROTOCOLS = {"random": False, "speaker_kfold": True, "loso": True}


@dataclass(frozen=True)
class Split:
    """One fold of a protocol: positional row indices of the corpus table.

    Attributes
    ----------
    protocol : str
        Protocol name (``"speaker_kfold"``, ...).
    fold : int
        Fold number, 0-based.
    train, val, test : np.ndarray of int64
        Sorted, pairwise disjoint row positions.
    test_speakers, val_speakers : tuple of str
        Speakers in the test and validation parts (for ``random`` all speakers may appear).
    """

    protocol: str
    fold: int
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    test_speakers: tuple[str, ...] = ()
    val_speakers: tuple[str, ...] = ()

    @property
    def speaker_independent(self) -> bool:
        return PROTOCOLS.get(self.protocol.split("+")[0], False)

    @property
    def label(self) -> str:
        """``"speaker-independent"`` or ``"speaker-dependent"``, for tables and plots."""
        return protocol_label(self.protocol)

    def __repr__(self) -> str:
        return (f"Split({self.protocol!r}, fold={self.fold}, n_train={self.train.size}, n_val={self.val.size}, "
                f"n_test={self.test.size}, test_speakers={self.test_speakers}, val_speakers={self.val_speakers})")


#: Suffix of a protocol variant whose features are standardised per speaker (each speaker's own
#: statistics, which for a test speaker come from its unlabelled test utterances).
SPEAKER_NORM_SUFFIX = "+speaker-norm"


def protocol_label(protocol: str) -> str:
    """Label of a protocol name for tables and plots.

    ``"speaker-independent"`` or ``"speaker-dependent"``; a protocol carrying
    :data:`SPEAKER_NORM_SUFFIX` adds ``", per-speaker normalisation"`` (e.g.
    ``"speaker_kfold+speaker-norm"`` -> ``"speaker-independent, per-speaker normalisation"``).
    A cross-corpus protocol (``"speaker_kfold+to-ravdess"``, :mod:`sercore.crosscorpus`) adds
    ``", tested on ravdess"``. Other suffixes (e.g. ``+leaky-augmentation``) keep the plain label.
    """
    base = protocol.split("+")[0]
    if base not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    label = "speaker-independent" if PROTOCOLS[base] else "speaker-dependent"
    if SPEAKER_NORM_SUFFIX in protocol:
        label += ", per-speaker normalisation"
    if "+to-" in protocol:
        label += ", tested on " + protocol.split("+to-", 1)[1].split("+")[0]
    return label


def _speaker_order(df: pd.DataFrame, seed: int) -> list[list[str]]:
    """Speakers grouped by gender (female, male, other), each group shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    genders = df.groupby("speaker", sort=True)["gender"].first()
    groups = []
    for g in ("female", "male"):
        groups.append(sorted(genders.index[genders == g]))
    groups.append(sorted(genders.index[~genders.isin(["female", "male"])]))
    return [list(rng.permutation(np.array(grp, dtype=object))) if grp else [] for grp in groups]


def _rows(df: pd.DataFrame, speakers) -> np.ndarray:
    return np.flatnonzero(df["speaker"].isin(list(speakers)).to_numpy()).astype(np.int64)


def _check_columns(df: pd.DataFrame, cols=("speaker", "emotion")) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"corpus table lacks column(s) {missing}; pass the DataFrame of sercore.load_corpus")


def speaker_kfold(df: pd.DataFrame, k: int = 5, seed: int = 0) -> list[Split]:
    """Speaker-independent k-fold, gender-balanced; validation = next fold's speakers.

    Parameters
    ----------
    df : DataFrame
        Corpus table with ``speaker`` and ``gender`` columns.
    k : int
        Number of folds; reduced to the number of speakers if larger (at least 3 speakers needed so
        that train, validation and test each get one).
    seed : int
        Shuffles speakers within each gender before dealing them to folds.
    """
    _check_columns(df, ("speaker", "gender", "emotion"))
    n_spk = df["speaker"].nunique()
    if n_spk < 3:
        raise ConfigError(f"speaker-independent protocols need >= 3 speakers, the corpus has {n_spk}")
    k = min(int(k), n_spk)
    if k < 3:
        raise ConfigError(f"speaker_kfold needs k >= 3 (test, validation and training folds), got k={k}")
    folds: list[list[str]] = [[] for _ in range(k)]
    pos = 0
    for group in _speaker_order(df, seed):
        for spk in group:
            folds[pos % k].append(spk)
            pos += 1
    splits = []
    for i in range(k):
        test_spk, val_spk = folds[i], folds[(i + 1) % k]
        train_spk = [s for j, f in enumerate(folds) if j not in (i, (i + 1) % k) for s in f]
        splits.append(Split("speaker_kfold", i, _rows(df, train_spk), _rows(df, val_spk), _rows(df, test_spk),
                            tuple(sorted(test_spk)), tuple(sorted(val_spk))))
    return splits


def loso(df: pd.DataFrame, seed: int = 0, n_val_speakers: int = 2) -> list[Split]:
    """Leave-one-speaker-out: one fold per speaker, ``n_val_speakers`` held-out validation speakers.

    Validation speakers are the next speakers in a gender-alternating order (female, male, female,
    ...), so with ``n_val_speakers=2`` they are one woman and one man where the corpus allows.
    """
    _check_columns(df, ("speaker", "gender", "emotion"))
    female, male, other = _speaker_order(df, seed)
    # interleave genders: f0 m0 f1 m1 ... then the rest
    order: list[str] = []
    for i in range(max(len(female), len(male))):
        order += ([female[i]] if i < len(female) else []) + ([male[i]] if i < len(male) else [])
    order += other
    n = len(order)
    if n < 2 + n_val_speakers - 1 or n < 3:
        raise ConfigError(f"loso with {n_val_speakers} validation speakers needs >= {n_val_speakers + 2} speakers, "
                          f"the corpus has {n}")
    speakers_sorted = sorted(order)
    splits = []
    for fold, spk in enumerate(speakers_sorted):
        i = order.index(spk)
        val_spk = [order[(i + j) % n] for j in range(1, n_val_speakers + 1)]
        train_spk = [s for s in order if s != spk and s not in val_spk]
        splits.append(Split("loso", fold, _rows(df, train_spk), _rows(df, val_spk), _rows(df, [spk]),
                            (spk,), tuple(sorted(val_spk))))
    return splits


def random_kfold(df: pd.DataFrame, k: int = 5, seed: int = 0, val_fraction: float = 0.15) -> list[Split]:
    """Speaker-dependent stratified k-fold over utterances (what the source documents reported).

    Each utterance is tested once; validation is a stratified ``val_fraction`` of each fold's training
    utterances. The same speakers are in train, validation and test: label results
    ``speaker-dependent``.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    _check_columns(df, ("emotion",))
    y = df["emotion"].astype(str).to_numpy()
    min_count = pd.Series(y).value_counts().min()
    if k > min_count:
        raise ConfigError(f"random k-fold with k={k} needs >= {k} utterances per emotion; the rarest has {min_count}")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = []
    speakers = df["speaker"].astype(str).to_numpy() if "speaker" in df else np.array([""] * len(df))
    for fold, (train_val, test) in enumerate(skf.split(np.zeros(len(y)), y)):
        train, val = train_test_split(train_val, test_size=val_fraction, stratify=y[train_val],
                                      random_state=seed + fold)
        splits.append(Split("random", fold, np.sort(train).astype(np.int64), np.sort(val).astype(np.int64),
                            np.sort(test).astype(np.int64), tuple(sorted(set(speakers[test]))),
                            tuple(sorted(set(speakers[val])))))
    return splits


def make_splits(df: pd.DataFrame, protocol: str, *, k: int = 5, seed: int = 0, **kwargs) -> list[Split]:
    """Splits of a named protocol (``"random"``, ``"speaker_kfold"``, ``"loso"``); see the module doc.

    Every split is checked with :func:`check_split` before it is returned.
    """
    if protocol == "random":
        splits = random_kfold(df, k=k, seed=seed, **kwargs)
    elif protocol == "speaker_kfold":
        splits = speaker_kfold(df, k=k, seed=seed)
    elif protocol == "loso":
        splits = loso(df, seed=seed, **kwargs)
    else:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    for s in splits:
        check_split(df, s)
    return splits


def check_split(df: pd.DataFrame, split: Split) -> None:
    """Raise ``AssertionError`` if a split leaks: overlapping rows, or (speaker-independent protocols)
    a speaker shared between train, validation and test."""
    tr, va, te = (set(map(int, a)) for a in (split.train, split.val, split.test))
    assert not (tr & va or tr & te or va & te), f"{split}: rows shared between train/val/test"
    assert tr and va and te, f"{split}: an empty part"
    if split.speaker_independent:
        spk = df["speaker"].to_numpy()
        s_tr, s_va, s_te = (set(spk[list(a)]) for a in (tr, va, te))
        assert not (s_tr & s_te), f"{split}: speakers {s_tr & s_te} in train and test"
        assert not (s_va & s_te), f"{split}: speakers {s_va & s_te} in validation and test"
        assert not (s_tr & s_va), f"{split}: speakers {s_tr & s_va} in train and validation"
