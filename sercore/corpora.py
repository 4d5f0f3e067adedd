"""Speech emotion corpora as one tidy table: :func:`load_corpus` and :func:`list_corpora`.

Every corpus loads into the same :class:`pandas.DataFrame` layout (:data:`COLUMNS`), one row per
utterance, sorted by path. Labels come from each corpus's documented file-naming scheme; the audio
is not decoded, only its header is read (:func:`soundfile.info`) for ``duration`` and
``sample_rate``, so loading EmoDB takes a fraction of a second.

Where a corpus lives (first match wins):

1. the ``root`` argument of :func:`load_corpus`;
2. the environment variable ``SERCORE_<CORPUS>_DIR`` (e.g. ``SERCORE_EMODB_DIR``);
3. ``data/raw/<corpus>`` under :func:`sercore.config.data_dir`.

Examples
--------
>>> from sercore.corpora import load_corpus
>>> df = load_corpus("emodb", root="../shared/data/emodb")          # doctest: +SKIP
>>> df.emotion.value_counts().head(3)                                # doctest: +SKIP
emotion
anger      127
boredom     81
neutral     79
Name: count, dtype: int64
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import config
from .errors import AudioError, ConfigError, CorpusError

__all__ = [
    "CANONICAL_EMOTIONS",
    "COLUMNS",
    "CORPORA",
    "CorpusInfo",
    "corpus_dir",
    "list_corpora",
    "load_corpus",
    "read_emodb_ratings",
]

#: Emotion names used in the ``emotion`` column of every corpus (canonical English nouns).
CANONICAL_EMOTIONS: tuple[str, ...] = (
    "anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral", "calm", "surprise",
)

#: Columns of the table :func:`load_corpus` returns, in order. All are always present; a corpus
#: that lacks a field holds NaN/None there.
COLUMNS: tuple[str, ...] = (
    "utt_id", "path", "corpus", "speaker", "gender", "emotion", "text", "take", "intensity",
    "duration", "sample_rate", "recognition", "naturalness",
)


@dataclass(frozen=True)
class CorpusInfo:
    """What sercore knows about one corpus: where to get it and how its folder looks.

    Attributes
    ----------
    name : str
        Short name used everywhere (``"emodb"``).
    title : str
        Human-readable name and reference.
    homepage : str
        Official page to obtain it from.
    layout : str
        The folder layout the parser expects, relative to the corpus folder.
    how_to_get : str
        The command or steps that put the corpus in place.
    n_files : int or None
        Utterances :func:`load_corpus` finds in the complete release (None where it varies).
    """

    name: str
    title: str
    homepage: str
    layout: str
    how_to_get: str
    n_files: int | None = None


CORPORA: dict[str, CorpusInfo] = {
    info.name: info
    for info in (
        CorpusInfo("emodb", "EmoDB, Berlin Database of Emotional Speech (Burkhardt et al., 2005)",
                   "http://emodb.bilderbar.info/",
                   "wav/SSTTTEv.wav (e.g. wav/03a01Fa.wav), optional erkennung.txt",
                   "sercore data fetch emodb", n_files=535),
        CorpusInfo("ravdess", "RAVDESS speech (Livingstone & Russo, 2018)",
                   "https://zenodo.org/record/1188976",
                   "Actor_XX/03-01-EE-II-SS-RR-AA.wav (e.g. Actor_01/03-01-05-02-01-01-01.wav)",
                   "sercore data fetch ravdess", n_files=1440),
        CorpusInfo("cremad", "CREMA-D (Cao et al., 2014)",
                   "https://github.com/CheyneyComputerScience/CREMA-D",
                   "AudioWAV/1001_DFA_ANG_XX.wav and VideoDemographics.csv",
                   "download AudioWAV/ and VideoDemographics.csv from the CREMA-D repository "
                   "(git-lfs) into data/raw/cremad/"),
        CorpusInfo("tess", "TESS, Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, 2010)",
                   "https://doi.org/10.5683/SP2/E8H2MF",
                   "any folders holding OAF_<word>_<emotion>.wav / YAF_<word>_<emotion>.wav",
                   "download the TESS wav files from the Borealis dataverse and unpack them into "
                   "data/raw/tess/"),
        CorpusInfo("savee", "SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson, 2009)",
                   "http://kahlan.eps.surrey.ac.uk/savee/",
                   "AudioData/DC/a01.wav (per-speaker folders) or DC_a01.wav",
                   "request the AudioData archive from the SAVEE site (registration) and unpack it "
                   "into data/raw/savee/"),
        CorpusInfo("synthetic", "Synthetic EmoDB-like corpus from sercore.synth (full size)",
                   "", "wav/SSTTTEv.wav and metadata.csv", "sercore data synth --size full"),
        CorpusInfo("synthetic-small", "Synthetic EmoDB-like corpus from sercore.synth (small)",
                   "", "wav/SSTTTEv.wav and metadata.csv", "sercore data synth --size small"),
    )
}


def list_corpora() -> list[str]:
    """Names of the corpora :func:`load_corpus` understands.

    Returns
    -------
    list of str
        ``["emodb", "ravdess", "cremad", "tess", "savee", "synthetic", "synthetic-small"]``.

    Examples
    --------
    >>> from sercore.corpora import list_corpora
    >>> list_corpora()
    ['emodb', 'ravdess', 'cremad', 'tess', 'savee', 'synthetic', 'synthetic-small']
    """
    return list(CORPORA)


def _check_name(name: str) -> CorpusInfo:
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    return CORPORA[name]


def corpus_dir(name: str, root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The folder a corpus is looked for in, and why that one.

    Parameters
    ----------
    name : str
        Corpus name (see :func:`list_corpora`).
    root : path-like, optional
        Explicit folder; wins over everything else.

    Returns
    -------
    folder : pathlib.Path
        Absolute folder (it may not exist).
    source : str
        ``"root argument"``, ``"$SERCORE_<CORPUS>_DIR"`` or ``"default"``.

    Examples
    --------
    >>> from sercore.corpora import corpus_dir
    >>> folder, source = corpus_dir("emodb", root="/data/emodb")
    >>> str(folder), source
    ('/data/emodb', 'root argument')
    """
    _check_name(name)
    if root is not None:
        return Path(root).expanduser().resolve(), "root argument"
    var = config.corpus_env_var(name)
    if os.environ.get(var):
        return Path(os.environ[var]).expanduser().resolve(), f"${var}"
    return config.raw_dir(name).resolve(), "default"


