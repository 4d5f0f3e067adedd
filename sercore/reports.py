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
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

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


def _local_kernel_manager():
    """A kernel manager talking to its kernel over Unix sockets in a private temporary folder (not
    TCP on localhost, which makes ipykernel warn about unencrypted traffic on every run); None on
    Windows, which has no IPC transport (papermill's default is used there)."""
    if os.name == "nt":
        return None
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"
            self._sock_dir = tempfile.mkdtemp(prefix="sercore-kernel-")
            self.ip = os.path.join(self._sock_dir, "kernel")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self._sock_dir, ignore_errors=True)

    return LocalKernelManager


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
                            start_timeout=start_timeout,
                            **({"kernel_manager_class": km} if (km := _local_kernel_manager()) else {}))
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
/* wide tables scroll sideways inside their output instead of being clipped at the page's edge */
.jp-OutputArea-output{overflow-x:auto;max-width:100%}
.jp-RenderedHTMLCommon table{max-width:none}
.jp-RenderedImage img{max-width:100%;height:auto}
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


def _in_checkout(value, checkout: str | os.PathLike | None = None) -> str:
    """``str(value)`` with the checkout's absolute path dropped: paths inside it become relative to the
    repository (``/home/me/sercore/data`` -> ``data``, the checkout itself -> ``.``), so committed
    reports and manifests name no machine's folders."""
    text = str(value)
    root = checkout if checkout is not None else config.REPO_DIR
    if root is not None:
        root = str(root).rstrip(os.sep)
        text = text.replace(root + os.sep, "")
        text = re.sub(re.escape(root) + r"(?![\w.-])", ".", text)
    return text


