"""Shared fixtures. Tests make their own tiny audio; real EmoDB is used only where present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_EMODB_CANDIDATES = [os.environ.get("SERCORE_EMODB_DIR"), REPO.parent / "shared" / "data" / "emodb"]
_RAVDESS_CANDIDATES = [os.environ.get("SERCORE_RAVDESS_DIR"), REPO.parent / "shared" / "data" / "ravdess"]


def emodb_root() -> Path | None:
    """The real EmoDB folder (the one holding ``wav/``), or None."""
    for cand in _EMODB_CANDIDATES:
        if cand and (Path(cand) / "wav").is_dir():
            return Path(cand).resolve()
    return None


@pytest.fixture
def emodb_dir() -> Path:
    root = emodb_root()
    if root is None:
        pytest.skip("real EmoDB not found: set SERCORE_EMODB_DIR or place it at ../shared/data/emodb")
    return root


def ravdess_root() -> Path | None:
    """The real RAVDESS speech folder (the one holding ``Actor_01/`` ... ``Actor_24/``), or None."""
    for cand in _RAVDESS_CANDIDATES:
        if cand and (Path(cand) / "Actor_01").is_dir():
            return Path(cand).resolve()
    return None


@pytest.fixture
def ravdess_dir() -> Path:
    root = ravdess_root()
    if root is None:
        pytest.skip("real RAVDESS not found: set SERCORE_RAVDESS_DIR or place it at ../shared/data/ravdess")
    return root


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty, private sercore data tree (SERCORE_DATA_DIR) for one test."""
    d = tmp_path / "sercore-data"
    d.mkdir()
    monkeypatch.setenv("SERCORE_DATA_DIR", str(d))
    return d


def write_wav(path: Path, seconds: float = 0.5, sr: int = 16000, channels: int = 1,
              freq: float = 220.0, subtype: str = "PCM_16", seed: int = 0) -> Path:
    """Write a short tone-plus-noise wav (a stand-in utterance) and return its path."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        y = np.stack([y * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, subtype=subtype)
    return path


@pytest.fixture
def wav_writer():
    return write_wav
