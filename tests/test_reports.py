"""The report runner (papermill + nbconvert) on tiny throwaway notebooks."""
from __future__ import annotations

import json

import nbformat
import pytest

from sercore import analysis, claims, reports
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


# ------------------------------------------------------------------------------ notebook helpers
def test_frames_lost_and_crop_table():
    import numpy as np
    import pandas as pd

    lost = analysis.frames_lost([1.0, 4.0, 8.0], 4.0, sr=16000, hop_length=256)
    assert lost[0] == 0 and lost[1] == 0
    assert lost[2] == pytest.approx((501 - 251) / 501)           # 1 + 8*16000//256 = 501 frames, 251 kept
    table = analysis.crop_table(pd.DataFrame({"duration": [1.0, 4.0, 8.0]}), [4.0], sr=16000, hop_length=256)
    row = table.iloc[0]
    assert row["utterances cropped (%)"] == pytest.approx(100 / 3)
    assert row["frames lost (%)"] == pytest.approx(100 * 250 / (63 + 251 + 501))
    assert row["padded (%)"] == pytest.approx(100 / 3)
    assert np.isfinite(table.to_numpy(float)).all()


@pytest.mark.parametrize("claimed, low, high, comparable, expected", [
    (0.75, 0.70, 0.80, True, "reproduced"),
    (0.90, 0.70, 0.80, True, "refuted (ours lower)"),
    (0.60, 0.70, 0.80, True, "refuted (ours higher)"),
    (0.75, 0.70, 0.80, False, "not comparable (other corpus)"),
])
def test_verdict(claimed, low, high, comparable, expected):
    assert claims.verdict(claimed, (low + high) / 2, low, high, comparable=comparable, why="other corpus") == expected


def test_paired_difference_and_direction():
    import pandas as pd

    res = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 4, "fold": [0, 1, 2, 3] * 2, "seed": 0,
                        "uar": [0.5, 0.6, 0.55, 0.4, 0.6, 0.72, 0.64, 0.52]})
    d = analysis.paired_difference(res, "a", "b")
    assert d["n"] == 4 and d["wins"] == 4 and d["mean"] == pytest.approx(0.1075)
    assert d["low"] > 0 and claims.direction_verdict(d, claim="higher") == "reproduced"
    assert claims.direction_verdict(analysis.paired_difference(res, "b", "a"), claim="not lower") == "refuted (lower)"
    assert analysis.paired_difference(res, "a", "missing")["n"] == 0


def test_claims_table_only_compares_like_with_like():
    import pandas as pd

    summary = pd.DataFrame({"variant": ["zhao2d", "zhao2d"], "protocol": ["random", "speaker_kfold"], "n_runs": 5,
                            "wa_mean": [0.80, 0.60], "wa_low": [0.78, 0.55], "wa_high": [0.82, 0.65],
                            "uar_mean": [0.79, 0.58], "uar_low": [0.75, 0.5], "uar_high": [0.83, 0.66]})
    on_emodb = claims.claims_table(summary, "emodb").set_index(["source", "as reported"])["verdict"]
    assert on_emodb[("seed 002", "best validation accuracy 80.68 %")] == "reproduced"          # 0.8068 in [.78, .82]
    assert on_emodb[("seed 000", "validation accuracy 0.73 (speaker-dependent, KerasTuner-tuned)")] == \
        "refuted (ours higher)"
    assert on_emodb[("Zhao et al. 2019 (abstract)", "95.89 % speaker-independent accuracy")] == "refuted (ours lower)"
    assert on_emodb.str.startswith("not comparable").sum() == len(claims.CLAIMS) - 4
    elsewhere = claims.claims_table(summary, "synthetic")["verdict"]
    assert elsewhere.str.startswith("not comparable").all()
