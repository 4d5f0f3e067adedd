"""``sercore train``, ``sercore evaluate`` and ``sercore predict``.

    sercore train --model zhao2d --corpus emodb --protocol speaker_kfold --profile quick
    sercore evaluate --corpus emodb --study quick
    sercore predict FILE.wav [FILE.wav ...] --model data/results/emodb/quick [--json] [--timeline]
    sercore predict recordings/ --model data/results/emodb/quick --csv answers.csv

Heavy imports (JAX, Flax, librosa) happen inside the handlers so ``sercore --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..profiles import PROFILES
from ._args import float_range, int_range

#: Audio file endings ``sercore predict`` picks up from a folder (what libsndfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".au", ".snd", ".caf",
                  ".w64", ".rf64", ".mp3")


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
    p.add_argument("--epochs", type=int_range(1, 10000), default=None,
                   help="override the profile's maximum epochs (1 to 10000)")
    p.add_argument("--augment", type=int_range(0, 100), default=None, metavar="COPIES",
                   help="AWGN copies of each training utterance (0 to 100; 0 = no augmentation; training "
                        "rows only; default: the profile's)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on in a terminal, off under CI/papermill/SERCORE_QUIET)")
    add_executor_args(p)
    p.set_defaults(func=cmd_train)

    e = subparsers.add_parser("evaluate", help="summaries, confidence intervals and confusion matrices of a study")
    e.add_argument("--corpus", default="synthetic")
    e.add_argument("--study", default="quick", help="study name, or a study folder path")
    e.add_argument("--model", default=None, help="only this model")
    e.add_argument("--protocol", default=None, help="only this protocol")
    e.add_argument("--n-boot", type=int_range(10, 1_000_000), default=1000,
                   help="bootstrap resamples (10 to 1000000, default 1000)")
    e.add_argument("--json", action="store_true", help="print JSON instead of tables")
    e.set_defaults(func=cmd_evaluate)

    q = subparsers.add_parser(
        "predict", help="classify audio files (or folders of them) with a saved model",
        description="Print the predicted emotion and class probabilities of each file, scored over windows "
                    "covering all of it after trimming leading/trailing silence. Files without usable speech "
                    "(shorter than 0.1 s, or fewer than 10 frames of 20 ms at -60 dBFS or more) get an error and "
                    "no prediction; clipped, over-range or truncated files get a prediction and a warning. "
                    "A bad file never stops the batch; the exit status is 1 if any file failed.")
    q.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                   help="audio files (any rate; resampled to the model's), or folders searched recursively for "
                        + "/".join(s.lstrip(".") for s in AUDIO_SUFFIXES[:6]) + "... files")
    q.add_argument("--model", required=True,
                   help="a saved model folder, a run folder, or a study folder (the run with the best "
                        "validation UAR is used), as written by `sercore train`")
    q.add_argument("--json", action="store_true",
                   help="print one JSON object per file (an unusable file: {path, error})")
    q.add_argument("--csv", metavar="OUT.csv", default=None,
                   help="also write one row per file (label, probabilities, warnings, error) to this CSV")
    q.add_argument("--timeline", action="store_true",
                   help="per-window predictions: the model's scoring windows, or --window/--hop ones")
    q.add_argument("--window", type=float_range(0.1, 3600), default=None,
                   help="timeline window in seconds (0.1 to 3600; at least the model's window; needs --timeline)")
    q.add_argument("--hop", type=float_range(0.1, 3600), default=None,
                   help="timeline hop in seconds (0.1 to 3600, at most --window; default half a window; "
                        "needs --timeline)")
    q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over the files (default: on in a terminal with several files)")
    q.set_defaults(func=cmd_predict, _parser=q)


def add_executor_args(p) -> None:
    """``--executor``, ``--address``, ``--cpus-per-run``, ``--gpus-per-run`` (see sercore.executors)."""
    g = p.add_argument_group("executor", "where the runs execute (pip install -e '.[ray]' for ray)")
    g.add_argument("--executor", choices=["serial", "ray"], default=None,
                   help="serial: one run after another in this process; ray: one Ray task per (fold, seed) "
                        "run (default: $SERCORE_EXECUTOR, else serial; --address implies ray)")
    g.add_argument("--address", default=None,
                   help="a running Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: "
                        "$SERCORE_RAY_ADDRESS, else a local Ray with one worker per core)")
    g.add_argument("--cpus-per-run", type=float_range(0.01, 1024), default=1.0,
                   help="CPUs each Ray task declares (default 1; XLA then uses one thread)")
    g.add_argument("--gpus-per-run", type=float_range(0, 64), default=None,
                   help="GPUs each Ray task declares (default: 1 if the cluster has GPUs, else 0; 0.5 packs two)")


def executor_from_args(args):
    """The executor object for the parsed options (None = serial)."""
    from ..executors import RayExecutor, resolve

    name = args.executor or ("ray" if args.address else None)
    ex = resolve(name, args.address)
    if isinstance(ex, RayExecutor):
        ex.cpus_per_run, ex.gpus_per_run = args.cpus_per_run, args.gpus_per_run
    return ex


def _ints(text: str | None):
    """``"0,1,2"`` -> ``[0, 1, 2]``; None stays None; empty lists and negative numbers are refused."""
    if text is None:
        return None
    from ..errors import ConfigError

    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise ConfigError(f"expected comma-separated integers >= 0 (e.g. 0,1,2), got {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"expected comma-separated integers >= 0 (e.g. 0,1,2), got {text!r}")
    return values


def cmd_train(args) -> int:
    from ..study import run_study

    train = {"epochs": args.epochs} if args.epochs is not None else None
    if args.augment is None:
        augment = None                                   # the profile's
    else:                                                # 0: explicitly none ({} turns it off)
        augment = {"copies": args.augment, "snr_db": (10.0, 30.0)} if args.augment > 0 else {}
    st = run_study(args.corpus, args.model, args.protocol, args.profile, name=args.study,
                   folds=_ints(args.folds), seeds=_ints(args.seeds), train=train, augment=augment,
                   progress=args.progress, executor=executor_from_args(args))
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


def _expand_inputs(entries) -> list[tuple[str, str | None]]:
    """``(path, error)`` for each file named or found (recursively, sorted) in a named folder."""
    from pathlib import Path

    out = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                out.append((str(path), f"{path}: folder holds no audio files ({', '.join(AUDIO_SUFFIXES[:6])}, ...)"
                                       "; pass audio files or a folder of them"))
            out.extend((str(p), None) for p in found)
        else:
            out.append((str(entry), None))
    return out


def _csv_row(out: dict, labels) -> dict:
    row = {"path": out["path"], "label": out.get("label", ""), "error": out.get("error", ""),
           "warnings": " | ".join(out.get("warnings", [])), "duration": out.get("duration", ""),
           "speech_start": (out.get("speech") or ["", ""])[0], "speech_end": (out.get("speech") or ["", ""])[1],
           "n_windows": out.get("n_windows", "")}
    row.update({f"p_{lab}": out.get("probabilities", {}).get(lab, "") for lab in labels})
    return row


def _print_prediction(out: dict, args) -> None:
    import pandas as pd

    from ..predict import TIMELINE_MIN_WINDOWS

    probs = "  ".join(f"{k} {v:.2f}" for k, v in sorted(out["probabilities"].items(), key=lambda kv: -kv[1]))
    note = f" (resampled from {out['resampled_from']} Hz)" if out["resampled_from"] else ""
    print(f"{out['path']}: {out['label']}{note}\n  {probs}")
    start, end = out["speech"]
    print(f"  scored {start:.2f}-{end:.2f} s of {out['duration']:.2f} s over {out['n_windows']} window(s)"
          + ("; --timeline shows each" if out["n_windows"] > TIMELINE_MIN_WINDOWS and not args.timeline else ""))
    if args.timeline:
        rows = out["windows"]
        table = pd.DataFrame([{"start": w["start"], "end": w["end"], "label": w["label"], **w["probabilities"]}
                              for w in rows])
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def cmd_predict(args) -> int:
    """Classify every file; a bad one is reported and skipped; exit 1 if any failed."""
    import csv

    from tqdm import tqdm

    from ..config import quiet
    from ..errors import ConfigError, SercoreError
    from ..predict import load_model, predict_file, predict_timeline, timeline_sizes

    problem = next((f"--{name} needs --timeline (it sets the timeline's windows)" for name in ("window", "hop")
                    if getattr(args, name) is not None and not args.timeline), None)
    if problem is None and args.window is not None and args.hop is not None and args.hop > args.window:
        problem = f"--hop {args.hop} is longer than --window {args.window}; give --hop <= --window"
    if problem:
        parser = getattr(args, "_parser", None)
        if parser is None:  # called without the parser (from Python)
            raise ConfigError(problem)
        parser.error(problem)  # usage line + exit status 2, like argparse's own checks
    saved = load_model(args.model)
    custom_timeline = args.timeline and (args.window is not None or args.hop is not None)
    if custom_timeline:
        timeline_sizes(saved, args.window, args.hop)   # refuse bad sizes once, before the batch
    inputs = _expand_inputs(args.files)
    show = (not quiet() and len(inputs) > 1) if args.progress is None else args.progress
    failed, n_warned = [], 0
    csv_file = writer = None
    if args.csv:
        from pathlib import Path

        try:
            Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
            csv_file = open(args.csv, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write --csv {args.csv} ({exc.strerror}); give a file path in a "
                              "writable folder") from exc
        writer = csv.DictWriter(csv_file, fieldnames=list(_csv_row({"path": ""}, saved.labels)))
        writer.writeheader()
    bar = tqdm(inputs, desc="predict", unit="file", disable=not show, leave=False, file=sys.stderr)
    try:
        for path, error in bar:
            out = None
            if error is None:
                try:
                    out = predict_file(path, saved)
                    if custom_timeline:
                        table = predict_timeline(path, saved, window_s=args.window, hop_s=args.hop)
                        out["windows"] = [{"start": r["start"], "end": r["end"], "label": r["label"],
                                           "probabilities": {lab: float(r[lab]) for lab in saved.labels}}
                                          for r in table.to_dict(orient="records")]
                except SercoreError as exc:
                    error = str(exc)
                except Exception as exc:  # never stop the batch; say it is a bug
                    error = (f"{path}: unexpected {type(exc).__name__} ({exc}); this is a sercore bug, "
                             "please report it with the file")
            if error is not None:
                failed.append(path)
                bar.write(f"sercore: error: {error}", file=sys.stderr)
                out = {"path": path, "error": error}
                if args.json:
                    print(json.dumps(out))
            else:
                for warning in out["warnings"]:
                    bar.write(f"sercore: warning: {path}: {warning}", file=sys.stderr)
                n_warned += bool(out["warnings"])
                if args.json:
                    if not args.timeline:
                        out = {k: v for k, v in out.items() if k != "windows"}
                    print(json.dumps(out))
                else:
                    _print_prediction(out, args)
            if writer is not None:
                writer.writerow(_csv_row(out, saved.labels))
                csv_file.flush()
            sys.stdout.flush()
    finally:
        bar.close()
        if csv_file is not None:
            csv_file.close()
    if len(inputs) > 1 or failed:
        print(f"sercore predict: {len(inputs) - len(failed)} of {len(inputs)} file(s) predicted"
              + (f", {n_warned} with warnings" if n_warned else "")
              + (f"; {len(failed)} failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}" if failed else "")
              + (f"; table: {args.csv}" if args.csv else ""), file=sys.stderr)
    return 1 if failed else 0