# --------------------------------------------------------------------------------------------
# File-name parsers: one per corpus. Each takes a wav path and returns a dict of label columns,
# None for a genuine corpus file that sercore does not use (e.g. RAVDESS song), or raises
# ValueError saying which scheme the name breaks.
# --------------------------------------------------------------------------------------------

EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
                  "T": "sadness", "N": "neutral"}
#: EmoDB speakers and their gender, from the corpus documentation.
EMODB_SPEAKERS = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
                  "12": "male", "13": "female", "14": "female", "15": "male", "16": "female"}
_EMODB_RE = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")


def _parse_emodb(path: Path) -> dict | None:
    m = _EMODB_RE.match(path.stem)
    if not m or m.group(1) not in EMODB_SPEAKERS or not 1 <= int(m.group(2)[1:]) <= 10:
        raise ValueError("expected EmoDB's SSTTTEv.wav: speaker (03 08 09 10 11 12 13 14 15 16), "
                         "text a01..a10/b01..b10, emotion W L E A F T N, version letter")
    speaker, text, emo, take = m.groups()
    return dict(utt_id=path.stem, speaker=speaker, gender=EMODB_SPEAKERS[speaker],
                emotion=EMODB_EMOTIONS[emo], text=text, take=take, intensity=None)


RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness",
                    "05": "anger", "06": "fear", "07": "disgust", "08": "surprise"}
_RAVDESS_RE = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)$")


def _parse_ravdess(path: Path) -> dict | None:
    m = _RAVDESS_RE.match(path.stem)
    if not m or not 1 <= int(m.group(7)) <= 24:
        raise ValueError("expected RAVDESS's MM-VV-EE-II-SS-RR-AA.wav: modality 01-03, vocal "
                         "channel 01-02, emotion 01-08, intensity 01-02, statement 01-02, "
                         "repetition 01-02, actor 01-24")
    modality, channel, emo, intensity, statement, repetition, actor = m.groups()
    if modality != "03" or channel != "01":  # only audio-only speech; song/video files are skipped
        return None
    return dict(utt_id=path.stem, speaker=actor, gender="male" if int(actor) % 2 else "female",
                emotion=RAVDESS_EMOTIONS[emo], text=statement, take=repetition,
                intensity="normal" if intensity == "01" else "strong")


CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                   "NEU": "neutral", "SAD": "sadness"}
CREMAD_INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_CREMAD_RE = re.compile(r"^(1\d\d\d)_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)$")


