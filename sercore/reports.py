"""Run the study notebooks headlessly with papermill and render them as HTML reports.

The numbered notebooks in ``notebooks/`` are executed top to bottom on the ``sercore`` Jupyter kernel
with the study's parameters injected (corpus, profile, ...). Each executed notebook is kept beside the
results (``data/results/<corpus>/notebooks/<name>.ipynb``, not in git) and rendered with nbconvert to
``reports/<corpus>/<name>.html``: code hidden behind a "Show code" button, figures embedded as PNG.
``reports/index.html`` links every report of every corpus with its corpus, profile, date, sercore
commit and run time (kept in ``reports/<corpus>/manifest.json``).

A notebook that fails stops the run with a :class:`NotebookError` that names the notebook and the
cell; the reports written before it, and the previous HTML of the failing notebook, are left as they
were (every file is written to a temporary name and moved into place only when complete).

Examples
--------
>>> from sercore import reports
>>> reports.run_notebooks("synthetic", "quick", notebooks=["01"])   # doctest: +SKIP
>>> reports.write_index()                                            # doctest: +SKIP

From a shell, the same as ``make reports``::

    python -m sercore reports --corpus synthetic --profile quick [--only 01,02] [-p seed=1]
"""
from __future__ import annotations

import ast
import datetime as _dt
import html as _html
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import config
from .errors import ConfigError, SercoreError

#: Name of the Jupyter kernel ``make setup`` registers (``python -m ipykernel install --name sercore``).
KERNEL_NAME = "sercore"
#: Notebooks the study is made of: ``notebooks/NN_name.ipynb``.
NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.html"


class NotebookError(SercoreError):
    """A study notebook that failed to execute or render.

    Attributes
    ----------
    notebook : str
        The notebook's name (``"02_lstm_redundancy"``).
    cell : int or None
        Execution count (``In [n]``) of the failing code cell, if known.
    """

    def __init__(self, notebook: str, message: str, cell: int | None = None):
        self.notebook = notebook
        self.cell = cell
        super().__init__(message)


# --------------------------------------------------------------------------------------------- paths
def notebooks_dir() -> Path:
    """The checkout's ``notebooks/`` folder (the study notebooks)."""
    if config.REPO_DIR is None:
        raise ConfigError("sercore is not installed from a checkout, so there are no study notebooks; "
                          "clone the repository and `pip install -e .` it, or pass notebook_dir=")
    return config.REPO_DIR / "notebooks"


def list_notebooks(notebook_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered study notebooks (``NN_name.ipynb``), in order."""
    folder = Path(notebook_dir) if notebook_dir is not None else notebooks_dir()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: notebook folder not found; pass the folder that holds NN_name.ipynb")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def select_notebooks(only: Iterable[str] | str | None,
                     notebook_dir: str | os.PathLike | None = None) -> list[Path]:
    """Pick notebooks by number (``"01"``, ``"2"``) or name (``"02_lstm_redundancy"``).

    ``None`` selects all of them. An unknown selector raises :class:`ConfigError` listing the choices.
    """
    available = list_notebooks(notebook_dir)
    if only is None:
        return available
    if isinstance(only, str):
        only = [s for s in only.split(",")]
    chosen: list[Path] = []
    for sel in (s.strip() for s in only):
        if not sel:
            continue
        key = sel[:-len(".ipynb")] if sel.endswith(".ipynb") else sel
        matches = [p for p in available
                   if p.stem == key or (key.isdigit() and int(p.stem[:2]) == int(key))]
        if not matches:
            names = ", ".join(p.stem for p in available) or "(none)"
            raise ConfigError(f"no notebook matches {sel!r}; choose by number or name among: {names}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


def notebook_title(nb) -> str:
    """The first Markdown heading of a notebook (its title), else ``""``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"^#+\s+(.*)", line.strip())
                if m:
                    return m.group(1).strip()
    return ""


# ---------------------------------------------------------------------------------------- parameters
def parse_param(text: str) -> tuple[str, Any]:
    """Parse a ``key=value`` override as given on the command line.

    The value is read as a Python literal where it is one (``3``, ``0.5``, ``None``, ``[1, 2]``,
    ``'a'``), ``true``/``false``/``null`` as bool/None, and as a plain string otherwise.

    >>> parse_param("seed=3"), parse_param("models=zhao2d,poolfix2d"), parse_param("fast=true")
    (('seed', 3), ('models', 'zhao2d,poolfix2d'), ('fast', True))
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ConfigError(f"bad parameter {text!r}: write it as key=value, e.g. -p seed=1")
    raw = raw.strip()
    words = {"true": True, "false": False, "none": None, "null": None}
    if raw.lower() in words:
        return key, words[raw.lower()]
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def as_list(value: Any) -> list[str] | None:
    """A notebook parameter given as a list or a comma-separated string, as a list (``None`` stays)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


