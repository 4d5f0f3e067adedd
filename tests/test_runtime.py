"""sercore.runtime: the huge-page tunable is added without clobbering others, re-exec happens once."""
import json
import os
import subprocess
import sys

import pytest

from sercore import runtime


def test_environ_with_tunable_keeps_other_tunables_and_is_idempotent():
    env = runtime.environ_with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/h"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + runtime.TUNABLE
    assert env["HOME"] == "/h"
    assert runtime.environ_with_tunable(env) == env
    # an existing, different value of the same tunable is replaced, not duplicated
    env = runtime.environ_with_tunable({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert env["GLIBC_TUNABLES"] == runtime.TUNABLE
    assert runtime.environ_with_tunable({})["GLIBC_TUNABLES"] == runtime.TUNABLE
    assert runtime.active(env) and not runtime.active({}) and not runtime.active({"GLIBC_TUNABLES": "x=1"})


def test_off_switch_and_kernel_without_huge_pages(monkeypatch, tmp_path):
    assert runtime.wanted({"SERCORE_HUGEPAGES": "0"}) == (False, "SERCORE_HUGEPAGES=0")
    thp = tmp_path / "enabled"
    thp.write_text("always madvise [never]\n")
    assert runtime._thp_mode(thp) == "never"
    thp.write_text("always [madvise] never\n")
    assert runtime._thp_mode(thp) == "madvise"
    assert runtime._thp_mode(tmp_path / "missing") is None
    monkeypatch.setattr(runtime, "_thp_mode", lambda: "never")
    ok, why = runtime.wanted({})
    assert not ok and ("never" in why or "glibc" in why or "Linux" in why)


def test_reexec_once_with_the_tunable(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "wanted", lambda: (True, "test"))
    monkeypatch.setattr(runtime.os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("SERCORE_REEXECUTED", raising=False)
    runtime.reexec(["bench", "--models", "zhao2d"])
    (exe, argv, env), = calls
    assert exe == sys.executable and argv == [sys.executable, "-m", "sercore", "bench", "--models", "zhao2d"]
    assert runtime.active(env) and env["SERCORE_REEXECUTED"] == "1"
    # already active, or already re-executed (a glibc that ignores the tunable): no second exec
    monkeypatch.setenv("GLIBC_TUNABLES", runtime.TUNABLE)
    runtime.reexec([])
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("SERCORE_REEXECUTED", "1")
    runtime.reexec([])
    assert len(calls) == 1


def test_the_command_still_runs_after_reexec():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SERCORE_REEXECUTED")}
    out = subprocess.run([sys.executable, "-m", "sercore", "--version"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("sercore ")


def test_add_to_kernel_spec(tmp_path):
    spec = tmp_path / "kernel.json"
    spec.write_text(json.dumps({"argv": ["python"], "env": {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "A": "b"}}))
    assert runtime.add_to_kernel_spec(spec)
    env = json.loads(spec.read_text())["env"]
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:" + runtime.TUNABLE, "A": "b"}
    assert not runtime.add_to_kernel_spec(spec)                 # second call: nothing to do
    with pytest.raises(FileNotFoundError, match="missing.json"):
        runtime.add_to_kernel_spec(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        runtime.add_to_kernel_spec(tmp_path / "bad.json")


def test_status_names_the_state():
    line = runtime.status()
    assert line.startswith("huge pages for XLA buffers: ")
    assert ("on (" in line) == runtime.active()
