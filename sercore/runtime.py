"""Process set-up that makes JAX on CPU faster: transparent huge pages for XLA's large buffers.

XLA:CPU allocates a jitted step's temporaries afresh on every call (about 1.8 GB for a zhao2d
training step at batch 32). glibc serves every allocation above 32 MiB with a fresh ``mmap``, so
each step touches all of that memory for the first time, in 4 KiB pages: about 460,000 page faults
per zhao2d step on the 2-core development machine, about a fifth of the step's time. glibc's tunable
``glibc.malloc.hugetlb=1`` (glibc >= 2.35) makes malloc ask the kernel for transparent huge pages
(``madvise``), 2 MiB each: a few thousand faults per step; zhao2d training went from 24 to 31
samples/s there (PyTorch's CPU allocator gains as much: ``sercore bench`` runs both with the same
environment).

Tunables are read when a process starts, so:

* the ``sercore`` command sets ``GLIBC_TUNABLES`` and re-executes itself once (:func:`reexec`);
* the ``sercore`` Jupyter kernel carries it in its kernel spec (:func:`add_to_kernel_spec`, run by
  ``make setup``), so notebooks and papermill runs get it;
* the Makefile exports it for ``make test`` / ``make reports`` / ``make bench``.

In a Python process started some other way it is not active; :func:`status` says so and how to
start one that has it. ``SERCORE_HUGEPAGES=0`` turns all of this off (e.g. to measure without it).
Nothing changes numerically: it is only how memory is mapped. On systems without glibc >= 2.35 or
with transparent huge pages set to ``never`` it does nothing.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

__all__ = ["TUNABLE", "wanted", "active", "environ_with_tunable", "reexec", "add_to_kernel_spec", "status"]

#: The glibc tunable sercore sets (``GLIBC_TUNABLES`` holds ``name=value`` pairs joined by ':').
TUNABLE = "glibc.malloc.hugetlb=1"
_OFF_SWITCH = "SERCORE_HUGEPAGES"
_REEXEC_MARK = "SERCORE_REEXECUTED"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _glibc_version() -> tuple[int, ...] | None:
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return None
    try:
        return tuple(int(v) for v in version.split(".")[:2])
    except ValueError:
        return None


def _thp_mode(path: Path = _THP) -> str | None:
    """The kernel's transparent huge page mode ('always', 'madvise', 'never'), None if unknown."""
    try:
        text = path.read_text()
    except OSError:
        return None
    chosen = [word[1:-1] for word in text.split() if word.startswith("[") and word.endswith("]")]
    return chosen[0] if chosen else None


def wanted(environ: dict | None = None) -> tuple[bool, str]:
    """Whether the tunable can help in this process's environment, and why (not)."""
    environ = os.environ if environ is None else environ
    if environ.get(_OFF_SWITCH, "1") == "0":
        return False, f"{_OFF_SWITCH}=0"
    if sys.platform != "linux":
        return False, "not Linux"
    glibc = _glibc_version()
    if glibc is None or glibc < (2, 35):
        return False, f"needs glibc >= 2.35 (found {platform.libc_ver()[1] or 'none'})"
    mode = _thp_mode()
    if mode == "never":
        return False, "transparent huge pages are off in the kernel ('never')"
    return True, f"glibc {'.'.join(map(str, glibc))}, transparent huge pages '{mode or 'unknown'}'"


def active(environ: dict | None = None) -> bool:
    """Whether ``GLIBC_TUNABLES`` (as this process was started with) holds the tunable."""
    environ = os.environ if environ is None else environ
    return TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":")


def environ_with_tunable(environ: dict | None = None) -> dict:
    """A copy of ``environ`` with the tunable added to ``GLIBC_TUNABLES`` (other tunables kept)."""
    env = dict(os.environ if environ is None else environ)
    if not active(env):
        name = TUNABLE.split("=")[0]
        kept = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and t.split("=")[0] != name]
        env["GLIBC_TUNABLES"] = ":".join([*kept, TUNABLE])
    return env


def reexec(argv: list[str]) -> None:
    """Re-execute ``python -m sercore *argv`` with the tunable set, if it would help and is missing.

    Called by the ``sercore`` command before anything heavy is imported. Returns (does nothing)
    when the tunable is active, not wanted, or this process is already a re-execution.
    """
    ok, _ = wanted()
    if not ok or active() or os.environ.get(_REEXEC_MARK):
        return
    env = environ_with_tunable()
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "sercore", *argv], env)
    except OSError:          # no exec (odd sandboxes): run as we are, only slower
        return


def add_to_kernel_spec(kernel_json: str | os.PathLike) -> bool:
    """Add the tunable to a Jupyter kernel spec's ``env`` (what ``make setup`` does for ``sercore``).

    Returns True if the file changed. A missing or unreadable spec raises ``FileNotFoundError`` /
    ``ValueError`` naming it.
    """
    path = Path(kernel_json)
    if not path.is_file():
        raise FileNotFoundError(f"no Jupyter kernel spec at {path}; install the kernel first "
                                "(python -m ipykernel install --prefix .venv --name sercore)")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); reinstall the kernel") from exc
    env = spec.setdefault("env", {})
    merged = environ_with_tunable({"GLIBC_TUNABLES": env.get("GLIBC_TUNABLES", "")})["GLIBC_TUNABLES"]
    if env.get("GLIBC_TUNABLES") == merged:
        return False
    env["GLIBC_TUNABLES"] = merged
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return True


def status() -> str:
    """One line for logs and ``sercore bench``: is the huge-page tunable on in this process?"""
    ok, why = wanted()
    if active():
        return f"huge pages for XLA buffers: on ({TUNABLE}; {why})"
    if not ok:
        return f"huge pages for XLA buffers: off ({why})"
    return (f"huge pages for XLA buffers: off in this process (start it with GLIBC_TUNABLES={TUNABLE}, "
            "or use the `sercore` command or kernel, which set it)")


if __name__ == "__main__":      # python -m sercore.runtime KERNEL_JSON  (used by make setup)
    for arg in sys.argv[1:]:
        changed = add_to_kernel_spec(arg)
        print(f"{arg}: {'added' if changed else 'already has'} GLIBC_TUNABLES={TUNABLE}")