# ------------------------------------------------------------------------------------------ running
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; reports are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def execute_notebook(path: str | os.PathLike, output_path: str | os.PathLike,
                     parameters: Mapping[str, Any] | None = None, *, kernel_name: str = KERNEL_NAME,
                     progress: bool | None = None, start_timeout: int = 120):
    """Execute one notebook with papermill and return the executed notebook node.

    Parameters
    ----------
    path : path-like
        The notebook; it must have one cell tagged ``parameters``.
    output_path : path-like
        Where papermill writes the executed notebook (also on failure, with the error in it).
    parameters : mapping, optional
        Values injected after the ``parameters`` cell.
    kernel_name : str
        Jupyter kernel to run on (default ``"sercore"``).
    progress : bool, optional
        Show papermill's cell progress bar; default: only on an interactive terminal outside CI.

    Raises
    ------
    NotebookError
        A cell raised: the message names the notebook, the cell (``In [n]``, its first line) and the
        exception; the executed notebook with the traceback is at ``output_path``.
    ConfigError
        The kernel is not installed.
    """
    import nbformat
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    path, output_path = Path(path), Path(output_path)
    name = path.stem
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = not config.quiet()
    try:
        pm.execute_notebook(str(path), str(output_path), parameters=dict(parameters or {}),
                            kernel_name=kernel_name, cwd=str(path.parent), progress_bar=progress,
                            log_output=False, request_save_on_cell_execute=False,
                            start_timeout=start_timeout)
    except PapermillExecutionError as exc:
        first = next((ln for ln in exc.source.splitlines() if ln.strip()), "").strip()
        where = f"cell In [{exc.exec_count}]" if exc.exec_count else f"cell #{exc.cell_index}"
        raise NotebookError(
            name, f"notebook {path.name} failed in {where} ({first[:80]!r}): {exc.ename}: {exc.evalue}\n"
                  f"  the executed notebook with the full traceback is {output_path}; earlier reports "
                  f"are unchanged. Fix the cause and re-run; finished training runs are reused.",
            cell=exc.exec_count) from None
    except NoSuchKernel:
        raise ConfigError(f"Jupyter kernel {kernel_name!r} is not installed: run `make setup` (or "
                          f"`python -m ipykernel install --prefix .venv --name {kernel_name}`)") from None
    return nbformat.read(str(output_path), as_version=4)


_HEADER_CSS = """
<style>
.sercore-header{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1em auto 0;
  max-width:1100px;padding:.6em 1em;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa;
  font-size:13px;color:#333}
.sercore-header a{color:#0969da}
.sercore-header table{border-collapse:collapse;margin:.3em 0}
.sercore-header td{padding:1px 10px 1px 0;vertical-align:top}
.sercore-header button{float:right;font-size:12px;padding:3px 10px;cursor:pointer}
body:not(.sercore-show-code) .jp-CodeCell .jp-Cell-inputWrapper{display:none}
body:not(.sercore-show-code) .jp-CodeCell:not(:has(.jp-OutputArea-child)){display:none}
main{max-width:1100px;margin:auto}
</style>
"""


def _header_html(meta: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(meta.get("parameters", {}).items()))
    rows = [("corpus", meta["corpus"]), ("profile", meta["profile"]), ("date", meta["date"]),
            ("sercore commit", meta["commit"]), ("run time", _fmt_seconds(meta["runtime_s"])),
            ("parameters", params)]
    cells = "".join(f"<tr><td><b>{_html.escape(k)}</b></td><td>{_html.escape(_in_checkout(v))}</td></tr>"
                    for k, v in rows)
    return (f'<div class="sercore-header"><button type="button" '
            f'onclick="document.body.classList.toggle(\'sercore-show-code\')">Show/hide code</button>'
            f'<a href="../index.html">&larr; all reports</a> &middot; sercore report '
            f'<b>{_html.escape(meta["name"])}</b><table>{cells}</table>'
            f'Progress bars and warnings (stderr) are left out here; they are kept in the executed '
            f'notebook <code>{_html.escape(_in_checkout(meta.get("executed_notebook", "")))}</code>.</div>')


def _in_checkout(value) -> str:
    """``str(value)`` with this checkout's absolute path dropped (committed reports name no home folders)."""
    text = str(value)
    if config.REPO_DIR is not None:
        text = text.replace(str(config.REPO_DIR) + os.sep, "").replace(str(config.REPO_DIR), ".")
    return text


