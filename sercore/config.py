"""Where sercore keeps its data, and the environment variables that move it.

Resolution order for a corpus folder: explicit ``root`` argument, then ``SERCORE_<CORPUS>_DIR``,
then ``$SERCORE_DATA_DIR/raw/<corpus>``, then ``data/raw/<corpus>`` in this checkout.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout this package was imported from (``pip install -e .``); ``None`` when installed elsewhere.
REPO_DIR: Path | None = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else None


def data_dir() -> Path:
    """Root of sercore's data tree: ``$SERCORE_DATA_DIR``, else ``data/`` in the checkout,
    else ``~/.cache/sercore``."""
    env = os.environ.get("SERCORE_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if REPO_DIR is not None:
        return REPO_DIR / "data"
    return Path.home() / ".cache" / "sercore"


def raw_dir(corpus: str) -> Path:
    """Default folder of a corpus as downloaded or generated (``data/raw/<corpus>``)."""
    return data_dir() / "raw" / corpus


def corpus_env_var(corpus: str) -> str:
    """Name of the environment variable that points one corpus elsewhere."""
    return f"SERCORE_{corpus.upper().replace('-', '_')}_DIR"


def processed_dir() -> Path:
    """Feature cache folder (``data/processed``)."""
    return data_dir() / "processed"


def results_dir() -> Path:
    """Training results, checkpoints and saved models (``data/results``)."""
    return data_dir() / "results"


def reports_dir() -> Path:
    """Rendered HTML reports (``reports/`` in the checkout, else under the data tree)."""
    if REPO_DIR is not None:
        return REPO_DIR / "reports"
    return data_dir() / "reports"


def quiet() -> bool:
    """True when progress bars should stay off: ``SERCORE_QUIET=1``, ``CI`` set, or stderr not a TTY
    (papermill, CI logs, pipes)."""
    if os.environ.get("SERCORE_QUIET", "") not in ("", "0"):
        return True
    if os.environ.get("CI"):
        return True
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
