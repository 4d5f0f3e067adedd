"""Data-parallel training over several JAX devices: the same losses as one device.

Two CPU devices are forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``, which XLA
reads when JAX starts: the comparison runs in a fresh interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sercore.errors import ConfigError
from sercore.training import data_parallel_shardings

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
import jax
from test_training import TinyNet, toy_data
from sercore.training import TrainConfig, fit, train_many
X, y = toy_data(); Xv, yv = toy_data(60, seed=1)
cfg = TrainConfig(epochs=3, batch_size=16, learning_rate=3e-2, patience=0, seed=0)
one = fit(TinyNet(), (X, y), (Xv, yv), cfg, progress=False)
two = fit(TinyNet(), (X, y), (Xv, yv), cfg, progress=False, data_parallel=2)
cfg = cfg.replace(epochs=2)
seeds_one = train_many([TinyNet(seed=s) for s in (0, 1)], (X, y), (Xv, yv), cfg)
seeds_two = train_many([TinyNet(seed=s) for s in (0, 1)], (X, y), (Xv, yv), cfg, data_parallel=2)
print(json.dumps({"devices": jax.device_count(), "one": one.history, "two": two.history,
                  "seeds_one": [r.history for r in seeds_one], "seeds_two": [r.history for r in seeds_two]}))
"""


def test_off_by_default_and_checked(monkeypatch):
    monkeypatch.delenv("SERCORE_DATA_PARALLEL", raising=False)
    assert data_parallel_shardings(None, 32) is None       # one device, the step as it always was
    assert data_parallel_shardings(1, 32) is None and data_parallel_shardings(False, 32) is None
    with pytest.raises(ConfigError, match="JAX sees 1"):
        data_parallel_shardings(4, 32)


def test_two_host_devices_give_the_losses_of_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    for a, b in zip(got["one"], got["two"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["train_acc"] == a["train_acc"]
        # validation runs after BatchNorm statistics reduced across the devices: reassociated sums
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=5e-3)
    # vmapped seeds split over the devices: each device trains its own members (measured: train losses
    # equal to 1e-7, validation losses to 7e-4, the per-device kernels batching one member, not two)
    for ha, hb in zip(got["seeds_one"], got["seeds_two"], strict=True):
        for a, b in zip(ha, hb, strict=True):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=5e-3)
