"""``sercore baseline``: classical baselines (openSMILE / log-mel functionals + linear classifier).

    sercore baseline emodb                                   # eGeMAPS + linear SVM, speaker folds, quick
    sercore baseline emodb --features compare --classifier svm --protocol random
    sercore baseline emodb --features logmel_stats --classifier lr --speaker-norm

The runs join the study of the same name (default: the profile's), on the folds the networks use,
so `sercore evaluate` and the reports show them beside the networks. Heavy imports happen inside
the handler.
"""
from __future__ import annotations

import argparse

from ..profiles import PROFILES


def register(subparsers) -> None:
    """Add the ``baseline`` command to the ``sercore`` parser."""
    p = subparsers.add_parser(
        "baseline", help="classical baseline: eGeMAPS/ComParE/log-mel functionals + linear SVM or "
                         "logistic regression, on the networks' folds",
        description="Extract per-utterance functionals (cached), choose C on each fold's validation "
                    "speakers, refit on train+validation, score the test fold once; the runs join the "
                    "study folder beside the networks. Re-running skips finished folds.")
    p.add_argument("corpus", metavar="CORPUS", help="corpus name (emodb, synthetic, ...)")
    p.add_argument("--features", default="egemaps", choices=["egemaps", "compare", "logmel_stats"])
    p.add_argument("--classifier", default="svm", choices=["svm", "lr"])
    p.add_argument("--protocol", default="speaker_kfold", choices=["speaker_kfold", "loso", "random"])
    p.add_argument("--profile", default="quick", choices=list(PROFILES),
                   help="supplies k and the folds run (default quick: 5 folds)")
    p.add_argument("--study", default=None, help="study name / folder (default: the profile name)")
    p.add_argument("--root", metavar="PATH", help="corpus folder (default: $SERCORE_<CORPUS>_DIR, else data/raw)")
    p.add_argument("--folds", default=None, help="fold numbers to run, e.g. 0,1,2 (default: the profile's)")
    p.add_argument("--speaker-norm", action="store_true",
                   help="standardise each speaker's features by its own statistics (uses the test "
                        "speakers' unlabelled features; reported as '<protocol>+speaker-norm')")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on in a terminal, off under CI/papermill/SERCORE_QUIET)")
    p.set_defaults(func=cmd_baseline)


def format_baseline(results, name: str, description: str) -> str:
    """Per-fold lines and the mean UAR of one baseline's rows of a results table."""
    lines = [f"{name}: {description}"]
    for _, r in results.sort_values("fold").iterrows():
        lines.append(f"  fold {r['fold']}: test speakers {r['test_speakers'] or '-'}  UAR {r['uar']:.3f}  "
                     f"WA {r['wa']:.3f}  (val UAR {r['val_uar']:.3f})")
    if len(results):
        sd = results["uar"].std(ddof=1) if len(results) > 1 else 0.0
        lines.append(f"mean UAR {results['uar'].mean():.3f} (sd {sd:.3f} over {len(results)} folds), "
                     f"mean WA {results['wa'].mean():.3f}; protocol {results['protocol'].iloc[0]} "
                     f"({results['protocol_label'].iloc[0]})")
    return "\n".join(lines)


def cmd_baseline(args) -> int:
    from ..baselines import baseline_name, baseline_spec, run_baseline
    from .train import _ints

    name = baseline_name(args.features, args.classifier)
    st = run_baseline(args.corpus, name, args.protocol, args.profile, study=args.study, root=args.root,
                      folds=_ints(args.folds), speaker_norm=args.speaker_norm, progress=args.progress)
    protocol = args.protocol + ("+speaker-norm" if args.speaker_norm else "")
    sel = st.results[(st.results["model"] == name) & (st.results["protocol"] == protocol)]
    print(format_baseline(sel, name, baseline_spec(name)[2]))
    print(f"\nstudy folder: {st.dir}")
    return 0