def _parse_cremad(path: Path) -> dict | None:
    m = _CREMAD_RE.match(path.stem)
    if not m:
        raise ValueError("expected CREMA-D's AAAA_SSS_EEE_LL.wav: actor 1001-1091, sentence code "
                         "(e.g. DFA), emotion ANG DIS FEA HAP NEU SAD, level LO MD HI XX")
    actor, sentence, emo, level = m.groups()
    return dict(utt_id=path.stem, speaker=actor, gender=None, emotion=CREMAD_EMOTIONS[emo],
                text=sentence, take=None, intensity=CREMAD_INTENSITIES[level])


TESS_EMOTIONS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                 "neutral": "neutral", "ps": "surprise", "sad": "sadness"}
# A few released TESS files are named OA_/YA_ instead of OAF_/YAF_; the case also varies.
_TESS_RE = re.compile(r"^(OAF|YAF|OA|YA)_([A-Za-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)$",
                      re.IGNORECASE)


def _parse_tess(path: Path) -> dict | None:
    m = _TESS_RE.match(path.stem)
    if not m:
        raise ValueError("expected TESS's OAF_<word>_<emotion>.wav or YAF_<word>_<emotion>.wav "
                         "with emotion angry disgust fear happy neutral ps sad")
    speaker = m.group(1).upper()[:2] + "F"
    word, emo = m.group(2).lower(), m.group(3).lower()
    return dict(utt_id=f"{speaker}_{word}_{emo}", speaker=speaker, gender="female",
                emotion=TESS_EMOTIONS[emo], text=word, take=None, intensity=None)


SAVEE_EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral",
                  "sa": "sadness", "su": "surprise"}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_RE = re.compile(r"^(?:(DC|JE|JK|KL)_)?(a|d|f|h|n|sa|su)(\d\d)$")


def _parse_savee(path: Path) -> dict | None:
    m = _SAVEE_RE.match(path.stem)
    speaker = (m.group(1) or path.parent.name) if m else None
    if not m or speaker not in SAVEE_SPEAKERS:
        raise ValueError("expected SAVEE's DC_a01.wav or <speaker>/a01.wav: speaker DC JE JK KL, "
                         "emotion prefix a d f h n sa su, two-digit sentence number")
    _, emo, number = m.groups()
    # SAVEE numbers sentences within each emotion, so the code (e.g. "sa03") is the sentence id.
    return dict(utt_id=f"{speaker}_{emo}{number}", speaker=speaker, gender="male",
                emotion=SAVEE_EMOTIONS[emo], text=f"{emo}{number}", take=None, intensity=None)


