"""The report runner (papermill + nbconvert) on tiny throwaway notebooks."""
from __future__ import annotations

import json

import nbformat
import pytest

from sercore import reports
from sercore.errors import ConfigError, SercoreError


def _notebook(path, body: str, title: str = "A tiny report"):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("corpus = 'x'\nprofile = 'y'\nfail = False\ninteractive = True")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat it asks."), params,
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "sercore", "display_name": "Python (sercore)", "language": "python"}
    nbformat.write(nb, str(path))
    return path


FIGURE = """\
%matplotlib inline
from matplotlib.figure import Figure
from IPython.display import Markdown, display
fig = Figure(figsize=(2, 2))
ax = fig.subplots()
ax.plot([0, 1], [0, 1])
ax.set_title('line')
display(fig)
if fail:
    raise ValueError('boom on purpose')
display(Markdown(f'corpus was **{corpus}**'))
"""


@pytest.fixture
def nb_dir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_figure.ipynb", FIGURE)
    _notebook(d / "02_second.ipynb", "print('second', corpus)", title="Second report")
    (d / "scratch.ipynb").write_text("{}")  # not numbered: never run
    return d


def test_list_and_select(nb_dir):
    assert [p.name for p in reports.list_notebooks(nb_dir)] == ["01_figure.ipynb", "02_second.ipynb"]
    assert [p.stem for p in reports.select_notebooks("2", nb_dir)] == ["02_second"]
    assert [p.stem for p in reports.select_notebooks(["02_second", "01"], nb_dir)] == ["01_figure", "02_second"]
    with pytest.raises(ConfigError, match="01_figure"):
        reports.select_notebooks("07", nb_dir)


@pytest.mark.parametrize("text, expected", [
    ("seed=3", ("seed", 3)), ("lr=1e-3", ("lr", 1e-3)), ("models=zhao2d,poolfix2d", ("models", "zhao2d,poolfix2d")),
    ("fast=true", ("fast", True)), ("x=None", ("x", None)), ("seeds=[0, 1]", ("seeds", [0, 1])),
])
def test_parse_param(text, expected):
    assert reports.parse_param(text) == expected


@pytest.mark.parametrize("bad", ["seed", "=3", "two words=1"])
def test_parse_param_rejects(bad):
    with pytest.raises(ConfigError, match="key=value"):
        reports.parse_param(bad)


def test_as_list():
    assert reports.as_list("a, b,,c") == ["a", "b", "c"]
    assert reports.as_list(("a", "b")) == ["a", "b"]
    assert reports.as_list(None) is None


def test_run_renders_html_with_figure_and_index(nb_dir, tmp_path):
    out = tmp_path / "reports"
    done = reports.run_notebooks("toy", "smoke", params={"seed": 5}, reports_dir=out, out_dir=tmp_path / "exec",
                                 notebook_dir=nb_dir, prepare_corpus=False, log=None)
    assert [m["name"] for m in done] == ["01_figure", "02_second"]
    html = (out / "toy" / "01_figure.html").read_text()
    assert html.count("<img") == 1 and "data:image/png;base64," in html
    assert "corpus was <strong>toy</strong>" in html          # Markdown output rendered from a computed value
    assert "sercore-show-code" in html                         # code hidden by default, with a toggle
    assert "<title>A tiny report</title>" in html
    assert (tmp_path / "exec" / "01_figure.ipynb").exists()
    manifest = json.loads((out / "toy" / "manifest.json").read_text())["reports"]
    assert manifest["01_figure"]["parameters"]["seed"] == 5
    assert manifest["02_second"]["profile"] == "smoke" and manifest["02_second"]["runtime_s"] > 0
    index = (out / "index.html").read_text()
    for needle in ('href="toy/01_figure.html"', 'href="toy/02_second.html"', "A tiny report", "Second report",
                   "smoke", manifest["01_figure"]["commit"]):
        assert needle in index


def test_failure_names_notebook_and_cell_and_keeps_old_html(nb_dir, tmp_path):
    out = tmp_path / "reports"
    reports.run_notebooks("toy", "smoke", notebooks="01", reports_dir=out, out_dir=tmp_path / "exec",
                          notebook_dir=nb_dir, prepare_corpus=False, log=None)
    before = (out / "toy" / "01_figure.html").read_bytes()
    with pytest.raises(reports.NotebookError) as info:
        reports.run_notebooks("toy", "smoke", params={"fail": True}, reports_dir=out, out_dir=tmp_path / "exec",
                              notebook_dir=nb_dir, prepare_corpus=False, log=None)
    err = info.value
    assert isinstance(err, SercoreError)
    assert err.notebook == "01_figure" and err.cell is not None
    assert "01_figure.ipynb" in str(err) and f"In [{err.cell}]" in str(err)
    assert "ValueError" in str(err) and "boom on purpose" in str(err)
    assert (out / "toy" / "01_figure.html").read_bytes() == before       # old report intact
    assert not (out / "toy" / "02_second.html").exists()                 # the run stopped at the failure
    assert (tmp_path / "exec" / "01_figure.failed.ipynb").exists()       # traceback kept for reading
    assert str(tmp_path / "exec" / "01_figure.failed.ipynb") in str(err)
    assert not list((out / "toy").glob(".*tmp"))                         # no half-written files


