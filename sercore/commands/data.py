"""``sercore data ...``: list, inspect, fetch and generate corpora.

Examples
--------
::

    sercore data list
    sercore data info emodb --root ../shared/data/emodb
    sercore data fetch emodb                      # or: --archive ~/Downloads/download.zip
    sercore data synth --size small
"""
from __future__ import annotations

import argparse

from ._args import int_range


def register(subparsers) -> None:
    """Add the ``data`` command group to the ``sercore`` parser."""
    # Corpus names are checked by load_corpus/fetch (CorpusError lists them), so that registering
    # this command does not import pandas and `sercore --help` stays fast.
    corpus_help = "emodb, ravdess, cremad, tess, savee, synthetic or synthetic-small"
    data = subparsers.add_parser("data", help="list, inspect, fetch and generate corpora",
                                 description="List, inspect, fetch and generate corpora.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    p = sub.add_parser("list", help="corpora, where each is looked for, and whether it is there")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="utterances, speakers, emotions and durations of a corpus")
    p.add_argument("corpus", metavar="CORPUS", help=corpus_help)
    p.add_argument("--root", metavar="PATH", help="corpus folder (default: $SERCORE_<CORPUS>_DIR, "
                   "else data/raw/<corpus>)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or misnamed files (with a warning) instead of failing")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="download a corpus (emodb, ravdess) into data/raw/<corpus>",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Download a corpus and install it where load_corpus looks.\n"
                                   "CREMA-D, TESS and SAVEE must be obtained by hand; this "
                                   "command says how.")
    p.add_argument("corpus", metavar="CORPUS", help=corpus_help)
    p.add_argument("--force", action="store_true", help="download again and replace it")
    p.add_argument("--archive", metavar="ZIP", help="install from a zip downloaded by hand")
    p.add_argument("--url", help="download from this URL (a mirror) instead of the official one")
    p.add_argument("--dest", metavar="PATH", help="install here instead of the default folder")
    p.add_argument("--sha256", help="expected SHA-256 of the archive")
    p.add_argument("--md5", help="expected MD5 of the archive")
    p.add_argument("--no-verify", action="store_true",
                   help="EmoDB: skip the per-file check of wav/ against the reference release")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("synth", help="generate the synthetic EmoDB-like corpus")
    p.add_argument("--size", choices=("full", "small"), default="full")
    p.add_argument("--seed", type=int_range(0), default=0, help="generator seed (>= 0, default 0)")
    p.add_argument("--root", metavar="PATH", help="output folder (default: data/raw/synthetic or "
                   "data/raw/synthetic-small)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("baseline", help="how hard is a corpus? speaker-independent accuracy of a "
                       "simple classifier (log-mel statistics + logistic regression)")
    p.add_argument("corpus", metavar="CORPUS", help=corpus_help)
    p.add_argument("--root", metavar="PATH", help="corpus folder (default as for `info`)")
    p.add_argument("--seed", type=int_range(0), default=0, help="fold shuffling seed (>= 0, default 0)")
    p.add_argument("--folds", type=int_range(2), default=5,
                   help="speaker folds (>= 2 and at most the number of speakers; default 5)")
    p.set_defaults(func=cmd_baseline)


def _counts(series, label: str) -> str:
    table = series.value_counts().rename_axis(label).reset_index(name="n")
    table["%"] = (100 * table["n"] / table["n"].sum()).round(1)
    return table.to_string(index=False)


def format_info(df, folder) -> str:
    """The text ``sercore data info`` prints for a corpus table (see :func:`load_corpus`)."""
    name = df["corpus"].iloc[0]
    dur = df["duration"]
    lines = [
        f"{name}: {len(df)} utterances, {df['speaker'].nunique()} speakers, "
        f"{df['emotion'].nunique()} emotions",
        f"folder: {folder}",
        *_completeness(df),
        "",
        _counts(df["emotion"], "emotion"),
        "",
    ]
    by_speaker = (df.groupby("speaker", dropna=False)
                    .agg(gender=("gender", "first"), n=("utt_id", "size"),
                         minutes=("duration", lambda d: round(d.sum() / 60, 1)))
                    .reset_index())
    lines += [by_speaker.to_string(index=False), ""]
    by_gender = (df.groupby(df["gender"].fillna("unknown"))
                   .agg(speakers=("speaker", "nunique"), n=("utt_id", "size"))
                   .reset_index())
    lines += [by_gender.to_string(index=False), ""]
    lines.append(f"duration (s): min {dur.min():.2f}  mean {dur.mean():.2f}  max {dur.max():.2f}  "
                 f"total {dur.sum():.1f} ({dur.sum() / 60:.1f} min)")
    rates = sorted(int(r) for r in df["sample_rate"].unique())
    lines.append("sample rate (Hz): " + ", ".join(map(str, rates)))
    if df["recognition"].notna().any():
        lines.append(f"listener recognition (%): mean {df['recognition'].mean():.1f}  "
                     f"min {df['recognition'].min():.0f}; naturalness (%): mean "
                     f"{df['naturalness'].mean():.1f}")
    return "\n".join(lines)