def relative_paths(obj, checkout: str | os.PathLike | None = None):
    """``obj`` (str, or nested dicts / lists of them) with :func:`_in_checkout` applied to every string."""
    if isinstance(obj, str):
        return _in_checkout(obj, checkout)
    if isinstance(obj, Mapping):
        return {k: relative_paths(v, checkout) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(relative_paths(v, checkout) for v in obj)
    return obj


def render_html(nb, html_path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Render an executed notebook to a self-contained HTML file (written atomically).

    Code cells are hidden by default (a button shows them), prompts are dropped, figures stay embedded
    as base64 PNG, stderr streams (progress bars, warnings) are left out. Cells tagged ``remove-cell``
    are dropped; ``remove-input`` / ``remove-output`` drop one half. ``meta`` (corpus, profile, date,
    commit, runtime_s, parameters) is shown in a header.
    """
    import copy

    from nbconvert import HTMLExporter

    from .analysis import HEADLINE_MIME
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                            and HEADLINE_MIME not in o.get("data", {})]   # for the index, not the page
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
    body = _in_checkout(body)   # injected parameters, printed paths, warnings: relative to the repository
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
    manifest["reports"][meta["name"]] = relative_paths(dict(meta))
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
        Rewrite ``reports/index.html`` and the provenance of ``reports/README.md`` after each report.
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
    # paths inside the checkout are injected relative to it (the executed notebook, its HTML and the
    # manifest then name no machine's folders); analysis.setup_notebook resolves them against it
    injected = {"corpus": corpus, "profile": profile, "data_dir": _in_checkout(config.data_dir()),
                "results_dir": _in_checkout(config.results_dir()), "interactive": False}
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
                "executed_notebook": _in_checkout(executed)}
        headline = notebook_headline(nb)
        if headline is not None:
            meta["headline"] = headline
        html = render_html(nb, folder / f"{name}.html", meta)
        _update_manifest(folder, meta)
        if index:
            write_index(root)
            write_readme(root)
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


def notebook_headline(nb) -> list[dict] | None:
    """The headline rows an executed notebook published (:func:`sercore.analysis.publish_headline`)."""
    from .analysis import HEADLINE_MIME

    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {})
            if HEADLINE_MIME in data:
                rows = data[HEADLINE_MIME]
                return json.loads(rows) if isinstance(rows, str) else list(rows)
    return None


def headline_html(metas: Iterable[Mapping[str, Any]]) -> str:
    """The index's side-by-side table: per model, speaker-independent and speaker-dependent UAR with
    95 % intervals on every corpus whose reports published a headline (a link to that report).

    A meta with a ``"set"`` key comes from another report set (:func:`report_sets`); its rows are added
    to the same cells below the main study's, labelled with the set's name, unless they repeat a row
    already there exactly (the classical baselines, which are deterministic and shared, or the same runs
    collected by two sets)."""
    esc = _html.escape
    cells: dict[tuple[str, str], dict[str, list[tuple]]] = {}
    corpora, kinds = [], {}
    def same(r):   # what makes two headline rows the same result
        return round(r["uar"], 6), int(r["n_runs"]), r["profile"]

    metas = sorted(metas, key=lambda m: (m.get("set") is not None, m.get("set") or ""))   # main study first
    for m in metas:
        for r in m.get("headline") or []:
            proto = r["protocol"]
            if proto not in ("speaker_kfold", "random"):
                continue
            hits = cells.get((r["model"], proto), {}).get(m["corpus"], [])
            if m.get("set") is not None and any(same(r) == same(h) for h, _ in hits):
                continue
            if m["corpus"] not in corpora:
                corpora.append(m["corpus"])
            kinds.setdefault(r["model"], r["kind"])
            cells.setdefault((r["model"], proto), {}).setdefault(m["corpus"], []).append((r, m))
    if not cells:
        return ""
    protos = [p for p in ("speaker_kfold", "random") if any(k[1] == p for k in cells)]
    label = {"speaker_kfold": "speaker-independent", "random": "speaker-dependent"}
    head = "".join(f"<th>{esc(c)}, {label[p]}</th>" for p in protos for c in corpora)
    models = sorted(kinds, key=lambda x: (kinds[x] != "network", x))
    body = []
    for model in models:
        tds = []
        for p in protos:
            for c in corpora:
                hits = cells.get((model, p), {}).get(c)
                if not hits:
                    tds.append('<td style="color:#888">not run</td>')
                    continue
                lines = []
                for r, m in hits:
                    where = f'set <a href="{esc(m["set"])}/{INDEX_NAME}">{esc(m["set"])}/</a>, ' if m.get("set") else ""
                    lines.append(f'<a href="{esc(m["html"])}">{100 * r["uar"]:.1f}</a> '
                                 f'[{100 * r["uar_low"]:.1f}, {100 * r["uar_high"]:.1f}] '
                                 f'<span style="color:#666">({where}{esc(r["profile"])}, {int(r["n_runs"])} runs)</span>')
                tds.append(f"<td>{'<br>'.join(lines)}</td>")
        kind = " <span style=\"color:#666\">(classical baseline)</span>" if kinds[model] != "network" else ""
        body.append(f"<tr><td><code>{esc(model)}</code>{kind}</td>{''.join(tds)}</tr>")
    return ("<h2>Results side by side</h2><p>Test UAR % with 95 % bootstrap intervals (speaker-independent: over "
            "test speakers and seeds; speaker-dependent: over utterances within classes and seeds), from each "
            "corpus's training report. A corpus without a report here has not been run. A second line in a cell "
            "comes from another report set (below), rendered with other parameters or at a later commit: its "
            "set's <code>ABOUT.md</code> says how and why.</p>"
            f'<div style="overflow-x:auto"><table><thead><tr><th>model</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _set_reports(root: Path) -> list[dict]:
    """The reports of every other report set under ``root``, their paths made relative to ``root``."""
    out = []
    for name, _ in report_sets(root):
        for meta in list_reports(root / name):
            out.append({**meta, "set": name, "html": f"{name}/{meta['html']}"})
    return out


def report_sets(root: str | os.PathLike) -> list[tuple[str, str]]:
    """Sub-folders of ``root`` that are report roots of their own (``sercore reports --reports-dir
    reports/NAME``): ``(name, first line of its ABOUT.md, or "")``, sorted."""
    out = []
    for index in sorted(Path(root).glob(f"*/{INDEX_NAME}")):
        about = index.parent / "ABOUT.md"
        text = about.read_text().strip().splitlines()[0].lstrip("# ").strip() if about.is_file() else ""
        out.append((index.parent.name, text))
    return out


def write_index(reports_dir: str | os.PathLike | None = None) -> Path:
    """Write ``reports/index.html``: the headline results of every corpus side by side, then one table
    per corpus, a row per report with its provenance."""
    root = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    by_corpus: dict[str, list[dict]] = {}
    for meta in list_reports(root):
        by_corpus.setdefault(meta["corpus"], []).append(meta)
    esc = _html.escape
    sections = [headline_html([m for ms in by_corpus.values() for m in ms] + _set_reports(root))]
    for corpus, metas in sorted(by_corpus.items()):
        rows = "".join(
            f'<tr><td><a href="{esc(m["html"])}">{esc(m["title"])}</a></td>'
            f'<td>{esc(m["corpus"])}</td><td>{esc(m["profile"])}</td><td>{esc(m["date"])}</td>'
            f'<td><code>{esc(m["commit"])}</code></td><td>{esc(_fmt_seconds(m["runtime_s"]))}</td></tr>'
            for m in metas)
        sections.append(f"<h2>{esc(corpus)}</h2><table><thead><tr><th>report</th><th>corpus</th>"
                        f"<th>profile</th><th>date</th><th>sercore commit</th><th>run time</th></tr>"
                        f"</thead><tbody>{rows}</tbody></table>")
    if not by_corpus:
        sections.append("<p>No reports yet: run <code>make reports</code>.</p>")
    others = report_sets(root)
    if others:
        items = "".join(f'<li><a href="{esc(name)}/{INDEX_NAME}">{esc(name)}/</a>: {esc(about)}</li>'
                        for name, about in others)
        sections.append(f"<h2>Other report sets</h2><p>Rendered with other notebook parameters than the "
                        f"study above (each set has its own index and README):</p><ul>{items}</ul>")
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


# ------------------------------------------------------------------------------------------- README
README_NAME = "README.md"

_README_HEAD = """\
# reports/

Rendered results of the study: `index.html` (open it in a browser) links one HTML report per
notebook and corpus, `reports/<corpus>/<notebook>.html`. Each report's header gives its corpus,
profile, date, sercore commit and run time, and `reports/<corpus>/manifest.json` keeps the same record
for every report (paths in it are relative to the repository). Everything here is written by
`make reports` / `python -m sercore reports` (see the top-level README); this file too: its
provenance section below is generated from the manifests each time a report is rendered, so it cannot
disagree with them. Run times count only the training a pass did; finished runs are reused across
passes (run ids hash every setting), so a report's run time can be far below the from-scratch cost
listed in `sercore/profiles.py`.

`synthetic/` is what `make reports` writes on a fresh clone (the built-in synthetic corpus); it is
not committed, since anyone can regenerate it offline.
"""


def write_readme(reports_dir: str | os.PathLike | None = None) -> Path:
    """Write ``reports/README.md``: fixed text plus a provenance table per corpus generated from the
    manifests (report, profile, commit, date, run time), never typed in by hand."""
    root = Path(reports_dir) if reports_dir is not None else config.reports_dir()
    by_corpus: dict[str, list[dict]] = {}
    for meta in list_reports(root):
        by_corpus.setdefault(meta["corpus"], []).append(meta)
    lines = [_README_HEAD, "## Provenance (generated from the manifests)", ""]
    if not by_corpus:
        lines.append("No reports yet: run `make reports`.")
    for corpus, metas in sorted(by_corpus.items()):
        commits = sorted({str(m.get("commit", "?")) for m in metas})
        profiles = sorted({str(m.get("profile", "?")) for m in metas})
        dates = sorted(str(m.get("date", "")) for m in metas)
        total = sum(float(m.get("runtime_s", 0)) for m in metas)
        lines += [f"### {corpus}", "",
                  f"{len(metas)} report(s) at profile {', '.join(f'`{p}`' for p in profiles)}, rendered "
                  + (f"from commit `{commits[0]}`" if len(commits) == 1 else
                     f"from {len(commits)} commits ({', '.join(f'`{c}`' for c in commits)})")
                  + f", {dates[0]} to {dates[-1]}; {_fmt_seconds(total)} of notebook run time in all. "
                  f"Record: `{corpus}/{MANIFEST_NAME}`.", "",
                  "| report | profile | commit | date | run time |", "|---|---|---|---|---|"]
        lines += [f"| [{m.get('title', m['name'])}]({m['html']}) | {m.get('profile', '?')} | "
                  f"`{m.get('commit', '?')}` | {m.get('date', '?')} | {_fmt_seconds(m.get('runtime_s', 0))} |"
                  for m in metas]
        lines.append("")
    others = report_sets(root)
    if others:
        lines += ["## Other report sets", "", "Rendered with other notebook parameters than the study above; each "
                  "has its own `index.html`, `README.md` (provenance) and `ABOUT.md` (how it was made).", ""]
        lines += [f"- [`{name}/`]({name}/{INDEX_NAME})" + (f": {about}" if about else "") for name, about in others]
        lines.append("")
    path = root / README_NAME
    _atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
