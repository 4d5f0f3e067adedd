"""Every study notebook runs top to bottom under papermill on the smoke profile and renders to HTML.

Runs the real notebooks on the tiny synthetic corpus (``synthetic-small``, generated here) in a
private data tree, with the profile ``smoke`` (tiny inputs, 2 epochs, 2 folds). It checks the pipeline,
not the numbers: each report must exist, carry its figures as embedded PNGs, state the run's
provenance and hide the code by default, and the index must link every report.
"""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from sercore import reports

#: Figures each notebook draws on the smoke profile (synthetic-small: no listener or intensity data).
MIN_FIGURES = {
    "01_data_and_features": 4,     # counts, durations, log-mel grid, crop loss
    "02_lstm_redundancy": 2,       # results with CIs, time-step sweep
    "03_training": 4,              # 2 learning-curve figures, results with CIs, training time
    "04_error_analysis": 8,        # 2 confusions, recall, speakers, gender, 2+ attention, embeddings
    "05_representations_and_augmentation": 3,   # AE reconstruction, fusion CIs, augmentation CIs
    "06_cross_corpus": 2,          # within vs cross CIs (one direction: synthetic-small with itself), recall
}


@pytest.mark.notebooks
@pytest.mark.slow
def test_all_notebooks_smoke(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-cache"))
    out = tmp_path / "reports"
    names = [p.stem for p in reports.list_notebooks()]
    assert names == sorted(MIN_FIGURES), "a notebook was added or renamed: update MIN_FIGURES"

    done = reports.run_notebooks("synthetic-small", "smoke", reports_dir=out, out_dir=tmp_path / "executed",
                                 log=print)

    assert [m["name"] for m in done] == names
    manifest = json.loads((out / "synthetic-small" / "manifest.json").read_text())["reports"]
    index = (out / "index.html").read_text()
    for name in names:
        html = (out / "synthetic-small" / f"{name}.html").read_text()
        n_img = len(re.findall(r'<img[^>]+src="data:image/png;base64,', html))
        assert n_img >= MIN_FIGURES[name], f"{name}: {n_img} embedded figures, expected >= {MIN_FIGURES[name]}"
        assert "What this shows" in html, f"{name}: no closing statement"
        assert "Traceback" not in html
        assert "sercore-show-code" in html                       # code hidden behind a toggle
        meta = manifest[name]
        assert meta["corpus"] == "synthetic-small" and meta["profile"] == "smoke" and meta["runtime_s"] > 0
        assert f'href="synthetic-small/{name}.html"' in index
        executed = nbformat.read(str(tmp_path / "executed" / f"{name}.ipynb"), as_version=4)
        assert not [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("path", reports.list_notebooks(), ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterised(path):
    """Committed notebooks: outputs cleared, one `parameters` cell with the shared parameters, a title,
    and the `sercore` kernel."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks with outputs cleared"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = {p.name for p in PythonTranslator.inspect(tagged[0])}
    assert {"corpus", "profile", "models", "seed", "data_dir", "results_dir", "interactive"} <= params
    assert nb.metadata["kernelspec"]["name"] == "sercore"
    assert reports.notebook_title(nb).startswith(path.stem[:2])
