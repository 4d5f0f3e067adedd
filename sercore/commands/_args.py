"""Checked numeric command-line options: ``type=int_range(1)``, ``type=float_range(0.1, 3600)``.

A value outside the stated range is refused by argparse (``sercore: error: argument --epochs: ...``,
exit status 2) rather than reaching the library as a traceback or being mistaken for "not given".
Helpers put the range into the ``--help`` text with :func:`range_text`.
"""
from __future__ import annotations

import argparse
import math


def range_text(lo, hi=None) -> str:
    """``">= 1"`` or ``"1 to 100"``: the range as ``--help`` states it."""
    return f">= {lo}" if hi is None else f"{lo} to {hi}"


def int_range(lo: int, hi: int | None = None):
    """An argparse ``type`` that accepts integers ``lo <= v <= hi`` (``hi`` None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give one {range_text(lo, hi)}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range; give an integer {range_text(lo, hi)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float | None = None):
    """An argparse ``type`` that accepts finite numbers ``lo <= v <= hi``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; give one {range_text(lo, hi)}") from None
        if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a number {range_text(lo, hi)}")
        return value

    parse.__name__ = "number"
    return parse
