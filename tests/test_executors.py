"""Studies under the Ray executor: the same run folders and numbers as serial, resumable, failures reported.

The workers are separate processes: they install the tiny stand-in model of ``test_study`` through the
executor's ``setup`` hook (this folder is on their PYTHONPATH).
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sercore import executors
from sercore.errors import ConfigError, RunError
from test_study import run, strip_times, toy  # noqa: F401 (toy: the fixture)

TESTS = str(Path(__file__).resolve().parent)


def test_resolve_names_and_environment(monkeypatch):
    monkeypatch.delenv("SERCORE_EXECUTOR", raising=False)
    assert executors.resolve(None) is None and executors.resolve("serial") is None
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        executors.resolve("dask")
    monkeypatch.setenv("SERCORE_EXECUTOR", "ray")
    monkeypatch.setenv("SERCORE_RAY_ADDRESS", "ray://head:10001")
    ex = executors.resolve(None)
    assert isinstance(ex, executors.RayExecutor) and ex.address == "ray://head:10001"
    assert executors.resolve(ex) is ex
    env = executors.RayExecutor().worker_env(gpus=0)
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"] and env["JAX_PLATFORMS"] == "cpu"
    assert "JAX_PLATFORMS" not in executors.RayExecutor().worker_env(gpus=1)


def test_train_command_options_build_the_executor(monkeypatch):
    import argparse

    from sercore.commands.train import add_executor_args, executor_from_args

    monkeypatch.delenv("SERCORE_EXECUTOR", raising=False)
    monkeypatch.delenv("SERCORE_RAY_ADDRESS", raising=False)
    parser = argparse.ArgumentParser()
    add_executor_args(parser)
    assert executor_from_args(parser.parse_args([])) is None
    ex = executor_from_args(parser.parse_args(["--address", "HEAD:6379", "--gpus-per-run", "0.5"]))
    assert (ex.address, ex.gpus_per_run, ex.cpus_per_run) == ("HEAD:6379", 0.5, 1.0)   # --address implies ray


# --- in the workers -------------------------------------------------------------------------------------

def tiny_models(fail_seed: int | None = None, attempts: str | None = None):
    """Worker setup: the tiny registry; ``create`` raises for ``fail_seed`` (counting attempts in a file)."""
    from test_study import tiny_registry

    mod = tiny_registry()
    if fail_seed is not None:
        create = mod.create

        def failing(name, *, seed=0, **kw):
            if seed == fail_seed:
                with open(attempts, "a") as fh:
                    fh.write("x")
                raise ValueError(f"boom in seed {seed}")
            return create(name, seed=seed, **kw)

        mod.create = failing
    sys.modules["sercore.models"] = mod


def die_once_at_epoch_2(marker: str, row: dict) -> None:
    """on_epoch: the worker process dies (no exception, no cleanup) after epoch 2's checkpoint, once."""
    if row["epoch"] == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


# --- tests ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (pip install -e '.[dev]')")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_raylet_start_wait_time_s", "120")   # a busy CI machine starts the raylet slowly
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def ray_executor(**kw):
    path = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])
    return executors.RayExecutor(env={"PYTHONPATH": path}, **kw)


def test_ray_grid_equals_serial(ray_local, toy, tmp_path):
    t0 = time.perf_counter()
    ref = run(toy, tmp_path / "serial", folds=[0, 1], seeds=[0])
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = run(toy, tmp_path / "ray", folds=[0, 1], seeds=[0], executor=ray_executor(setup=tiny_models))
    t_ray = time.perf_counter() - t0
    print(f"\n2 tiny runs: serial {t_serial:.1f} s, ray {t_ray:.1f} s (workers started and compiled per test)")
    cols = ["run_id", "fold", "seed", "epochs", "best_epoch", "n_train", "n_test"]
    assert got.results[cols].to_dict("records") == ref.results[cols].to_dict("records")
    np.testing.assert_allclose(got.results["uar"], ref.results["uar"], atol=1e-6)
    np.testing.assert_array_equal(got.predictions["pred"], ref.predictions["pred"])
    probs = [f"p_{e}" for e in ref.labels]
    np.testing.assert_allclose(got.predictions[probs], ref.predictions[probs], rtol=1e-4, atol=1e-6)
    for rid in ref.results["run_id"]:    # the same files in every run folder
        files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        assert files(got.dir / "runs" / rid) == files(ref.dir / "runs" / rid)


