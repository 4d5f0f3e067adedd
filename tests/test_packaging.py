"""The project's set-up files agree with each other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# conda-forge names that differ from the PyPI name of the same package
CONDA_TO_PYPI = {"pysoundfile": "soundfile", "soxr-python": "soxr"}
NOT_PACKAGES = {"python", "pip"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta.get("optional-dependencies", {}).values() for r in extra]
    return {_name(r) for r in reqs}


def environment_packages() -> set[str]:
    names = set()
    text = (REPO / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().endswith(":"):
            names.add(_name(m.group(1)))
    names = {CONDA_TO_PYPI.get(n, n) for n in names} - NOT_PACKAGES
    return names


def test_environment_yml_lists_the_same_packages_as_pyproject():
    py, env = pyproject_packages(), environment_packages()
    assert py == env, f"only in pyproject.toml: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


@pytest.mark.parametrize("pkg", ["jax", "flax", "optax", "librosa", "pandas", "seaborn", "papermill", "jupyterlab"])
def test_design_card_packages_are_declared(pkg):
    assert pkg in pyproject_packages()


def test_top_level_layout():
    for name in ["notebooks", "sercore", "data", "environment.yml", "tests", "reports",
                 "pyproject.toml", "README.md", "Makefile", ".ci/run"]:
        assert (REPO / name).exists(), f"{name} is missing from the top level"


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make reports" in readme
    assert re.search(r"^make test\b", ci, re.M), ".ci/run must call the README's test command"


def test_console_script_declared():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["sercore"] == "sercore.cli:main"


def test_audio_error_survives_pickling():
    """Worker processes send AudioError back to the parent; path and message must survive."""
    import pickle

    from sercore.errors import AudioError

    err = pickle.loads(pickle.dumps(AudioError("/corpus/wav/x.wav", "empty file: re-download it")))
    assert err.path == "/corpus/wav/x.wav"
    assert str(err) == "/corpus/wav/x.wav: empty file: re-download it"