_PARSERS: dict[str, Callable[[Path], dict | None]] = {
    "emodb": _parse_emodb, "ravdess": _parse_ravdess, "cremad": _parse_cremad,
    "tess": _parse_tess, "savee": _parse_savee,
}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def load_corpus(name: str, root: str | os.PathLike | None = None, *,
                on_error: str = "raise") -> pd.DataFrame:
    """Load a corpus's utterance table (labels, speakers, durations) without decoding audio.

    Parameters
    ----------
    name : str
        One of :func:`list_corpora`.
    root : path-like, optional
        Folder holding the corpus. Default: ``$SERCORE_<CORPUS>_DIR``, else ``data/raw/<name>``.
        For ``"synthetic"``/``"synthetic-small"`` a folder without ``metadata.csv`` is generated
        first with :func:`sercore.synth.generate_corpus` (``seed=0``).
    on_error : {"raise", "skip"}
        What to do with a wav whose name breaks the corpus's naming scheme or whose audio cannot
        be read (corrupt, empty): ``"raise"`` one error naming every such file, or ``"skip"``
        them with a warning.

    Returns
    -------
    pandas.DataFrame
        One row per utterance with RangeIndex, sorted by ``path``. ``df.attrs["truncated"]`` lists
        the files whose WAV header declares more frames than they hold (cut off during a copy; they
        are kept, with a warning naming them), and ``duration`` is what they really hold. Columns :data:`COLUMNS`:
        ``utt_id`` (unique str), ``path`` (absolute str), ``corpus``, ``speaker`` (str), ``gender``
        ("female"/"male"), ``emotion`` (one of :data:`CANONICAL_EMOTIONS`), ``text`` (sentence
        id), ``take``, ``intensity``, ``duration`` (seconds, float), ``sample_rate`` (Hz, int),
        ``recognition`` and ``naturalness`` (EmoDB listener ratings in %, NaN elsewhere).

    Raises
    ------
    CorpusError
        Unknown name, missing or empty folder, or a file name outside the naming scheme.
    AudioError
        One or more wavs that cannot be read (the message lists them all).
    ConfigError
        ``on_error`` is neither "raise" nor "skip".

    See Also
    --------
    list_corpora, corpus_dir, sercore.download.fetch

    Examples
    --------
    >>> from sercore.corpora import load_corpus
    >>> df = load_corpus("emodb", root="../shared/data/emodb")          # doctest: +SKIP
    >>> len(df), df.speaker.nunique(), df.emotion.nunique()             # doctest: +SKIP
    (535, 10, 7)
    >>> df.loc[0, ["utt_id", "speaker", "gender", "emotion", "text"]].tolist()  # doctest: +SKIP
    ['03a01Fa', '03', 'male', 'happiness', 'a01']
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error={on_error!r}; use 'raise' or 'skip'")
    info = _check_name(name)
    folder, source = corpus_dir(name, root)

    if name in ("synthetic", "synthetic-small"):
        rows = _synthetic_rows(name, folder)
    else:
        if not folder.is_dir():
            raise CorpusError(_missing_message(info, folder, source))
        rows = _scan(name, folder, on_error)

    df = pd.DataFrame(rows)
    df["corpus"] = name
    if name == "cremad":
        df["gender"] = _cremad_genders(folder, df["speaker"])
    durations, sample_rates, truncated = _audio_headers(name, df["path"], on_error)
    df["duration"], df["sample_rate"] = durations, sample_rates
    df = df[df["duration"].notna()]
    if df.empty:
        raise CorpusError(f"no readable {name} utterances in {folder}: every wav was skipped; "
                          f"replace them from the original corpus (`{info.how_to_get}`)")
    if name == "emodb":
        ratings = read_emodb_ratings(folder / "erkennung.txt")
        df = df.drop(columns=["recognition", "naturalness"], errors="ignore")
        df = df.merge(ratings, how="left", left_on="utt_id", right_index=True)
    df = _tidy(df)
    if df["utt_id"].duplicated().any():
        dup = df.loc[df["utt_id"].duplicated(keep=False), "path"].tolist()
        raise CorpusError(f"corpus {name!r} in {folder} holds the same utterance twice: "
                          f"{', '.join(dup[:6])}; delete the duplicate copies")
    df.attrs["truncated"] = truncated
    return df


def _missing_message(info: CorpusInfo, folder: Path, source: str) -> str:
    var = config.corpus_env_var(info.name)
    why = {"root argument": "the root argument",
           "default": f"the default folder (${var} is not set)"}.get(source, source)
    return (f"{info.name} not found: no folder {folder} (from {why}). Fix: `{info.how_to_get}`, "
            f"or set {var}=/path/to/{info.name}, or pass root=/path/to/{info.name} "
            "(CLI: --root). "
            f"Expected layout inside it: {info.layout}.")


def _is_hidden(path: Path, folder: Path) -> bool:
    """macOS resource forks (``._x.wav``, ``__MACOSX/``) and dot-folders that zips often carry."""
    return any(part.startswith((".", "__MACOSX")) for part in path.relative_to(folder).parts)


def _scan(name: str, folder: Path, on_error: str) -> list[dict]:
    info = CORPORA[name]
    if name == "emodb":
        if not (folder / "wav").is_dir():
            hint = f" (did you mean root={folder.parent}?)" if folder.name == "wav" else ""
            raise CorpusError(f"{folder} has no wav/ folder{hint}; EmoDB's layout is "
                              f"{info.layout}. "
                              "Point root (or $SERCORE_EMODB_DIR) at the folder that holds wav/, "
                              "or run `sercore data fetch emodb`.")
        files = sorted((folder / "wav").glob("*.wav"))
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()
                       and not _is_hidden(p, folder))
    parse = _PARSERS[name]
    rows, bad = [], []
    for path in files:
        try:
            row = parse(path)
        except ValueError as exc:
            bad.append(f"{path} ({exc})")
            continue
        if row is not None:
            rows.append(dict(row, path=str(path)))
    if bad:
        msg = (f"{len(bad)} file(s) in {folder} do not follow the {name} naming scheme: "
               + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        if on_error == "raise":
            raise CorpusError(msg + ". Rename or delete them, or load with on_error='skip'.")
        warnings.warn(msg + "; skipped.", stacklevel=3)
    if not rows:
        raise CorpusError(f"no {name} utterances found in {folder}; expected layout: "
                          f"{info.layout}. "
                          f"Fix: `{info.how_to_get}`, or point root/{config.corpus_env_var(name)} "
                          "at the right folder.")
    return rows


def _audio_headers(name: str, paths: pd.Series, on_error: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Duration (s) and sample rate of each file from its header; NaN/0 where unreadable. Third: the
    files shorter than their WAV header declares, as ``(path, declared_s, held_s)`` (a warning names them)."""
    import soundfile as sf

    from .audio import declared_frames

    durations = np.full(len(paths), np.nan)
    rates = np.zeros(len(paths), dtype=np.int64)
    bad, truncated = [], []
    for i, path in enumerate(paths):
        try:
            info = sf.info(path)
        except (RuntimeError, OSError) as exc:  # LibsndfileError is a RuntimeError
            bad.append((path, str(exc).strip() or type(exc).__name__))
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            bad.append((path, "holds no audio samples"))
            continue
        durations[i], rates[i] = info.frames / info.samplerate, info.samplerate
        declared = declared_frames(path)
        if declared is not None and declared > info.frames:
            truncated.append((str(path), declared / info.samplerate, info.frames / info.samplerate))
    if truncated:
        fetch = (f"`sercore data fetch {name} --force`" if name in ("emodb", "ravdess")
                 else "the original corpus")
        listing = "; ".join(f"{p} (header {d:.2f} s, holds {h:.2f} s)" for p, d, h in truncated[:5])
        warnings.warn(f"{len(truncated)} file(s) in corpus {name!r} are shorter than their header declares "
                      f"(cut off during a copy): {listing}{' ...' if len(truncated) > 5 else ''}. Fix: "
                      f"replace them from {fetch}", stacklevel=3)
    if bad:
        listing = "; ".join(f"{p} ({why})" for p, why in bad[:5]) + (" ..." if len(bad) > 5 else "")
        if on_error == "raise":
            fetch = (f"re-download the corpus (`sercore data fetch {name} --force`)"
                     if name in ("emodb", "ravdess") else "replace them from the original corpus")
            raise AudioError(bad[0][0], f"cannot read audio; {len(bad)} unreadable file(s) in "
                             f"corpus {name!r}: {listing}. Fix: {fetch}, or delete these files, "
                             "or load with on_error='skip'.")
        warnings.warn(f"skipped {len(bad)} unreadable file(s) in corpus {name!r}: {listing}",
                      stacklevel=3)
    return durations, rates, truncated


