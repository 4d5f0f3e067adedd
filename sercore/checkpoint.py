"""Atomic, single-file checkpoints of JAX pytrees (model state, optimiser state, RNG keys).

A checkpoint is one ``.npz`` file: the pytree's leaves as numbered arrays plus a JSON blob of plain
metadata (epoch, history, early-stopping counters, configs). Restoring needs a *target* pytree of the
same structure (a freshly built model and optimiser), exactly like ``flax.serialization.from_bytes``;
leaf count, shapes and dtypes are checked, so a checkpoint from another model or config is refused
with a :class:`~sercore.errors.ModelError` rather than silently half-loaded.

Why not Orbax or Flax msgpack: the models here are a few MB at most and a study writes one
checkpoint per epoch per run. Orbax's directory-per-step layout, background threads and
``CheckpointManager`` machinery buy nothing at this size and add seconds of start-up per run on
CPU; Flax's msgpack cannot serialise NNX ``State`` objects or typed PRNG key arrays (the dropout RNG
stream) without conversion. Flattening to leaves handles both in a dozen lines, and a temp file +
``os.replace`` makes every write atomic: a killed process leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

_META_KEY = "__meta__"
#: What a truncated or overwritten ``.npz`` raises inside numpy/zipfile.
_DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)
#: What to do about a damaged epoch checkpoint (the default ``fix`` of :func:`load_pytree`).
CHECKPOINT_FIX = ("delete it and re-run the same command: that run starts afresh from its first epoch, "
                  "finished runs are kept")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _is_key(leaf) -> bool:
    import jax

    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_numpy(leaf) -> np.ndarray:
    import jax

    if _is_key(leaf):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def save_pytree(path: str | os.PathLike, tree: Any, meta: dict | None = None) -> Path:
    """Save a pytree's leaves (and JSON-able ``meta``) to one ``.npz`` file, atomically.

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.npz``).
    tree : pytree
        Any JAX pytree: NNX ``State``, optax state, tuples/dicts of them. PRNG key arrays are stored
        as their raw key data.
    meta : dict, optional
        Plain JSON-serialisable metadata stored beside the arrays.
    """
    import jax

    leaves = jax.tree.leaves(tree)
    arrays = {f"leaf_{i:05d}": _to_numpy(leaf) for i, leaf in enumerate(leaves)}
    arrays[_META_KEY] = np.frombuffer(
        json.dumps(meta or {}, default=_json_default).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_meta(path: str | os.PathLike, fix: str = CHECKPOINT_FIX) -> dict:
    """Read only the metadata of a checkpoint written by :func:`save_pytree` (ModelError if damaged)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(bytes(npz[_META_KEY]).decode("utf-8"))
    except _DAMAGED as exc:
        raise ModelError(_damaged(path, exc, fix)) from exc


def _damaged(path, exc, fix: str) -> str:
    return (f"checkpoint {path} is damaged or unreadable ({type(exc).__name__}: {exc}), e.g. cut off by a "
            f"full disk or an interrupted copy; {fix}")


def load_pytree(path: str | os.PathLike, target: Any, fix: str = CHECKPOINT_FIX) -> tuple[Any, dict]:
    """Restore a pytree saved by :func:`save_pytree` into the structure of ``target``.

    Parameters
    ----------
    path : path-like
        A checkpoint file.
    target : pytree
        A pytree with the same structure, shapes and dtypes (e.g. a freshly initialised model state);
        its leaf values are ignored.
    fix : str
        What the error message tells the user to do with a damaged file (default: delete this
        epoch checkpoint and re-run, which restarts only that run).

    Returns
    -------
    tree : pytree
        ``target``'s structure with the saved values (JAX arrays; PRNG keys re-wrapped).
    meta : dict
        The saved metadata.

    Raises
    ------
    ModelError
        If the file is missing, truncated or unreadable (message: the file and ``fix``), or its
        leaves do not match ``target``.
    """
    import jax
    import jax.numpy as jnp

    path = Path(path)
    if not path.exists():
        raise ModelError(f"checkpoint {path} does not exist; train the model first or fix the path")
    leaves, treedef = jax.tree.flatten(target)
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz[_META_KEY]).decode("utf-8"))
            saved = [npz[f"leaf_{i:05d}"] for i in range(len(npz.files) - 1)]
    except _DAMAGED as exc:
        raise ModelError(_damaged(path, exc, fix)) from exc
    if len(saved) != len(leaves):
        raise ModelError(f"checkpoint {path} holds {len(saved)} arrays but the model/optimiser has "
                         f"{len(leaves)}: it was written for another model or config; delete it to retrain")
    restored = []
    for i, (want, got) in enumerate(zip(leaves, saved)):
        if _is_key(want):
            key = jax.random.wrap_key_data(jnp.asarray(got), impl=jax.random.key_impl(want))
            restored.append(key)
            continue
        want_shape = tuple(np.shape(want))
        if tuple(got.shape) != want_shape:
            raise ModelError(f"checkpoint {path}: array {i} has shape {got.shape}, expected {want_shape}; "
                             "it was written for another model or input shape; delete it to retrain")
        restored.append(jnp.asarray(got, dtype=want.dtype if hasattr(want, "dtype") else None))
    return jax.tree.unflatten(treedef, restored), meta
