"""Plain ``.npz`` weight files for a model or one part of it (e.g. the DCNN's segment CNN).

A file holds one array per variable (parameters and BatchNorm statistics), keyed by its path in the
module ("blocks/0/conv/kernel"), plus ``__spec__`` (JSON: the ``create`` arguments) when the module
was made by :func:`sercore.models.create`, so :func:`load_model` can rebuild it. Writes are atomic.
Training checkpoints (optimizer state, resumable runs) are :mod:`sercore.checkpoint`'s job.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from flax import nnx

from ..errors import ModelError

SPEC_KEY = "__spec__"


def _variables(module: nnx.Module) -> dict[str, nnx.Variable]:
    out = {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState):
            out["/".join(str(p) for p in path)] = node
    return out


def save_weights(module: nnx.Module, path) -> Path:
    """Write every variable of ``module`` to ``path`` (.npz); returns the path."""
    path = Path(path)
    arrays = {k: np.asarray(v[...]) for k, v in _variables(module).items()}
    spec = getattr(module, "spec", None)
    if isinstance(spec, dict) and "name" in spec:
        arrays[SPEC_KEY] = np.array(json.dumps(spec))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _read(path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file; give the path of a .npz written by "
                         "sercore.models.save_weights")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zip/format errors
        raise ModelError(f"{path}: not a readable .npz weights file ({e}); re-save it with "
                         "sercore.models.save_weights") from e


def load_weights(module: nnx.Module, path, *, strict: bool = True) -> nnx.Module:
    """Copy the arrays in ``path`` into ``module``'s variables (in place); returns ``module``.

    Raises :class:`~sercore.errors.ModelError` naming the file and the first mismatching variable if
    a name is missing or a shape differs (``strict=False`` skips variables absent from the file).
    """
    arrays = _read(path)
    arrays.pop(SPEC_KEY, None)
    targets = _variables(module)
    for key, var in targets.items():
        if key not in arrays:
            if strict:
                raise ModelError(f"{path}: has no array for {key!r} (the file holds "
                                 f"{len(arrays)} arrays); it was saved from a different architecture "
                                 "- build the model with the same arguments as the saved one")
            continue
        if arrays[key].shape != var[...].shape:
            raise ModelError(f"{path}: {key!r} has shape {arrays[key].shape}, the model expects "
                             f"{var[...].shape}; build the model with the arguments it was saved with")
        var[...] = arrays[key].astype(var[...].dtype)
    extra = set(arrays) - set(targets)
    if strict and extra:
        raise ModelError(f"{path}: holds arrays the model lacks, e.g. {sorted(extra)[0]!r}; "
                         "it was saved from a different architecture")
    return module


def load_model(path) -> nnx.Module:
    """Rebuild a model saved by :func:`save_weights` from its stored ``create`` arguments."""
    from . import create

    arrays = _read(path)
    if SPEC_KEY not in arrays:
        raise ModelError(f"{path}: holds no model spec; it was saved from a module not made by "
                         "sercore.models.create - build the model yourself and use load_weights")
    spec = json.loads(str(arrays[SPEC_KEY]))
    model = create(spec["name"], num_classes=spec["num_classes"],
                   input_shape=tuple(spec["input_shape"]), seed=spec["seed"], **spec["kwargs"])
    return load_weights(model, path)