def test_ray_task_killed_mid_run_resumes(ray_local, toy, tmp_path):
    ref = run(toy, tmp_path / "serial", folds=[0])
    marker = tmp_path / "killed-once"
    got = run(toy, tmp_path / "ray", folds=[0], executor=ray_executor(setup=tiny_models),
              on_epoch=functools.partial(die_once_at_epoch_2, str(marker)))
    assert marker.exists()      # the worker did die, after epoch 2
    import json

    res = json.loads((got.dir / "runs" / got.results["run_id"][0] / "result.json").read_text())
    assert res["resumed"] is True
    want = strip_times(ref.history(ref.results["run_id"][0]).to_dict("records"))
    assert len(res["history"]) == len(want) == 3
    for row, ref_row in zip(strip_times(res["history"]), want):
        assert row == pytest.approx(ref_row, rel=1e-4)
    assert got.results["uar"].tolist() == pytest.approx(ref.results["uar"].tolist(), abs=1e-6)


def test_ray_failing_run_is_retried_reported_and_others_kept(ray_local, toy, tmp_path):
    attempts = tmp_path / "attempts"
    ex = ray_executor(setup=functools.partial(tiny_models, 1, str(attempts)), retries=1)
    with pytest.raises(RunError, match="1 of 2 run") as err:
        run(toy, tmp_path / "res", folds=[0], seeds=[0, 1], executor=ex)
    (rid, message), = err.value.failures.items()
    assert "-s1-" in rid and message == "ValueError: boom in seed 1"
    assert attempts.read_text() == "xx"           # tried, retried once, then reported
    assert err.value.study.results["seed"].tolist() == [0]
    run_dir = err.value.study.dir / "runs" / rid
    assert not (run_dir / "result.json").exists()
    # fixed, the same call redoes only the failed run
    st = run(toy, tmp_path / "res", folds=[0], seeds=[0, 1], executor=ray_executor(setup=tiny_models))
    assert st.results["seed"].tolist() == [0, 1]


class CountingRay(executors.RayExecutor):
    """A Ray executor that records the number of runs of each submission."""

    def run(self, jobs):
        self.submissions = [*getattr(self, "submissions", []), len(jobs)]
        return super().run(jobs)


def test_ray_grid_is_submitted_at_once_and_equals_serial(ray_local, toy, tmp_path):
    from sercore import analysis

    grid = dict(corpus="toy", models=["tiny", "tiny_b"], protocols=["speaker_kfold", "random"], profile="smoke",
                df=toy, k=3, train={"epochs": 2, "learning_rate": 3e-2, "patience": 0}, folds=[0], seeds=[0])
    ref, _ = analysis.run_grid(**grid, results_root=tmp_path / "serial", executor="serial")
    path = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])
    ex = CountingRay(env={"PYTHONPATH": path}, setup=tiny_models)
    got, _ = analysis.run_grid(**grid, results_root=tmp_path / "ray", executor=ex)
    assert ex.submissions == [4]                    # 2 models x 2 protocols x 1 fold x 1 seed, in one submission
    cols = ["model", "protocol", "fold", "seed", "run_id", "epochs", "n_train", "n_test"]
    assert got[cols].to_dict("records") == ref[cols].to_dict("records")
    np.testing.assert_allclose(got["uar"], ref["uar"], atol=1e-6)
    again, _ = analysis.run_grid(**grid, results_root=tmp_path / "ray", executor=ex)
    assert ex.submissions == [4] and again["run_id"].tolist() == got["run_id"].tolist()   # all finished: none resubmitted