def render_html(nb, html_path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Render an executed notebook to a self-contained HTML file (written atomically).

    Code cells are hidden by default (a button shows them), prompts are dropped, figures stay embedded
    as base64 PNG, stderr streams (progress bars, warnings) are left out. Cells tagged ``remove-cell``
    are dropped; ``remove-input`` / ``remove-output`` drop one half. ``meta`` (corpus, profile, date,
    commit, runtime_s, parameters) is shown in a header.
    """
    import copy

    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    title = notebook_title(nb) or Path(html_path).stem
    nb.metadata["title"] = title
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    tags = TagRemovePreprocessor(remove_cell_tags={"remove-cell"}, remove_input_tags={"remove-input"},
                                 remove_all_outputs_tags={"remove-output"}, enabled=True)
    exporter.register_preprocessor(tags, enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", _HEADER_CSS + "</head>", 1)
    if meta is not None:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + _header_html(meta), body, count=1)
    html_path = Path(html_path)
    _atomic_write_text(html_path, body)
    return html_path


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return {"reports": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"reports": {}}
    data.setdefault("reports", {})
    return data


def _update_manifest(folder: Path, meta: Mapping[str, Any]) -> None:
    manifest = _read_manifest(folder)
    manifest["reports"][meta["name"]] = dict(meta)
    _atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def run_notebooks(corpus: str = "synthetic", profile: str = "quick",
                  notebooks: Iterable[str] | str | None = None, params: Mapping[str, Any] | None = None,
                  *, reports_dir: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike | None = None,
                  notebook_dir: str | os.PathLike | None = None, kernel_name: str = KERNEL_NAME,
                  progress: bool | None = None, prepare_corpus: bool = True, index: bool = True,
                  log=print) -> list[dict]:
    """Execute study notebooks with papermill and render each to ``reports/<corpus>/<name>.html``.

    Parameters
    ----------
    corpus : str
        Corpus the study runs on (``"synthetic"``, ``"synthetic-small"``, ``"emodb"``, ...).
    profile : str
        Training profile (``"smoke"``, ``"quick"``, ``"full"``).
    notebooks : iterable of str or str, optional
        Subset by number or name (``["01", "02"]`` or ``"01,02"``); default all, in order.
    params : mapping, optional
        Further notebook parameters (``{"seed": 1, "models": "zhao2d"}``); they override the defaults
        in each notebook's ``parameters`` cell. ``corpus``, ``profile``, ``data_dir`` and
        ``results_dir`` are always injected.
    reports_dir : path-like, optional
        Root of the HTML reports (default :func:`sercore.config.reports_dir`).
    out_dir : path-like, optional
        Where executed notebooks go (default ``<results_dir>/<corpus>/notebooks``).
    notebook_dir : path-like, optional
        Folder of the notebooks (default the checkout's ``notebooks/``).
    kernel_name : str
        Jupyter kernel (default ``"sercore"``).
    progress : bool, optional
        Papermill progress bars; default off under CI or without a terminal.
    prepare_corpus : bool
        Load the corpus first (generating a synthetic one if missing), so a missing corpus fails fast
        with the fix named, before any notebook starts.
    index : bool
        Rewrite ``reports/index.html`` after each report.
    log : callable
        Called with one line per notebook (``print`` by default; ``None`` for silence).

    Returns
    -------
    list of dict
        One record per report: name, title, html, corpus, profile, date, commit, runtime_s, parameters.

    Raises
    ------
    NotebookError
        A notebook failed; its name and cell are in the message. Reports finished before it are kept.
    """
    from . import git_commit

    paths = select_notebooks(notebooks, notebook_dir)
    if not paths:
        raise ConfigError(f"no notebooks NN_name.ipynb in {notebook_dir or notebooks_dir()}")
    log = log or (lambda *_: None)
    root = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    folder = root / corpus
    work = Path(out_dir) if out_dir is not None else config.results_dir() / corpus / "notebooks"
    if prepare_corpus:
        from .corpora import load_corpus

        log(f"corpus {corpus}: {len(load_corpus(corpus, (params or {}).get('corpus_root')))} utterances")
    injected = {"corpus": corpus, "profile": profile, "data_dir": str(config.data_dir()),
                "results_dir": str(config.results_dir()), "interactive": False}
    injected.update(params or {})
    commit = git_commit()
    done = []
    for path in paths:
        name = path.stem
        log(f"[{name}] running on {corpus}/{profile} ...")
        start_date = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".ipynb", dir=_mkdir(work))
        os.close(fd)
        executed, failed = work / f"{name}.ipynb", work / f"{name}.failed.ipynb"
        try:
            nb = execute_notebook(path, tmp, injected, kernel_name=kernel_name, progress=progress)
        except NotebookError as exc:
            os.replace(tmp, failed)
            raise NotebookError(exc.notebook, str(exc).replace(str(tmp), str(failed)), exc.cell) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        os.replace(tmp, executed)
        failed.unlink(missing_ok=True)
        runtime = time.perf_counter() - t0
        meta = {"name": name, "title": notebook_title(nb) or name, "html": f"{corpus}/{name}.html",
                "corpus": corpus, "profile": profile,
                "date": start_date.strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
                "runtime_s": round(runtime, 1), "parameters": _jsonable(injected),
                "executed_notebook": str(executed)}
        html = render_html(nb, folder / f"{name}.html", meta)
        _update_manifest(folder, meta)
        if index:
            write_index(root)
        log(f"[{name}] done in {_fmt_seconds(runtime)} -> {html}")
        done.append(meta)
    return done


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(d: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(d), default=str))


def _fmt_seconds(s: float) -> str:
    s = float(s)
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


# -------------------------------------------------------------------------------------------- index
def list_reports(reports_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every report recorded in ``reports/<corpus>/manifest.json`` whose HTML exists."""
    root = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for name, meta in sorted(_read_manifest(folder)["reports"].items()):
            if (root / meta.get("html", "")).is_file():
                found.append(dict(meta))
    return found


def write_index(reports_dir: str | os.PathLike | None = None) -> Path:
    """Write ``reports/index.html``: one table per corpus, a row per report with its provenance."""
    root = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    by_corpus: dict[str, list[dict]] = {}
    for meta in list_reports(root):
        by_corpus.setdefault(meta["corpus"], []).append(meta)
    esc = _html.escape
    sections = []
    for corpus, metas in sorted(by_corpus.items()):
        rows = "".join(
            f'<tr><td><a href="{esc(m["html"])}">{esc(m["title"])}</a></td>'
            f'<td>{esc(m["corpus"])}</td><td>{esc(m["profile"])}</td><td>{esc(m["date"])}</td>'
            f'<td><code>{esc(m["commit"])}</code></td><td>{esc(_fmt_seconds(m["runtime_s"]))}</td></tr>'
            for m in metas)
        sections.append(f"<h2>{esc(corpus)}</h2><table><thead><tr><th>report</th><th>corpus</th>"
                        f"<th>profile</th><th>date</th><th>sercore commit</th><th>run time</th></tr>"
                        f"</thead><tbody>{rows}</tbody></table>")
    if not sections:
        sections.append("<p>No reports yet: run <code>make reports</code>.</p>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sercore reports</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1000px;margin:2em auto;
  padding:0 1em;color:#222;line-height:1.45}}
table{{border-collapse:collapse;width:100%;margin-bottom:1.5em}}
th,td{{text-align:left;padding:6px 10px;border-bottom:1px solid #ddd;font-size:14px}}
th{{background:#f6f8fa}} a{{color:#0969da}} code{{font-size:13px}} td+td{{white-space:nowrap}}
</style></head><body>
<h1>sercore reports</h1>
<p>Speech emotion recognition study: each report is a notebook from <code>notebooks/</code> executed
headlessly by papermill (<code>make reports</code>) and rendered to HTML, code hidden (a button in each
report shows it). Every number in a report was computed by the run that produced it, on the corpus,
profile and sercore commit listed here.</p>
{"".join(sections)}
<p style="font-size:12px;color:#666">Index written {esc(_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}.</p>
</body></html>
"""
    path = root / INDEX_NAME
    _atomic_write_text(path, page)
    return path


# --------------------------------------------------------------------------------- notebook helpers
# Small pieces the study notebooks share, so that the notebooks stay thin (calls and figures only).
def setup_notebook(data_dir: str | os.PathLike | None = None, results_dir: str | os.PathLike | None = None,
                   *, seed: int | None = None) -> Path:
    """Prepare a study notebook: data tree, figure style, table display; return the results root.

    Parameters
    ----------
    data_dir : path-like, optional
        sercore's data tree (sets ``SERCORE_DATA_DIR`` for this kernel); default: as configured.
    results_dir : path-like, optional
        Root of training results; default ``config.results_dir()``.
    seed : int, optional
        Seeds numpy's global generator (only for incidental sampling in notebooks; training is seeded
        explicitly).
    """
    import numpy as np
    import pandas as pd

    from . import plots

    if data_dir:
        os.environ["SERCORE_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    enable_compilation_cache()
    plots.set_style()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    if seed is not None:
        np.random.seed(seed)
    return Path(results_dir).expanduser().resolve() if results_dir else config.results_dir()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Keep JAX's compiled programs on disk (``<data_dir>/cache/jax``) so that each notebook's kernel
    (and every later run) reuses the compilations of the previous ones instead of repeating them.

    Respects an existing ``JAX_COMPILATION_CACHE_DIR``. Measured on this project's 2-core machine: the
    first epoch of a smoke run drops from ~34 s to ~6 s when the program is in the cache.
    """
    import sys

    folder = Path(path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or config.data_dir() / "cache" / "jax")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    if "jax" in sys.modules:  # already imported: environment variables are read at import only
        import jax

        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return folder


def md(text: str) -> None:
    """Display ``text`` as Markdown (findings written from computed numbers)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage string: ``pct(0.7312) == '73.1 %'``; ``'n/a'`` for NaN/None."""
    if x is None or x != x:
        return "n/a"
    return f"{100 * float(x):.{digits}f} %"


def frames_lost(durations, crop_s: float, *, sr: int = 16000, hop_length: int = 256):
    """Share of each utterance's STFT frames that a fixed crop to ``crop_s`` seconds throws away.

    Parameters
    ----------
    durations : array-like, shape (n,)
        Utterance durations (s).
    crop_s : float
        Clip length kept (s).

    Returns
    -------
    np.ndarray, shape (n,)
        Fraction in [0, 1): 0 for utterances no longer than the crop.
    """
    import numpy as np

    d = np.asarray(durations, dtype=float)
    frames = 1 + np.floor(d * sr / hop_length)
    kept = 1 + np.floor(crop_s * sr / hop_length)
    return np.clip(frames - kept, 0, None) / frames


def crop_table(df, crops_s: Sequence[float], *, sr: int = 16000, hop_length: int = 256):
    """What fixed-length crops cut off a corpus: one row per crop length.

    Columns: ``crop (s)``, ``utterances cropped (%)``, ``frames lost (%)`` (of all frames in the corpus),
    ``mean loss of cropped (%)``, ``padded (%)`` (utterances shorter than the crop, zero-padded).
    """
    import numpy as np
    import pandas as pd

    d = df["duration"].to_numpy(float)
    frames = 1 + np.floor(d * sr / hop_length)
    rows = []
    for c in crops_s:
        lost = frames_lost(d, c, sr=sr, hop_length=hop_length)
        cropped = lost > 0
        rows.append({"crop (s)": float(c), "utterances cropped (%)": 100 * cropped.mean(),
                     "frames lost (%)": 100 * float((lost * frames).sum() / frames.sum()),
                     "mean loss of cropped (%)": 100 * float(lost[cropped].mean()) if cropped.any() else 0.0,
                     "padded (%)": 100 * float((d < c).mean())})
    return pd.DataFrame(rows)


def one_per_emotion(df, *, seed: int = 0) -> dict:
    """One example row per emotion, all from the same speaker and sentence where the corpus allows.

    Returns a dict ``emotion -> row`` (pandas Series), in canonical emotion order.
    """
    from .plots import emotion_order

    emotions = emotion_order(df["emotion"])
    best = None
    for (spk, text), grp in df.groupby(["speaker", "text"], dropna=False, sort=True):
        cover = grp["emotion"].nunique()
        if best is None or cover > best[0]:
            best = (cover, spk, text)
    out = {}
    for emo in emotions:
        rows = df[df["emotion"] == emo]
        if best is not None:
            pref = rows[(rows["speaker"] == best[1]) & (rows["text"] == best[2])]
            rows = pref if len(pref) else rows
        out[emo] = rows.sample(1, random_state=seed).iloc[0] if len(rows) > 1 else rows.iloc[0]
    return out


def verdict(claimed: float, estimate: float, low: float, high: float, *, comparable: bool = True,
            why: str = "") -> str:
    """Whether a claimed number stands against our estimate and its 95 % interval.

    ``"reproduced"`` if the claim lies inside ``[low, high]``, ``"refuted (ours lower)"`` /
    ``"refuted (ours higher)"`` if outside, ``"not comparable"`` (with ``why``) when the corpus or
    protocol differs, or when the estimate is missing.
    """
    if not comparable or estimate is None or estimate != estimate:
        return "not comparable" + (f" ({why})" if why else "")
    if low != low or high != high:  # no interval (a single run)
        low = high = estimate
    if low <= claimed <= high:
        return "reproduced"
    return "refuted (ours lower)" if claimed > high else "refuted (ours higher)"


#: Classifiers every model-wide notebook trains (03, 04); the smoke profile keeps two cheap ones so
#: that CI stays fast. ``ae_fusion`` needs a trained autoencoder and is studied in notebook 05.
SMOKE_MODELS = ("zhao2d", "attn_blstm")


def default_models(profile: str) -> list[str]:
    """The classifiers notebooks 03 and 04 train under ``profile``: the profile's ``models`` (every
    classifier for ``full``; ``quick`` leaves out the three most expensive; two for ``smoke``)."""
    from .models import list_models, model_info

    if profile == "smoke":
        return list(SMOKE_MODELS)
    from .profiles import get_profile

    chosen = get_profile(profile).models
    return [m for m in list_models() if model_info(m)["task"] == "classify" and m != "ae_fusion"
            and (chosen is None or m in chosen)]


def run_grid(corpus: str, models: Sequence[str], protocols: Sequence[str], profile: str, *,
             seeds: Sequence[int] | None = None, results_root: str | os.PathLike | None = None,
             name: str | None = None, variant: str | None = None, corpus_root=None, df=None, **study_kw):
    """Train every (model, protocol) of a notebook with :func:`sercore.study.run_study`; resumable.

    Finished runs are reused (the study folder is ``<results_root>/<corpus>/<name or profile>``), so
    notebooks that need the same runs share them.

    Parameters
    ----------
    models, protocols : sequence of str
    profile : str
    seeds : sequence of int, optional
        Model seeds (default: the profile's).
    name : str, optional
        Study folder name (default: the profile's name). Give variants of one model (other
        ``model_kwargs``) their own name, since results are grouped by model name.
    variant : str, optional
        Value of the ``variant`` column added to both tables (default: the model name).
    **study_kw
        Passed on (``model_kwargs``, ``augment``, ``augment_before_split``, ``train``, ``folds``, ...).

    Returns
    -------
    results, predictions : pandas.DataFrame
        The runs of this call only (one row per run; one row per test utterance per run), with
        ``variant`` and (results) ``study_dir`` columns.
    """
    import pandas as pd

    from .study import LEAKY_SUFFIX, run_study

    if df is None and corpus_root is not None:
        from .corpora import load_corpus

        df = load_corpus(corpus, corpus_root)
    res, pred = [], []
    for model in models:
        for protocol in protocols:
            st = run_study(corpus, model, protocol, profile, name=name, seeds=seeds, df=df,
                           results_root=results_root, **study_kw)
            run_protocol = protocol + (LEAKY_SUFFIX if study_kw.get("augment_before_split") else "")
            r = st.results[(st.results["model"] == model) & (st.results["protocol"] == run_protocol)]
            if seeds is not None:
                r = r[r["seed"].isin(list(seeds))]
            folds = study_kw.get("folds")
            if folds is not None:
                r = r[r["fold"].isin(list(range(folds)) if isinstance(folds, int) else list(folds))]
            # one run per (fold, seed): the latest if settings changed between calls
            r = r.sort_values("finished_at").drop_duplicates(["fold", "seed"], keep="last")
            r = r.sort_values(["fold", "seed"]).assign(variant=variant or model, study_dir=str(st.dir))
            res.append(r)
            if len(st.predictions):
                pred.append(st.predictions[st.predictions["run_id"].isin(r["run_id"])]
                            .assign(variant=variant or model))
    results = pd.concat(res, ignore_index=True) if res else pd.DataFrame()
    predictions = pd.concat(pred, ignore_index=True) if pred else pd.DataFrame()
    return results, predictions


def summary_table(results, predictions=None, *, by: Sequence[str] = ("variant", "protocol"),
                  n_boot: int = 1000, seed: int = 0):
    """Per ``by`` group: runs, mean UAR / WA over runs with a t-interval, pooled UAR with a bootstrap CI.

    A thin layer over :func:`sercore.metrics.summarize` that keeps the columns a report shows.
    """
    from .metrics import summarize

    s = summarize(results, predictions, by=list(by), n_boot=n_boot, seed=seed)
    for m in ("uar", "wa", "macro_f1"):  # a t-interval over few runs can leave [0, 1]; scores cannot
        for side in ("low", "high"):
            if f"{m}_{side}" in s:
                s[f"{m}_{side}"] = s[f"{m}_{side}"].clip(0.0, 1.0)
    keep = list(by) + [c for c in ("n_runs", "uar_mean", "uar_low", "uar_high", "wa_mean", "wa_low", "wa_high",
                                   "pooled_uar", "pooled_uar_low", "pooled_uar_high") if c in s.columns]
    return s[keep]


def paired_difference(results, a: str, b: str, *, metric: str = "uar", column: str = "variant",
                      protocol: str | None = None) -> dict:
    """Mean difference ``b - a`` of a metric over runs paired by (fold, seed), with a 95 % t-interval.

    Pairing removes the fold-to-fold spread that both models share (same test speakers, same seed).

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``n`` (pairs), ``wins`` (pairs where b > a).
    """
    import numpy as np

    from .metrics import spread

    r = results if protocol is None else results[results["protocol"] == protocol]
    wide = r.pivot_table(index=["fold", "seed"], columns=column, values=metric, aggfunc="mean")
    if a not in wide or b not in wide:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "wins": 0}
    d = (wide[b] - wide[a]).dropna().to_numpy()
    s = spread(d)
    low, high = (max(-1.0, s["low"]), min(1.0, s["high"])) if d.size > 1 else (s["low"], s["high"])
    return {"mean": s["mean"], "low": low, "high": high, "n": int(d.size), "wins": int((d > 0).sum())}


def direction_verdict(diff: Mapping[str, float], *, claim: str = "higher", comparable: bool = True,
                      why: str = "") -> str:
    """Verdict on a claimed direction (``b`` higher / not lower than ``a``) from :func:`paired_difference`.

    ``claim="higher"``: reproduced if the whole interval is above 0, refuted if it is below 0,
    ``"not shown (interval includes 0)"`` otherwise. ``claim="not lower"``: reproduced unless the
    whole interval is below 0.
    """
    if not comparable:
        return "not comparable" + (f" ({why})" if why else "")
    lo, hi, n = diff.get("low"), diff.get("high"), diff.get("n", 0)
    if not n or lo != lo or hi != hi:
        return "not enough runs for an interval"
    if claim == "not lower":
        return "refuted (lower)" if hi < 0 else "reproduced"
    if lo > 0:
        return "reproduced"
    return "refuted (lower)" if hi < 0 else "not shown (interval includes 0)"


def history_table(results):
    """Per-epoch training histories of the given runs as one long table for :func:`plots.learning_curves`.

    Parameters
    ----------
    results : pandas.DataFrame
        Runs from :func:`run_grid` (columns ``run_id`` and ``study_dir``).

    Returns
    -------
    pandas.DataFrame
        Columns ``variant``, ``protocol``, ``fold``, ``seed``, ``epoch``, ``metric`` ("loss" or "UAR"),
        ``split`` ("train" or "validation"), ``value``.
    """
    import pandas as pd

    rows = []
    for r in results.itertuples(index=False):
        path = Path(r.study_dir) / "runs" / r.run_id / "result.json"
        hist = json.loads(path.read_text()).get("history", [])
        for h in hist:
            base = {"variant": getattr(r, "variant", r.model), "protocol": r.protocol, "fold": r.fold,
                    "seed": r.seed, "epoch": h["epoch"]}
            for key, metric, split in (("train_loss", "loss", "train"), ("val_loss", "loss", "validation"),
                                       ("train_acc", "accuracy / UAR", "train (accuracy)"),
                                       ("val_uar", "accuracy / UAR", "validation (UAR)")):
                if key in h and h[key] is not None:
                    rows.append({**base, "metric": metric, "split": split, "value": float(h[key])})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ claims
#: Every number the source documents claim (see ``shared/papers/README.md``), with what it was measured
#: on. ``model`` is the sercore model that implements the claimed network (None: no counterpart);
#: ``protocol`` is the sercore protocol that matches the claim's ("random" = speaker-dependent
#: utterance split, "speaker_kfold" = speaker-independent); ``metric`` is "wa" (accuracy) or "uar".
CLAIMS = [
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9533,
     "protocol": "random", "as_reported": "95.33 % speaker-dependent accuracy"},
    {"source": "Zhao et al. 2019 (abstract)", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.9589,
     "protocol": "speaker_kfold", "as_reported": "95.89 % speaker-independent accuracy"},
    {"source": "seed 000", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.73,
     "protocol": "random", "as_reported": "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)"},
    {"source": "seed 000", "model": "zhao2d_dense", "corpus": "emodb", "metric": "wa", "value": 0.76,
     "protocol": "random", "as_reported": "validation accuracy 0.76 (LSTM replaced by two dense layers)"},
    {"source": "seed 000", "model": "poolfix2d", "corpus": "emodb", "metric": "wa", "value": 0.80,
     "protocol": "random", "as_reported": "validation accuracy 0.80 (smaller pooling along time)"},
    {"source": "seed 001", "model": "td_cnn_lstm", "corpus": None, "metric": "wa", "value": 0.72,
     "protocol": "random", "as_reported": "72 % test (74 % validation), 80/15/5 random split; corpus not named"},
    {"source": "seed 002", "model": "zhao2d", "corpus": "emodb", "metric": "wa", "value": 0.8068,
     "protocol": "random", "as_reported": "best validation accuracy 80.68 %"},
    {"source": "seed 002", "model": "td_cnn_lstm", "corpus": "emodb", "metric": "wa", "value": 0.62,
     "protocol": "random", "as_reported": "best validation accuracy 62 % (18 windows of 5 frames)"},
    {"source": "seed 002", "model": "td_cnn_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6638,
     "protocol": "random", "as_reported": "best validation accuracy 66.38 %"},
    {"source": "seed 002", "model": "zhao1d", "corpus": "emodb", "metric": "wa", "value": 0.654,
     "protocol": "random", "as_reported": "best validation accuracy 65.4 %"},
    {"source": "seed 002", "model": "zhao1d_bilstm", "corpus": "emodb", "metric": "wa", "value": 0.6615,
     "protocol": "random", "as_reported": "66.15 % (the paper's own comparison table labels it "
                                          "'1D CNN-LSTM time distributed')"},
    {"source": "seed 003", "model": "baseline_cnn", "corpus": "ravdess", "metric": "wa", "value": 0.9231,
     "protocol": "random+leaky-augmentation", "as_reported": "test accuracy 92.31 % (random 1:3 split after AWGN "
                                                              "augmentation)"},
    {"source": "seed 003", "model": None, "corpus": "ravdess", "metric": "wa", "value": 0.9583,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + LSTM 95.83 % (layer sizes not given)"},
    {"source": "seed 003", "model": "attn_blstm", "corpus": "ravdess", "metric": "wa", "value": 0.9630,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + attention LSTM 96.30 %"},
    {"source": "seed 003", "model": "ae_fusion", "corpus": "ravdess", "metric": "wa", "value": 0.9754,
     "protocol": "random+leaky-augmentation", "as_reported": "CNN + FC autoencoder (300-d code) 97.54 %"},
    {"source": "seed 004 (Zhang et al. 2021)", "model": "dcnn_blstm_attn", "corpus": "emodb", "metric": "uar",
     "value": 0.8786, "protocol": None, "as_reported": "UAR 87.86 % (protocol not stated in the README)"},
]

PROTOCOL_NAMES = {"random": "speaker-dependent (random utterance folds)",
                  "random+leaky-augmentation": "speaker-dependent, noisy copies of test utterances in training",
                  "speaker_kfold": "speaker-independent (speaker folds)", "loso": "leave-one-speaker-out",
                  None: "not stated"}


def claims_table(summary, corpus: str, *, claims: Sequence[Mapping] | None = None):
    """Each claimed number beside ours on the same model, corpus and protocol, with a verdict.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summary_table` (columns ``variant``, ``protocol``, ``wa_mean/low/high``,
        ``uar_mean/low/high``), one row per model and protocol of this run.
    corpus : str
        The corpus this run used; a claim on another corpus is "not comparable".

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``model``, ``claimed``, ``as reported``, ``claimed on``, ``claimed protocol``, ``ours``,
        ``our protocol``, ``verdict``. "reproduced": the claim lies in our 95 % interval over runs;
        "refuted": outside it.
    """
    import pandas as pd

    rows = []
    by = summary.set_index(["variant", "protocol"])
    for c in claims or CLAIMS:
        model, metric = c["model"], c["metric"]
        proto = c["protocol"] or "speaker_kfold"
        have = model is not None and (model, proto) in by.index
        row = {"source": c["source"], "model": model or "(none in sercore)",
               "claimed": f"{metric.upper()} {100 * c['value']:.2f} %", "as reported": c["as_reported"],
               "claimed on": c["corpus"] or "not stated", "claimed protocol": PROTOCOL_NAMES[c["protocol"]]}
        if have:
            s = by.loc[(model, proto)]
            est, lo, hi = (float(s[f"{metric}_mean"]), float(s[f"{metric}_low"]), float(s[f"{metric}_high"]))
            row["ours"] = f"{metric.upper()} {100 * est:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] ({int(s['n_runs'])} runs)"
            row["our protocol"] = PROTOCOL_NAMES[proto]
        else:
            est = lo = hi = float("nan")
            row["ours"], row["our protocol"] = "not run", ""
        why = []
        if model is None:
            why.append("no matching network")
        if c["corpus"] != corpus:
            why.append(f"claimed on {c['corpus'] or 'an unnamed corpus'}, this run is on {corpus}")
        if c["protocol"] is None:
            why.append("claimed protocol unknown")
        if not have and model is not None:
            why.append("model/protocol not run here" + (" (notebook 05 shows the leaky protocol)"
                                                        if "leaky" in proto else
                                                        " (not among this run's models)"
                                                        if model not in set(summary["variant"]) else ""))
        row["verdict"] = verdict(c["value"], est, lo, hi, comparable=not why, why="; ".join(why))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- error analysis
def with_corpus(predictions, df, columns: Sequence[str] = ("gender", "intensity", "recognition", "naturalness",
                                                           "duration", "text")):
    """Predictions joined with corpus columns (by ``utt_id``), plus ``correct`` (1/0) and ``confidence``
    (the predicted class's probability)."""
    import numpy as np

    cols = [c for c in columns if c in df.columns and c not in predictions.columns]
    out = predictions.merge(df[["utt_id", *cols]], on="utt_id", how="left")
    out["correct"] = (out["true"] == out["pred"]).astype(int)
    prob_cols = [c for c in out.columns if c.startswith("p_")]
    if prob_cols:
        out["confidence"] = out[prob_cols].to_numpy(float).max(axis=1)
    else:
        out["confidence"] = np.nan
    return out


def per_run_scores(predictions, by: str, *, metric: str = "accuracy"):
    """One row per (variant, protocol, run, ``by`` value): ``accuracy`` (or per-class ``recall`` when
    ``by="true_label"``) within that group, for bar charts with an interval over runs."""
    g = predictions.assign(_ok=(predictions["true"] == predictions["pred"]).astype(float))
    keys = [k for k in ("variant", "protocol", "run_id") if k in g.columns] + [by]
    out = g.groupby(keys, dropna=False)["_ok"].mean().rename(metric).reset_index()
    return out


def load_run_model(results_row):
    """The saved model of one run (a row of :func:`run_grid`'s results): a :class:`sercore.predict.SavedModel`."""
    from .predict import load_model

    return load_model(Path(results_row["study_dir"]) / "runs" / results_row["run_id"] / "model")


def model_outputs(saved, rows, *, attention: bool = False, batch_size: int = 32):
    """Features, embeddings (and attention weights) of a saved model on corpus rows.

    Parameters
    ----------
    saved : sercore.predict.SavedModel
    rows : pandas.DataFrame
        Corpus rows (``path`` column).
    attention : bool
        Also return attention weights (models that accept ``return_attention=True``).

    Returns
    -------
    dict
        ``features`` (N, *shape) log-mel dB as extracted (before normalisation), ``embeddings`` (N, D),
        and ``attention`` (N, T) when asked.
    """
    import jax.numpy as jnp
    import numpy as np

    from .features import extract_features

    X = extract_features(rows, saved.feature_cfg, progress=False)
    Xn = saved.normalizer.apply(X)
    embs, weights = [], []
    for i in range(0, len(Xn), batch_size):
        xb = jnp.asarray(Xn[i:i + batch_size])
        if attention:
            z, w = saved.model.embed(xb, return_attention=True)
            weights.append(np.asarray(w))
        else:
            z = saved.model.embed(xb)
        embs.append(np.asarray(z))
    out = {"features": X, "embeddings": np.concatenate(embs)}
    if attention:
        out["attention"] = np.concatenate(weights)
    return out


# ----------------------------------------------------------------------------- autoencoder fusion
def fit_autoencoder(model, X_train, X_val=None, *, epochs: int = 20, batch_size: int = 32,
                    learning_rate: float = 1e-3, patience: int = 5, seed: int = 0):
    """Train an autoencoder (``dense_ae``/``gru_ae``) to reconstruct its input (MSE, Adam), in place.

    Seed 003's recipe: MSE loss, Adam, batch 64 (here the profile's batch size). Early stopping on the
    validation reconstruction error restores the best epoch's weights.

    Parameters
    ----------
    model : nnx.Module
        An autoencoder: ``model(x)`` reconstructs ``x``.
    X_train, X_val : np.ndarray, shape (N, n_mels, n_frames, C)
        Normalised features of the training (and validation) rows only.

    Returns
    -------
    pandas.DataFrame
        History: ``epoch``, ``train_mse``, ``val_mse`` (mean squared error per input value, in squared
        normalised units).

    Notes
    -----
    Belongs with :mod:`sercore.training` (which trains classifiers only); kept here so notebook 05 runs.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import pandas as pd
    from flax import nnx

    opt = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, x):
        def loss_fn(m):
            return jnp.mean((m(x) - x) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    @nnx.jit
    def eval_step(model, x):
        return jnp.mean((model(x) - x) ** 2)

    def mse(X):
        model.eval()
        n = max(1, len(X) // batch_size)
        parts = np.array_split(np.arange(len(X)), n)
        return float(np.average([float(eval_step(model, jnp.asarray(X[p]))) for p in parts],
                                weights=[len(p) for p in parts]))

    rng = np.random.default_rng(seed)
    bs = min(batch_size, len(X_train))
    history, best, best_state, waited = [], np.inf, nnx.state(model), 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(X_train))
        losses = [float(train_step(model, opt, jnp.asarray(X_train[order[i:i + bs]])))
                  for i in range(0, len(order) - bs + 1, bs)]          # full batches: one compiled shape
        row = {"epoch": epoch, "train_mse": float(np.mean(losses))}
        row["val_mse"] = mse(X_val) if X_val is not None and len(X_val) else row["train_mse"]
        history.append(row)
        if row["val_mse"] < best:
            best, best_state, waited = row["val_mse"], jax.tree.map(lambda a: a, nnx.state(model)), 0
        else:
            waited += 1
            if waited >= patience:
                break
    nnx.update(model, best_state)
    model.eval()
    return pd.DataFrame(history)


def fold_autoencoders(corpus: str, profile: str, *, ae: str = "dense_ae", ae_kwargs: Mapping | None = None,
                      protocol: str = "speaker_kfold", folds: Sequence[int] | None = None, seed: int = 0,
                      results_root: str | os.PathLike | None = None, df=None, model: str = "baseline_cnn"):
    """One autoencoder per fold, trained on that fold's training rows only; weights saved, resumable.

    The test speakers' audio never reaches the autoencoder (seed 003 trained its autoencoders on all
    of RAVDESS + CREMA-D, which includes its own test utterances).

    Returns
    -------
    dict
        ``paths`` {fold: weights .npz for ``ae_fusion(encoder=...)``}, ``history`` (DataFrame with
        ``fold``, ``epoch``, ``train_mse``, ``val_mse``), ``folds`` (list of int).
    """
    import json as _json

    import numpy as np
    import pandas as pd

    from .corpora import load_corpus
    from .features import extract_features, fit_normalizer
    from .models import create, save_weights
    from .profiles import get_profile
    from .protocols import make_splits
    from .study import feature_config_for, study_dir
    from .training import TrainConfig

    prof = get_profile(profile)
    if df is None:
        df = load_corpus(corpus)
    df = df.reset_index(drop=True)
    cfg = feature_config_for(model, prof)
    tcfg = TrainConfig.from_dict(prof.train)
    splits = make_splits(df, protocol, k=prof.k, seed=0)
    if folds is None:
        folds = range(len(splits) if prof.folds is None else min(prof.folds, len(splits)))
    folds = list(folds)
    X = None
    kwargs = dict(ae_kwargs or {})
    tag = _json.dumps({"ae": ae, "kw": kwargs, "cfg": cfg.key(), "train": tcfg.to_dict(), "seed": seed},
                      sort_keys=True)
    import hashlib

    key = hashlib.sha1(tag.encode()).hexdigest()[:8]
    root = study_dir(corpus, f"{profile}-autoencoders", results_root)
    paths, hist = {}, []
    for fold in folds:
        path = root / f"{ae}-{protocol}-f{fold}-s{seed}-{key}.npz"
        hpath = path.with_suffix(".history.json")
        if not (path.exists() and hpath.exists()):
            if X is None:
                X = extract_features(df, cfg, progress=False)
            split = splits[fold]
            norm = fit_normalizer(X, split.train)
            net = create(ae, input_shape=cfg.shape, seed=seed, **kwargs)
            h = fit_autoencoder(net, norm.apply(X[split.train]), norm.apply(X[split.val]),
                                epochs=tcfg.epochs, batch_size=tcfg.batch_size,
                                learning_rate=tcfg.learning_rate, patience=tcfg.patience, seed=seed)
            save_weights(net, path)
            _atomic_write_text(hpath, h.to_json(orient="records"))
        paths[fold] = path
        hist.append(pd.read_json(hpath, orient="records").assign(fold=fold))
    return {"paths": paths, "history": pd.concat(hist, ignore_index=True), "folds": folds}
