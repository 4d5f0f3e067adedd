"""Where a study's runs execute: one after another in this process, or as Ray tasks.

``serial`` (the default) is :func:`sercore.study.run_study`'s own loop. ``ray`` submits every
unfinished (fold, seed) run of a study as one Ray task, which calls ``run_study`` for that fold and
seed in a Ray worker: the worker writes the same run folder a serial run writes (``config.json``,
epoch checkpoints, ``predictions.parquet``, ``model/``, and ``result.json`` last, atomically), so a
serial and a Ray study are interchangeable, resumable by either, and give the same numbers for the
same seeds. Ray is not a dependency of sercore; ``pip install -e '.[ray]'`` adds it.

The executor is chosen by ``run_study(executor=...)``, ``sercore train --executor ray
[--address HOST:PORT]``, or for notebooks and ``sercore reports`` by the environment::

    SERCORE_EXECUTOR=ray SERCORE_RAY_ADDRESS=auto python -m sercore reports --profile quick

Without an address, Ray is started on this machine (``ray.init()``: one worker per core). With one
(``auto`` = the cluster this machine belongs to, or ``ray://HOST:10001`` / ``HOST:6379``), the runs
go to that cluster, whose nodes must see the corpus, the feature cache and the results folder at the
same paths (a shared filesystem): the driver extracts the features once, the workers read them.

Failures: a task whose worker dies (killed, out of memory, node lost) or raises is retried
``retries`` times (a retried run resumes from its last epoch checkpoint); a run that still fails is
reported with its error once every other run has finished, as a :class:`~sercore.errors.RunError`
listing them. A failed run never leaves a ``result.json``, so re-running the study redoes only it.

CPU workers run XLA on one thread each (:data:`ONE_THREAD_XLA_FLAGS`): on a 2-core machine two
one-thread runs side by side train about 1.36x faster than one run on both threads.

>>> run_study("emodb", "zhao2d", "speaker_kfold", "quick", executor="ray")    # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, RunError

EXECUTORS = ("serial", "ray")

#: XLA:CPU settings of a one-CPU worker: Eigen's thread pool off, one intra-op thread.
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RayExecutor:
    """Run a study's (fold, seed) runs as Ray tasks.

    Parameters
    ----------
    address : str, optional
        A running cluster (``ray.init(address=...)``: ``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
        None starts (or reuses) a local Ray with one worker per core. Ignored when Ray is already
        initialised in this process.
    cpus_per_run : float
        CPUs each task declares (default 1).
    gpus_per_run : float, optional
        GPUs each task declares; None = 1 if the cluster has GPUs, else 0. A fraction packs several
        runs on one GPU (then give each a share of its memory, e.g. ``env={"XLA_PYTHON_CLIENT_MEM_FRACTION": ".45"}``).
    retries : int
        Times a failed task is retried (worker crash or exception) before it is reported.
    env : mapping, optional
        Extra environment variables of the workers.
    setup : callable, optional
        Called in the worker before each run (tests use it to install a stand-in model registry).
    """

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None
    retries: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    setup: Callable[[], Any] | None = None
    name: str = "ray"
    _batch: list | None = field(default=None, init=False, repr=False, compare=False)

    @contextlib.contextmanager
    def batch(self):
        """Submit the runs of every study started inside the block to Ray together, when it ends.

        Inside the block :func:`run_remote` only collects each ``run_study`` call's unfinished runs;
        at its end all of them go to Ray at once, so the workers stay busy across models and protocols
        instead of waiting for each study's last run (:func:`sercore.analysis.run_grid` uses it). A
        RunError names the failed runs of every study once the others have finished. Nested blocks
        join the outermost one.
        """
        if self._batch is not None:
            yield self
            return
        self._batch = []
        try:
            yield self
            entries = self._batch
        finally:
            self._batch = None
        failed = self.run([(rid, kw) for rid, kw, _ in entries]) if entries else {}
        if failed:
            dirs = sorted({str(sdir) for rid, _, sdir in entries if rid in failed})
            _raise_failures(self, failed, len(entries), dirs)

    def connect(self):
        """``ray``, initialised (locally or at :attr:`address`)."""
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("executor 'ray' needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')"
                              ) from exc
        if not ray.is_initialized():
            kw = {"address": self.address} if self.address else {}
            # a busy machine can take longer than Ray's default 10 s to register its raylet
            os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
            ray.init(include_dashboard=False, log_to_driver=True, **kw)
        return ray

    def worker_env(self, gpus: float) -> dict:
        """Environment variables a worker starts with: quiet logs, one XLA thread on CPU, huge pages.

        (The driver's data folder is set by each task, so that workers are reused across studies.)
        """
        from . import runtime

        env = {"SERCORE_QUIET": "1"}
        if not gpus:
            flags = os.environ.get("XLA_FLAGS", "")
            if self.cpus_per_run <= 1 and "xla_cpu_multi_thread_eigen" not in flags:
                flags = f"{flags} {ONE_THREAD_XLA_FLAGS}".strip()
            if flags:
                env["XLA_FLAGS"] = flags
            env["JAX_PLATFORMS"] = "cpu"
        if runtime.wanted()[0]:
            env["GLIBC_TUNABLES"] = runtime.environ_with_tunable({"GLIBC_TUNABLES": os.environ.get(
                "GLIBC_TUNABLES", "")})["GLIBC_TUNABLES"]
        env.update(self.env)
        return env

    def run(self, jobs: Sequence[tuple[str, dict]]) -> dict[str, str]:
        """Run ``jobs`` (``(run_id, run_study keyword arguments)``, one fold and seed each) as Ray tasks.

        Returns ``{run_id: error}`` of the runs that failed after their retries (empty if none).
        """
        from .config import data_dir

        ray = self.connect()
        gpus = self.gpus_per_run
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        task = ray.remote(_run_one).options(
            num_cpus=self.cpus_per_run, num_gpus=gpus, max_retries=self.retries, retry_exceptions=True,
            runtime_env={"env_vars": self.worker_env(gpus)})
        refs: dict[int, Any] = {}   # each corpus table once in the object store, not once per task
        pending = {}
        for run_id, kw in jobs:
            shared = {key: refs.setdefault(id(kw[key]), ray.put(kw[key]))
                      for key in ("df", "cross_df") if kw.get(key) is not None}
            kw = {k: v for k, v in kw.items() if k not in shared}
            pending[task.remote(kw, shared, self.setup, str(data_dir()))] = run_id
        total, done, failed = len(pending), 0, {}
        resources = ray.cluster_resources()
        _say(f"ray: {total} run(s) submitted, {self.cpus_per_run:g} CPU + {gpus:g} GPU each; cluster has "
             f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
        t0 = time.perf_counter()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run_id = pending.pop(ready[0])
            done += 1
            try:
                seconds = ray.get(ready[0])
                _say(f"ray [{done}/{total}] {run_id}: finished ({seconds:.0f} s in the worker)")
            except Exception as exc:   # noqa: BLE001 - RayTaskError wraps any worker exception
                failed[run_id] = _error_text(exc)
                _say(f"ray [{done}/{total}] {run_id}: FAILED after {self.retries} retr"
                     f"{'y' if self.retries == 1 else 'ies'}: {failed[run_id]}")
        _say(f"ray: {total - len(failed)} of {total} run(s) finished in {time.perf_counter() - t0:.1f} s"
             + (f"; {len(failed)} failed" if failed else ""))
        return failed


def _error_text(exc: BaseException) -> str:
    """The worker's own exception (type and message) out of Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def _run_one(kwargs: dict, shared: dict, setup, data: str) -> float:
    """A Ray task: one (fold, seed) run, in the worker, on the driver's data folder ``data``; returns
    its seconds."""
    import ray

    t0 = time.perf_counter()
    os.environ["SERCORE_DATA_DIR"] = data
    from .analysis import enable_compilation_cache

    enable_compilation_cache()   # <data>/cache/jax: a worker's first run of a model reuses compiled programs
    if setup is not None:
        setup()
    from .study import run_study

    kw = {**kwargs, **{k: (ray.get(v) if isinstance(v, ray.ObjectRef) else v) for k, v in shared.items()}}
    run_study(**kw, executor="serial", progress=False)
    return time.perf_counter() - t0


def resolve(executor: str | RayExecutor | None = None, address: str | None = None):
    """The executor object for ``executor`` (None: ``$SERCORE_EXECUTOR``, else ``"serial"``).

    Returns None for ``serial`` (run_study's own loop), else a :class:`RayExecutor`; ``address``
    defaults to ``$SERCORE_RAY_ADDRESS``.
    """
    if executor is not None and not isinstance(executor, str):
        return executor
    name = (executor or os.environ.get("SERCORE_EXECUTOR") or "serial").strip().lower()
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)} "
                          "(--executor or SERCORE_EXECUTOR)")
    if name == "serial":
        return None
    return RayExecutor(address=address or os.environ.get("SERCORE_RAY_ADDRESS") or None)


def run_remote(executor, jobs: Sequence[tuple[str, dict]], sdir) -> None:
    """Run ``jobs`` on ``executor``; a RunError naming the failed runs if any failed (the study's
    tables are collected first, so finished runs are in them). Inside ``executor.batch()`` the jobs
    are only collected, to be submitted with the others when the block ends."""
    if getattr(executor, "_batch", None) is not None:
        executor._batch.extend((rid, kw, sdir) for rid, kw in jobs)
        return
    failed = executor.run(jobs) if jobs else {}
    if failed:
        _raise_failures(executor, failed, len(jobs), [str(sdir)])


def _raise_failures(executor, failed: Mapping[str, str], total: int, dirs: Sequence[str]):
    """The RunError of ``failed`` runs out of ``total`` (with the study's tables when one study failed)."""
    from .study import collect

    study = collect(dirs[0]) if len(dirs) == 1 else None
    lines = "\n".join(f"  {rid}: {err}" for rid, err in sorted(failed.items()))
    raise RunError(f"{len(failed)} of {total} run(s) failed under the {executor.name} executor "
                   f"(the other runs finished and are in {', '.join(dirs)}); re-run the same command to retry "
                   f"only these:\n{lines}", failures=dict(failed), study=study)
