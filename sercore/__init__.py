"""sercore: an open, reproducible study kit for speech emotion recognition (JAX + Flax NNX).

The top-level names are imported lazily, so ``import sercore`` stays fast and does not start JAX:

>>> import sercore
>>> df = sercore.load_corpus("synthetic")          # doctest: +SKIP
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_corpus": "sercore.corpora",
    "list_corpora": "sercore.corpora",
    "FeatureConfig": "sercore.features",
    "extract_features": "sercore.features",
    "SercoreError": "sercore.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sercore' has no attribute {name!r}")


def git_commit() -> str:
    """The checkout's git commit (short hash, ``+dirty`` if a tracked file outside ``reports/`` is
    modified), or ``"unknown"``. ``reports/`` holds only what ``sercore reports`` writes, so a second
    render in the same checkout is not marked dirty by the first one's HTML."""
    import subprocess

    from .config import REPO_DIR

    if REPO_DIR is None:
        return "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO_DIR,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)reports"], cwd=REPO_DIR,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")
