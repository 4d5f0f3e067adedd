"""``sercore reports``: run the study notebooks with papermill and render ``reports/``.

Examples::

    sercore reports                                   # all notebooks, synthetic corpus, quick profile
    sercore reports --corpus emodb --profile quick    # the real study (EmoDB present)
    sercore reports --only 02 -p seed=1 -p models=zhao2d,poolfix2d
    sercore reports --index                           # only rewrite reports/index.html
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reports", help="run the study notebooks (papermill) and render HTML reports",
        description="Execute notebooks/NN_*.ipynb on the 'sercore' kernel with the given corpus and "
                    "profile, render each to reports/<corpus>/<name>.html and rewrite reports/index.html. "
                    "A failing notebook stops the run, naming the notebook and cell; earlier reports stay.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--corpus", default="synthetic",
                   help="corpus to study (default: synthetic, generated if missing; "
                        "synthetic-small is the tiny one CI uses; emodb needs `sercore data fetch emodb` "
                        "or SERCORE_EMODB_DIR)")
    p.add_argument("--profile", default="quick", help="training profile: smoke, quick, standard or full (default quick)")
    p.add_argument("--only", default=None, metavar="NN[,NN...]",
                   help="run only these notebooks, by number or name (e.g. 01,03)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a notebook parameter (repeatable), e.g. -p seed=1 -p models=zhao2d")
    p.add_argument("--reports-dir", default=None, help="where HTML goes (default: reports/ in the checkout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="papermill progress bars (default: only on a terminal outside CI)")
    p.add_argument("--index", action="store_true", help="only rewrite reports/index.html from the manifests")
    p.add_argument("--executor", choices=["serial", "ray"], default=None,
                   help="where the notebooks' training runs execute (sets SERCORE_EXECUTOR for their kernels; "
                        "default: $SERCORE_EXECUTOR, else serial; --address implies ray)")
    p.add_argument("--address", default=None,
                   help="a running Ray cluster for --executor ray (sets SERCORE_RAY_ADDRESS; default: a local Ray)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .. import reports

    if args.index:
        ignored = [flag for flag, given in (("--only", args.only), ("-p", args.param)) if given]
        if ignored:
            raise reports.ConfigError(f"--index only rewrites the index from existing manifests and runs no notebook: "
                                      f"drop {' and '.join(ignored)}, or drop --index to run the notebooks")
        print(reports.write_index(args.reports_dir))
        print(reports.write_readme(args.reports_dir))
        return 0
    import os

    if args.executor or args.address:   # the notebooks' kernels inherit it; run_grid reads it
        os.environ["SERCORE_EXECUTOR"] = args.executor or "ray"
    if args.address:
        os.environ["SERCORE_RAY_ADDRESS"] = args.address
    params = dict(reports.parse_param(p) for p in args.param)
    for key in ("corpus", "profile"):
        if key in params:
            raise reports.ConfigError(f"set {key} with --{key}, not -p {key}=...")
    done = reports.run_notebooks(args.corpus, args.profile, notebooks=args.only, params=params,
                                 reports_dir=args.reports_dir, progress=args.progress)
    index = reports.write_index(args.reports_dir)
    reports.write_readme(args.reports_dir)
    total = sum(m["runtime_s"] for m in done)
    print(f"{len(done)} report(s) in {reports._fmt_seconds(total)}; open {index}")
    return 0