def _completeness(df) -> list[str]:
    """Lines saying that a known corpus is incomplete and which files are cut off (empty when neither)."""
    from ..corpora import CORPORA

    name = df["corpus"].iloc[0]
    info = CORPORA.get(name)
    lines = []
    if info is not None and info.n_files and len(df) < info.n_files:
        lines.append(f"INCOMPLETE: found {len(df)} of the {info.n_files} files of the {name} release "
                     f"({info.n_files - len(df)} missing); results on it are not results on {name}. "
                     f"Fix: `{info.how_to_get} --force`, or point --root at the complete copy")
    truncated = df.attrs.get("truncated") or []
    if truncated:
        lines.append(f"TRUNCATED: {len(truncated)} file(s) shorter than their header declares "
                     "(cut off during a copy; replace them):")
        lines += [f"  {p}: header {d:.2f} s, holds {h:.2f} s" for p, d, h in truncated]
    return lines


def cmd_info(args) -> int:
    from ..corpora import corpus_dir, load_corpus

    df = load_corpus(args.corpus, root=args.root, on_error="skip" if args.skip_bad else "raise")
    print(format_info(df, corpus_dir(args.corpus, args.root)[0]))
    return 0


def cmd_baseline(args) -> int:
    from ..corpora import load_corpus
    from ..synth import baseline_accuracy

    from ..errors import ConfigError

    df = load_corpus(args.corpus, root=args.root)
    n_speakers = df["speaker"].nunique()
    if args.folds > n_speakers:
        raise ConfigError(f"--folds {args.folds}: {args.corpus} ({len(df)} utterances) has only {n_speakers} "
                          f"speakers, so at most {n_speakers} speaker folds; pass --folds {n_speakers} or fewer")
    res = baseline_accuracy(df, seed=args.seed, n_splits=args.folds)
    folds = " ".join(f"{a:.3f}" for a in res["fold_accuracy"])
    print(f"{args.corpus}: {res['n_utterances']} utterances, {res['n_speakers']} speakers\n"
          f"classifier: {res['classifier']}\nfeatures: {res['features']}\n"
          f"speaker-independent accuracy per fold: {folds}\n"
          f"mean {res['mean_accuracy']:.3f} (sd {res['std_accuracy']:.3f}); chance {res['chance']:.3f}")
    return 0


def cmd_list(args) -> int:
    import pandas as pd

    from ..corpora import CORPORA, corpus_dir
    from ..download import _layout_ok

    rows = []
    for name, info in CORPORA.items():
        folder, source = corpus_dir(name)
        if name.startswith("synthetic"):
            present = (folder / "metadata.csv").is_file()
        elif name in ("emodb", "ravdess"):
            present = folder.is_dir() and _layout_ok(name, folder)
        else:
            present = folder.is_dir() and any(folder.iterdir())
        rows.append(dict(corpus=name, present="yes" if present else "no", folder=str(folder),
                         via=source, get=info.how_to_get if len(info.how_to_get) < 40
                         else f"by hand: {info.homepage}"))
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_fetch(args) -> int:
    from ..download import fetch

    fetch(args.corpus, dest=args.dest, url=args.url, sha256=args.sha256, md5=args.md5,
          archive=args.archive, force=args.force, verify=not args.no_verify)
    return 0


def cmd_synth(args) -> int:
    from ..corpora import corpus_dir
    from ..synth import generate_corpus

    name = "synthetic-small" if args.size == "small" else "synthetic"
    folder = corpus_dir(name, args.root)[0]
    out = generate_corpus(folder, size=args.size, seed=args.seed)
    print(f"{name} corpus (seed {args.seed}) in {out}")
    return 0
