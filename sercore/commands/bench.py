"""``sercore bench``: training/inference throughput of the models and log-mel extraction speed."""
from __future__ import annotations

import argparse

from ._args import int_range

DEFAULT_REFERENCE_DIR = "../shared/bench"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure training/inference samples/s of the models (prints a table, writes JSON)",
        description="Measure each model's parameters, GFLOP per sample, training (batch 32, Adam) and "
                    "inference (batch 64) samples/s (median [min-max] of timed repeats after warm-up), "
                    "first-step compile time and share of this CPU's FP32 peak, plus log-mel extraction "
                    "clips/s. Never part of the tests; figures drift 10 % between runs on shared machines, "
                    "so compare frameworks within one run (--torch/--tf).")
    p.add_argument("--models", default=None,
                   help="comma-separated model names (default: zhao2d,poolfix2d,attn_blstm,td_cnn_lstm)")
    p.add_argument("--steps", type=int_range(1), default=None,
                   help="steps per timed repeat (>= 1; default 5; --quick 2)")
    p.add_argument("--repeats", type=int_range(1), default=None, help="timed repeats (>= 1; default 3; --quick 1)")
    p.add_argument("--warmup", type=int_range(0), default=1, help="untimed steps after compilation (>= 0, default 1)")
    p.add_argument("--out", default="reports/bench.json", help="JSON output file (default reports/bench.json)")
    p.add_argument("--quick", action="store_true", help="zhao2d only, 2 steps x 1 repeat, no feature timing")
    p.add_argument("--no-features", action="store_true", help="skip the log-mel extraction timing")
    p.add_argument("--torch", metavar="PYTHON", default=None,
                   help="also run the PyTorch reference zhao2d with this interpreter (e.g. /tmp/bench-venv-torch/bin/python)")
    p.add_argument("--tf", metavar="PYTHON", default=None,
                   help="also run the Keras reference zhao2d with this interpreter (e.g. /tmp/bench-venv-tf/bin/python)")
    p.add_argument("--reference-dir", default=DEFAULT_REFERENCE_DIR,
                   help=f"folder holding bench_torch.py / bench_tf.py (default {DEFAULT_REFERENCE_DIR})")
    p.add_argument("--devices", action="store_true",
                   help="only training samples/s per JAX device count (data-parallel fit over 1, 2, 4, ... of the "
                        "visible devices; on CPU force N with XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    p.add_argument("--executors", action="store_true",
                   help="only the study engine's overhead: the smoke grid (synthetic-small) run serially and as "
                        "Ray tasks into temporary folders, wall times and their ratio (needs the ray extra)")
    p.add_argument("--vmap-seeds", type=int_range(2), default=None, metavar="N",
                   help="only N seeds of each model trained at once (jax.vmap, sercore.training.train_many) against "
                        "N sequential fits, samples/s of both, at the model's default input (pays on GPUs, not on CPU)")
    p.add_argument("--grid-folds", type=int_range(1), default=None, metavar="N",
                   help="with --executors: the first N folds of each protocol (synthetic-small has 4 speaker folds) instead of the smoke profile's 2")
    p.add_argument("--grid-corpus", default="synthetic-small", metavar="CORPUS",
                   help="with --executors: the corpus of the grid (default synthetic-small, 140 utterances; "
                        "synthetic has 700 and 5 speaker folds, so longer runs)")
    p.add_argument("--address", default=None,
                   help="with --executors: a running Ray cluster (default: a local Ray, one worker per core)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..bench import DEFAULT_MODELS, bench_devices, bench_executors, run_bench

    if args.executors:
        bench_executors(args.grid_corpus, address=args.address, folds=args.grid_folds)
        return 0

    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    else:
        models = ("zhao2d",) if args.quick else DEFAULT_MODELS
    steps = args.steps if args.steps is not None else (2 if args.quick else 5)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.vmap_seeds:
        from .. import models as model_zoo
        from ..training import measure_vmap_speedup

        for name in models:
            measure_vmap_speedup(name, input_shape=tuple(model_zoo.default_input_shape(name)),
                                 n_seeds=args.vmap_seeds, n_train=32 * steps, epochs=1 + max(repeats, 2))
        return 0
    if args.devices:
        for name in models:
            bench_devices(name, steps=steps, repeats=max(repeats, 2))
        return 0
    run_bench(models, steps=steps, repeats=repeats, warmup=args.warmup, out=args.out,
              features=not (args.quick or args.no_features), reference_dir=args.reference_dir,
              torch_python=args.torch, tf_python=args.tf)
    return 0
