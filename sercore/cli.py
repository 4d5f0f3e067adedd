"""The ``sercore`` command line: ``sercore data ...``, ``sercore train ...``, ``sercore bench`` ...

Each command group lives in its own module under :mod:`sercore.commands` and exposes
``register(subparsers)``; heavy imports (JAX, librosa) happen inside the handlers so ``--help``
and ``sercore data info`` start fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SercoreError

#: Command modules, each with ``register(subparsers)``; a module that does not exist yet is skipped.
COMMAND_MODULES = (
    "sercore.commands.data",
    "sercore.commands.train",
    "sercore.commands.reports",
    "sercore.commands.bench",
    "sercore.commands.baselines",
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sercore",
        description="sercore: a reproducible study kit for speech emotion recognition (JAX + Flax NNX).",
        epilog="Run `sercore COMMAND --help` for a command's options. Docs: README.md in the checkout.")
    parser.add_argument("--version", action="version", version=f"sercore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:             # the real command: restart once with huge pages for XLA's buffers
        from . import runtime
        runtime.reexec(sys.argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SercoreError as exc:
        print(f"sercore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sercore: interrupted; finished work is kept, re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