def read_emodb_ratings(path: str | os.PathLike) -> pd.DataFrame:
    """EmoDB's perception-test results (``erkennung.txt``), indexed by ``utt_id``.

    The file is Latin-1, tab-separated, with decimal commas and non-breaking-space padding; its
    columns are ``Nr.``, ``Satz`` (file name), ``erkannt`` (% of 20 listeners who recognised the
    intended emotion) and ``natuerlich`` (% who judged it natural). It lists 816 recordings; the
    535 in ``wav/`` are documented as those with recognition >= 80 % and naturalness >= 60 %, but
    42 of them have naturalness between 45 and 57 % (recognition >= 80 % holds for all).

    Parameters
    ----------
    path : path-like
        The ``erkennung.txt`` file. A missing file gives an empty table (so the merged columns
        are NaN), not an error.

    Returns
    -------
    pandas.DataFrame
        Index ``utt_id`` (e.g. "03a01Fa"), float columns ``recognition`` and ``naturalness`` (%).

    Examples
    --------
    >>> from sercore.corpora import read_emodb_ratings
    >>> r = read_emodb_ratings("../shared/data/emodb/erkennung.txt")   # doctest: +SKIP
    >>> r.loc["03a01Fa"].tolist()                                       # doctest: +SKIP
    [90.0, 75.0]
    """
    path = Path(path)
    empty = pd.DataFrame({"recognition": pd.Series(dtype=float),
                          "naturalness": pd.Series(dtype=float)},
                         index=pd.Index([], dtype=object, name="utt_id"))
    if not path.is_file():
        return empty
    rows = {}
    with open(path, encoding="latin-1") as f:
        header = f.readline().split("\t")
        if len(header) < 4 or header[1].strip() != "Satz":
            raise CorpusError(f"{path}: expected EmoDB's header 'Nr. Satz erkannt natuerlich', got "
                              f"{'|'.join(h.strip() for h in header)}; replace the file from the "
                              "original download.zip, or delete it (ratings become NaN)")
        for line_no, line in enumerate(f, start=2):
            fields = [x.strip().replace("\xa0", "") for x in line.split("\t")]
            if len(fields) < 4 or not fields[1]:
                continue
            try:
                rec, nat = (float(x.replace(",", ".")) for x in fields[2:4])
            except ValueError:
                raise CorpusError(f"{path}, line {line_no}: cannot read the ratings "
                                  f"{fields[2:4]}; replace the file from the original "
                                  "download.zip, or delete it") from None
            rows[Path(fields[1]).stem] = (rec, nat)
    if not rows:
        return empty
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["recognition", "naturalness"])
    table.index.name = "utt_id"
    return table


