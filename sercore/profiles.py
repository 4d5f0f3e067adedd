"""Run profiles: one named set of study parameters each, documented here and nowhere else.

``smoke``
    Seconds to a minute: tests and CI. Tiny inputs (32 mels x ~32 frames of 1 s), 2 epochs, the first
    2 folds, one seed. Numbers from it mean nothing; it checks that the pipeline runs.
``quick``
    The main job on 2 CPU cores (every notebook in well under an hour in total on the synthetic
    corpus). Inputs are reduced to 64 mels x 94 frames (3 s at hop 512, n_fft 1024) -- about 5x
    fewer pixels than the paper's 128 x 251 -- all 5 speaker folds, 12 epochs with patience 4, one seed.
``full``
    The real study: the paper's 128 mels x 251 frames (4 s at hop 256), all folds, up to 60 epochs
    with patience 10, three seeds, Adam 1e-3 (override for SGD). Meant for a GPU or a long CPU run.

Expected run times (zhao2d, 5-fold speaker_kfold, feature extraction excluded; measured on this
project's 2-core CPU machine while other jobs were running, so read them as upper-ish estimates):

=========  =======================  ==============================  ===============================
profile    input (mels x frames)    one epoch, EmoDB (~320 train)   whole run, EmoDB 5 folds
=========  =======================  ==============================  ===============================
smoke      32 x 32                  ~0.3 s                          ~15 s (2 folds, 2 epochs, incl. jit)
quick      64 x 94                  see MEASURED below              see MEASURED below
full       128 x 251                see MEASURED below              hours on CPU; minutes on a GPU
=========  =======================  ==============================  ===============================

MEASURED: filled in from ``python -m sercore.study`` benchmarks (see the module's report).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """A named set of study parameters.

    Attributes
    ----------
    name : str
    features : dict
        :class:`~sercore.features.FeatureConfig` overrides applied on top of the model's own feature
        settings (``kind`` is always the model's).
    train : dict
        :class:`~sercore.training.TrainConfig` fields.
    k : int
        Number of folds of ``speaker_kfold`` / ``random``.
    folds : int or None
        How many of the folds to run (the first ``folds``); None = all.
    seeds : tuple of int
        Model seeds; every fold is trained once per seed.
    augment : dict or None
        AWGN augmentation of the training rows: ``{"copies": int, "snr_db": (low, high)}``; None = off.
    description : str
    """

    name: str
    features: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    k: int = 5
    folds: int | None = None
    seeds: tuple[int, ...] = (0,)
    augment: dict | None = None
    description: str = ""

    def replace(self, **kw) -> "Profile":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        features={"n_mels": 32, "duration": 1.0, "hop_length": 512, "n_fft": 512},
        train={"epochs": 2, "batch_size": 16, "patience": 2, "learning_rate": 1e-3},
        k=5, folds=2, seeds=(0,),
        description="pipeline check for tests/CI: tiny inputs, 2 epochs, 2 folds",
    ),
    "quick": Profile(
        name="quick",
        features={"n_mels": 64, "duration": 3.0, "hop_length": 512, "n_fft": 1024},
        train={"epochs": 12, "batch_size": 32, "patience": 4, "learning_rate": 1e-3},
        k=5, folds=None, seeds=(0,),
        description="main CPU job: 64x94 inputs, all 5 folds, <= 12 epochs, one seed",
    ),
    "full": Profile(
        name="full",
        features={"n_mels": 128, "duration": 4.0, "hop_length": 256, "n_fft": 1024},
        train={"epochs": 60, "batch_size": 32, "patience": 10, "learning_rate": 1e-3},
        k=5, folds=None, seeds=(0, 1, 2),
        description="the real study: paper's 128x251 inputs, all folds, <= 60 epochs, 3 seeds (GPU)",
    ),
}


def get_profile(name: str | Profile, **overrides) -> Profile:
    """The profile called ``name`` (``"smoke"``, ``"quick"``, ``"full"``), with fields replaced by
    ``overrides``; ``train``/``features`` overrides are merged into the profile's dicts."""
    if isinstance(name, Profile):
        prof = name
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
        prof = PROFILES[name]
    for key in ("train", "features"):
        if key in overrides and overrides[key] is not None:
            overrides[key] = {**getattr(prof, key), **overrides[key]}
    return prof.replace(**{k: v for k, v in overrides.items() if v is not None})
