"""``sercore train``, ``sercore evaluate`` and ``sercore predict``.

    sercore train --model zhao2d --corpus emodb --protocol speaker_kfold --profile quick
    sercore evaluate --corpus emodb --study quick
    sercore predict FILE.wav [FILE.wav ...] --model data/results/emodb/quick [--json] [--timeline]

Heavy imports (JAX, Flax, librosa) happen inside the handlers so ``sercore --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..profiles import PROFILES


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train and test a model under a protocol (resumable)",
                              description="Train MODEL on every fold (and seed) of PROTOCOL; re-running the same "
                                          "command skips finished runs and resumes an interrupted one.")
    p.add_argument("--model", required=True, help="model name (see sercore.models.list_models())")
    p.add_argument("--corpus", default="synthetic", help="corpus name (default: synthetic)")
    p.add_argument("--protocol", default="speaker_kfold", choices=["speaker_kfold", "loso", "random"])
    p.add_argument("--profile", default="quick", choices=list(PROFILES))
    p.add_argument("--study", default=None, help="study name / folder (default: the profile name)")
    p.add_argument("--folds", default=None, help="fold numbers to run, e.g. 0,1,2 (default: the profile's)")
    p.add_argument("--seeds", default=None, help="model seeds, e.g. 0,1,2 (default: the profile's)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's maximum epochs")
    p.add_argument("--augment", type=int, default=None, metavar="COPIES",
                   help="AWGN copies of each training utterance (training rows only; default: the profile's)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on in a terminal, off under CI/papermill/SERCORE_QUIET)")
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("evaluate", help="summaries, confidence intervals and confusion matrices of a study")
    e.add_argument("--corpus", default="synthetic")
    e.add_argument("--study", default="quick", help="study name, or a study folder path")
    e.add_argument("--model", default=None, help="only this model")
    e.add_argument("--protocol", default=None, help="only this protocol")
    e.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    e.add_argument("--json", action="store_true", help="print JSON instead of tables")
    e.set_defaults(func=cmd_evaluate)

    q = subparsers.add_parser("predict", help="classify wav files with a saved model",
                              description="Print the predicted emotion and class probabilities of each FILE.")
    q.add_argument("files", nargs="+", metavar="FILE", help="audio files (any rate; resampled to the model's)")
    q.add_argument("--model", required=True,
                   help="a saved model folder, a run folder, or a study folder (the run with the best "
                        "validation UAR is used), as written by `sercore train`")
    q.add_argument("--json", action="store_true", help="print one JSON object per file")
    q.add_argument("--timeline", action="store_true",
                   help="per-window predictions over a long recording (windows of the model's clip length)")
    q.add_argument("--window", type=float, default=None, help="timeline window in seconds")
    q.add_argument("--hop", type=float, default=None, help="timeline hop in seconds (default: half a window)")
    q.set_defaults(func=cmd_predict)


def _ints(text: str | None):
    if text is None:
        return None
    from ..errors import ConfigError

    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise ConfigError(f"expected comma-separated integers, got {text!r}") from exc


def cmd_train(args) -> int:
    from ..study import run_study

    train = {"epochs": args.epochs} if args.epochs else None
    augment = {"copies": args.augment, "snr_db": (10.0, 30.0)} if args.augment else None
    st = run_study(args.corpus, args.model, args.protocol, args.profile, name=args.study,
                   folds=_ints(args.folds), seeds=_ints(args.seeds), train=train, augment=augment,
                   progress=args.progress)
    sel = st.results[(st.results["model"] == args.model) & (st.results["protocol"] == args.protocol)]
    _print_results(sel)
    print(f"\nstudy folder: {st.dir}")
    print(f"results table: {st.dir / 'results.parquet'} (+ .csv)")
    return 0


def _print_results(results) -> None:
    import pandas as pd

    cols = ["model", "protocol", "fold", "seed", "test_speakers", "best_epoch", "epochs", "wa", "uar", "macro_f1"]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(results[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(results):
        print(f"mean UAR {results['uar'].mean():.3f} +- {results['uar'].std(ddof=1) if len(results) > 1 else 0:.3f} "
              f"(sd over {len(results)} runs), mean WA {results['wa'].mean():.3f}")


def cmd_evaluate(args) -> int:
    from pathlib import Path

    import pandas as pd

    from ..study import load_study, study_dir

    path = Path(args.study)
    st = load_study(path if (path / "runs").is_dir() else study_dir(args.corpus, args.study))
    res = st.results
    if args.model:
        res = res[res["model"] == args.model]
    if args.protocol:
        res = res[res["protocol"] == args.protocol]
    if res.empty:
        from ..errors import ConfigError

        raise ConfigError(f"no finished runs in {st.dir} match model={args.model} protocol={args.protocol}")
    preds = st.predictions[st.predictions["run_id"].isin(res["run_id"])]
    from ..metrics import summarize

    summary = summarize(res, preds, n_boot=args.n_boot)
    groups = []
    for (model, protocol), _ in res.groupby(["model", "protocol"]):
        sel = preds[(preds["model"] == model) & (preds["protocol"] == protocol)]
        groups.append((model, protocol, st.labels, sel))
    if args.json:
        from ..metrics import confusion_table, recall_table

        out = {"study": str(st.dir), "summary": summary.to_dict(orient="records"),
               "runs": res.drop(columns=[]).to_dict(orient="records"),
               "confusion": {f"{m}/{p}": confusion_table(s, labels).values.tolist() for m, p, labels, s in groups},
               "recall": {f"{m}/{p}": recall_table(s, labels).to_dict() for m, p, labels, s in groups},
               "labels": st.labels}
        print(json.dumps(out, indent=2, default=str))
        return 0
    from ..metrics import confusion_table, recall_table

    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(f"study: {st.dir}\n")
        _print_results(res)
        print("\nsummary (uar, wa: all test predictions pooled, with a 95 % bootstrap interval; *_mean: mean "
              "over runs):")
        cols = ["model", "protocol", "n_runs", "uar", "uar_low", "uar_high", "wa", "wa_low", "wa_high", "uar_mean",
                "macro_f1_mean"]
        print(summary[[c for c in cols if c in summary]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for method in summary["method"].unique() if "method" in summary else ():
            print(f"interval: {method}")
        for model, protocol, labels, sel in groups:
            print(f"\n{model} / {protocol}: confusion matrix (rows true, columns predicted)")
            print(confusion_table(sel, labels).to_string())
            print("per-class recall: " + ", ".join(f"{k} {v:.2f}" for k, v in recall_table(sel, labels).items()))
    return 0


def cmd_predict(args) -> int:
    from ..predict import load_model, predict_file, predict_timeline

    saved = load_model(args.model)
    for f in args.files:
        if args.timeline:
            table = predict_timeline(f, saved, window_s=args.window, hop_s=args.hop)
            if args.json:
                print(json.dumps({"path": str(f), "windows": table.to_dict(orient="records")}))
            else:
                print(f"{f}:")
                print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
            continue
        out = predict_file(f, saved)
        if args.json:
            print(json.dumps(out))
        else:
            probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(out["probabilities"].items(), key=lambda kv: -kv[1]))
            note = f" (resampled from {out['resampled_from']} Hz)" if out["resampled_from"] else ""
            print(f"{f}: {out['label']}{note}\n  {probs}")
    sys.stdout.flush()
    return 0