def _cremad_genders(folder: Path, speakers: pd.Series) -> pd.Series:
    """Map CREMA-D actor ids to gender with VideoDemographics.csv (columns ActorID, Sex)."""
    found = sorted(folder.rglob("VideoDemographics.csv"))
    if not found:
        warnings.warn(f"CREMA-D: no VideoDemographics.csv under {folder}; gender is NaN. Fix: put "
                      "VideoDemographics.csv from the CREMA-D repository into that folder.",
                      stacklevel=3)
        return pd.Series(None, index=speakers.index, dtype=object)
    demo = pd.read_csv(found[0], dtype=str)
    if not {"ActorID", "Sex"} <= set(demo.columns):
        raise CorpusError(f"{found[0]}: expected columns ActorID and Sex, got "
                          f"{list(demo.columns)}; "
                          "replace it with the file from the CREMA-D repository")
    sex = dict(zip(demo["ActorID"].str.strip(), demo["Sex"].str.strip().str.lower()))
    return speakers.map(sex)


def _synthetic_stamp(folder: Path) -> dict:
    """The generator's stamp (``synth.json``: version, seed, size), or {} where there is none."""
    import json

    try:
        return json.loads((folder / "synth.json").read_text())
    except (OSError, ValueError):
        return {}


def _synthetic_rows(name: str, folder: Path) -> list[dict]:
    meta = folder / "metadata.csv"
    stamp = _synthetic_stamp(folder)
    from .synth import GENERATOR_VERSION, generate_corpus

    # a corpus written by an older synthesiser is regenerated with its own seed
    if not meta.is_file() or (stamp and stamp.get("generator_version") != GENERATOR_VERSION):
        seed = stamp.get("seed", 0)
        generate_corpus(folder, size="small" if name == "synthetic-small" else "full", seed=seed,
                        progress=not config.quiet())
        if not meta.is_file():
            raise CorpusError(f"sercore.synth.generate_corpus did not write {meta}; delete "
                              f"{folder} and run `sercore data synth`")
    text_cols = ("utt_id", "path", "corpus", "speaker", "gender", "emotion", "text", "take",
                 "intensity")
    df = pd.read_csv(meta, dtype={c: str for c in text_cols})
    missing = {"utt_id", "path", "speaker", "emotion"} - set(df.columns)
    if missing:
        raise CorpusError(f"{meta} lacks column(s) {sorted(missing)}; delete {folder} and run "
                          f"`sercore data synth` to regenerate it")
    df["path"] = [str((folder / p).resolve()) for p in df["path"]]
    absent = [p for p in df["path"] if not os.path.isfile(p)]
    if absent:
        raise CorpusError(f"{meta} lists {len(absent)} wav file(s) that do not exist, e.g. "
                          f"{absent[0]}; delete {folder} and run `sercore data synth` to "
                          "regenerate it")
    return df.drop(columns=["duration", "sample_rate"], errors="ignore").to_dict("records")


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Put the columns in contract order and type, sorted by path, RangeIndex."""
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in ("recognition", "naturalness", "duration") else None
    df = df[list(COLUMNS)].sort_values("path", kind="stable").reset_index(drop=True)
    for col in ("gender", "take", "intensity"):  # all-missing label columns: None, not float NaN
        if df[col].isna().all():
            df[col] = pd.Series([None] * len(df), dtype=object)
    df["duration"] = df["duration"].astype(float)
    df["sample_rate"] = df["sample_rate"].astype(np.int64)
    df["recognition"] = df["recognition"].astype(float)
    df["naturalness"] = df["naturalness"].astype(float)
    unknown = set(df["emotion"].dropna()) - set(CANONICAL_EMOTIONS)
    if unknown:
        raise CorpusError(f"emotion label(s) {sorted(unknown)} are not canonical "
                          f"({', '.join(CANONICAL_EMOTIONS)}); fix the corpus metadata")
    return df