def test_index_without_reports(tmp_path):
    page = reports.write_index(tmp_path).read_text()
    assert "No reports yet" in page


def test_cli_index_and_bad_param(tmp_path, capsys):
    from sercore.cli import main

    assert main(["reports", "--index", "--reports-dir", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").exists()
    assert main(["reports", "--reports-dir", str(tmp_path), "-p", "oops"]) == 1
    assert "key=value" in capsys.readouterr().err


def test_no_absolute_checkout_path_in_html_manifest_or_readme(tmp_path, monkeypatch):
    """Paths inside the checkout are recorded relative to it everywhere: the injected papermill
    parameters, what a cell prints, the header, the manifest and the README."""
    from sercore import config

    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    _notebook(checkout / "notebooks" / "01_paths.ipynb",
              "data_dir = locals().get('data_dir')\nimport os\nprint('data is in', os.path.join(%r, 'data'))"
              % str(checkout))
    nb = nbformat.read(str(checkout / "notebooks" / "01_paths.ipynb"), as_version=4)
    nb.cells[1].source += "\ndata_dir = None\nresults_dir = None"
    nbformat.write(nb, str(checkout / "notebooks" / "01_paths.ipynb"))
    monkeypatch.setattr(config, "REPO_DIR", checkout)
    monkeypatch.setenv("SERCORE_DATA_DIR", str(checkout / "data"))
    out = checkout / "reports"
    reports.run_notebooks("toy", "smoke", reports_dir=out, out_dir=checkout / "data" / "results" / "toy" / "nb",
                          notebook_dir=checkout / "notebooks", prepare_corpus=False, log=None)
    html = (out / "toy" / "01_paths.html").read_text()
    manifest = (out / "toy" / "manifest.json").read_text()
    readme = (out / "README.md").read_text()
    for text in (html, manifest, readme):
        assert str(checkout) not in text
    meta = json.loads(manifest)["reports"]["01_paths"]
    assert meta["parameters"]["data_dir"] == "data" and meta["parameters"]["results_dir"] == "data/results"
    assert meta["executed_notebook"] == "data/results/toy/nb/01_paths.ipynb"
    executed = nbformat.read(str(checkout / "data" / "results" / "toy" / "nb" / "01_paths.ipynb"), as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert str(checkout) not in injected.source and "'data'" in injected.source.replace('"', "'")


def test_readme_provenance_is_generated_from_the_manifests(nb_dir, tmp_path):
    out = tmp_path / "reports"
    done = reports.run_notebooks("toy", "smoke", reports_dir=out, out_dir=tmp_path / "exec", notebook_dir=nb_dir,
                                 prepare_corpus=False, log=None)
    readme = (out / "README.md").read_text()
    assert "generated from the manifests" in readme
    for meta in done:
        assert f"({meta['html']})" in readme and f"`{meta['commit']}`" in readme
    # a manifest edited by another pass changes the README the next time it is written
    path = out / "toy" / "manifest.json"
    data = json.loads(path.read_text())
    data["reports"]["01_figure"]["commit"] = "feedbeef"
    path.write_text(json.dumps(data))
    readme = reports.write_readme(out).read_text()
    assert "from 2 commits" in readme and "`feedbeef`" in readme


def test_in_checkout_only_strips_the_checkout(tmp_path):
    assert reports._in_checkout("/x/repo/data/results", "/x/repo") == "data/results"
    assert reports._in_checkout("cwd /x/repo now", "/x/repo") == "cwd . now"
    assert reports._in_checkout("/x/repo-other/data", "/x/repo") == "/x/repo-other/data"
    assert reports.relative_paths({"a": ["/x/repo/a"], "n": 3}, "/x/repo") == {"a": ["a"], "n": 3}


def test_rendered_tables_scroll_instead_of_clipping(nb_dir, tmp_path):
    out = tmp_path / "reports"
    reports.run_notebooks("toy", "smoke", notebooks="01", reports_dir=out, out_dir=tmp_path / "exec",
                          notebook_dir=nb_dir, prepare_corpus=False, log=None)
    html = (out / "toy" / "01_figure.html").read_text()
    assert ".jp-OutputArea-output{overflow-x:auto" in html


HEADLINE = """\
import pandas as pd
from sercore import analysis
summary = pd.DataFrame([
    {"variant": "zhao2d", "protocol": "speaker_kfold", "uar": 0.61 + 0.1 * (corpus == 'b'), "uar_low": 0.55,
     "uar_high": 0.68, "n_runs": 15},
    {"variant": "egemaps_svm", "protocol": "speaker_kfold", "uar": 0.66, "uar_low": 0.61, "uar_high": 0.71, "n_runs": 5},
    {"variant": "zhao2d", "protocol": "random", "uar": 0.72, "uar_low": 0.69, "uar_high": 0.76, "n_runs": 5}])
rows = analysis.publish_headline(summary, profile=profile)
"""


def test_index_shows_each_corpus_headline_side_by_side(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "03_train.ipynb", HEADLINE)
    out = tmp_path / "reports"
    for corpus in ("a", "b"):
        reports.run_notebooks(corpus, "standard", reports_dir=out, out_dir=tmp_path / "exec" / corpus,
                              notebook_dir=d, prepare_corpus=False, log=None)
    manifest = json.loads((out / "a" / "manifest.json").read_text())["reports"]["03_train"]
    assert [r["model"] for r in manifest["headline"]] == ["zhao2d", "egemaps_svm", "zhao2d"]
    assert manifest["headline"][0]["uar"] == pytest.approx(0.61)
    html = (out / "a" / "03_train.html").read_text()
    assert "vnd.sercore.headline" not in html and '"kind"' not in html     # invisible in the report itself
    index = (out / "index.html").read_text()
    assert "Results side by side" in index
    assert "a, speaker-independent" in index and "b, speaker-independent" in index and "b, speaker-dependent" in index
    assert '<a href="a/03_train.html">61.0</a> [55.0, 68.0]' in index
    assert '<a href="b/03_train.html">71.0</a> [55.0, 68.0]' in index
    assert "(classical baseline)" in index and index.index("zhao2d") < index.index("egemaps_svm")


def test_git_commit_ignores_rendered_reports_but_not_code(tmp_path, monkeypatch):
    """A second `sercore reports` call in one checkout must not record the first one's HTML as a local
    change; a modified source file must still show as +dirty."""
    import subprocess

    import sercore
    from sercore import config

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text("old")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(config, "REPO_DIR", tmp_path)
    clean = sercore.git_commit()
    assert clean != "unknown" and not clean.endswith("+dirty")
    (tmp_path / "reports" / "index.html").write_text("new")
    assert sercore.git_commit() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert sercore.git_commit() == clean + "+dirty"


def test_index_and_readme_link_other_report_sets(tmp_path):
    sub = tmp_path / "supplement"
    reports.write_index(sub)                                   # a report set of its own (--reports-dir)
    (sub / "ABOUT.md").write_text("# Notebook 03 for the costly networks, one seed\n\nmore text\n")
    (tmp_path / "stray").mkdir()                               # a folder without an index is no report set
    assert reports.report_sets(tmp_path) == [("supplement", "Notebook 03 for the costly networks, one seed")]
    page = reports.write_index(tmp_path).read_text()
    assert 'href="supplement/index.html"' in page and "costly networks" in page
    readme = reports.write_readme(tmp_path).read_text()
    assert "[`supplement/`](supplement/index.html): Notebook 03 for the costly networks" in readme
    assert "Other report sets" not in reports.write_readme(sub).read_text()


def _fake_report(root, corpus, rows, name="03_training"):
    """A rendered report with a published headline, as run_notebooks leaves it (manifest + HTML)."""
    folder = root / corpus
    folder.mkdir(parents=True)
    (folder / f"{name}.html").write_text("<html></html>")
    meta = {"name": name, "corpus": corpus, "profile": "standard", "title": "03", "date": "2026-12-04 10:00 UTC",
            "commit": "abc", "runtime_s": 1.0, "html": f"{corpus}/{name}.html",
            "headline": [{"kind": k, "model": m, "protocol": "speaker_kfold", "uar": u, "uar_low": u - 0.05,
                          "uar_high": u + 0.05, "n_runs": n, "profile": "standard"} for k, m, u, n in rows]}
    (folder / "manifest.json").write_text(json.dumps({"reports": {name: meta}}))


def test_index_adds_other_report_sets_to_the_side_by_side_table(tmp_path):
    """A set's network rows join the main table's cells (labelled, linked); its copies of the main
    study's deterministic baseline rows do not; a model only a set ran gets a cell of its own."""
    _fake_report(tmp_path, "emodb", [("network", "baseline_cnn", 0.29, 15), ("baseline", "logmel_lr", 0.48, 5)])
    sub = tmp_path / "fix"
    _fake_report(sub, "emodb", [("network", "baseline_cnn", 0.67, 15), ("network", "zhao1d_bilstm", 0.5, 5),
                                ("baseline", "logmel_lr", 0.48, 5)])
    reports.write_index(sub)
    page = reports.write_index(tmp_path).read_text()
    row = page[page.index("<code>baseline_cnn</code>"):]
    row = row[:row.index("</tr>")]
    assert row.index('href="emodb/03_training.html">29.0') < row.index('href="fix/emodb/03_training.html">67.0')
    assert 'set <a href="fix/index.html">fix/</a>, standard, 15 runs' in row
    assert 'href="fix/emodb/03_training.html">50.0</a>' in page
    lr = page[page.index("<code>logmel_lr</code>"):]
    assert "fix/" not in lr[:lr.index("</tr>")]
