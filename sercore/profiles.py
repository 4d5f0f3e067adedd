"""Run profiles: one named set of study parameters each, documented here and nowhere else.

``smoke``
    Seconds to a minute: tests and CI. Tiny inputs (32 mels, random 0.75 s crops of 24 frames, whole
    utterances scored over windows, as ``standard`` does), 2 epochs, the first 2 folds, one seed.
    Numbers from it mean nothing; it checks that the pipeline runs.
``standard``
    The converged study on 2 CPU cores (the committed EmoDB reports): see :data:`STANDARD_SEGMENTS`
    and the profile's settings below, and the README's "converged recipe".
``quick``
    The main job on 2 CPU cores, sized to finish in under an hour on EmoDB (measurements below). Inputs are reduced to 40 mels x 63 frames (3 s at hop 768 = 48 ms, n_fft
    1024) -- 40 log-mel bands is the classic SER filterbank size; the time resolution is coarser than
    the paper's -- all 5 speaker folds, 4 to 8 epochs (patience 3 after epoch 4) at batch 16, one
    seed, BatchNorm momentum 0.9, and the 8 classifiers of :data:`QUICK_MODELS` (the raw-audio nets
    and DCNN-BLSTMwA cost 8-16x more per epoch). Batch 16 rather than 32: on EmoDB fold 0 zhao2d's
    validation UAR leaves chance at epoch 3 instead of 6 for the same time per epoch (test UAR 0.55 vs
    0.50 after 8 epochs); with ~20 steps an epoch, Keras' BatchNorm momentum 0.99 would leave the
    evaluation statistics stale (see :class:`~sercore.training.TrainConfig`). The baseline CNN trains
    without dropout (:data:`BASELINE_NO_DROPOUT`). Almost every run uses all 8 epochs: the models are
    still improving, so quick's numbers understate what ``full`` reaches.
``full``
    The real study, for a GPU: ``standard``'s recipe (BatchNorm momentum 0.9, warm-up + cosine, class
    weights, SpecAugment, mixup, crops scored over whole utterances) at the paper's 128 mels x 251
    frames (random 4 s crops at hop 256, scored every 2 s), every classifier, all folds, up to 60
    epochs with patience 10, three seeds, Adam 1e-3. Until 2026-12-04 ``full`` was the paper's bare
    settings (fixed 4 s inputs, constant learning rate, Keras' BatchNorm momentum 0.99), and it did not
    learn: on the synthetic corpus (fold 0, zhao2d, seed 0) training accuracy rose to 0.86 in 15 epochs
    while the validation UAR sat at chance (0.143) from epoch 3 on, because with 14 steps an epoch
    momentum 0.99 leaves the evaluation statistics stale; early stopping then kept epoch 2 (test UAR
    0.17 on this CPU, 0.22 on a GPU). The same run with this recipe, also capped at 15 epochs (``--epochs
    15``; one core of this CPU, 257 s): validation UAR 0.46 by epoch 6 and 0.53 at epoch 11, test UAR 0.44
    (a single run: evidence that it learns, not a figure of the study).

Measured at ``quick`` on this project's 2-core CPU machine (AMD EPYC Zen 3), EmoDB, seconds per epoch
(median over 10 runs of 309 training + ~110 validation clips) and per run (up to 8 epochs, first-epoch
compilation included):

================  ===========  =========
model             s / epoch    s / run
================  ===========  =========
zhao2d            2.8          24
zhao2d_dense      2.8          23
poolfix2d         3.0          24
poolfix2d_bilstm  2.6          20
attn_blstm        2.9          23
baseline_cnn      2.7          19
td_cnn_bilstm     5.1          42
td_cnn_lstm       6.5          52
zhao1d            32           (not in quick: 16 kHz raw audio)
zhao1d_bilstm     41           (not in quick)
dcnn_blstm_attn   22           (not in quick)
================  ===========  =========

The table was measured before the December 2026 speed-ups (``sercore.ops`` pool-first LFLBs, huge
pages, Winograd convolutions, the fused first block, batch chunks); in the run below a run took
6-13 s (zhao2d, median 7 s) and 13-27 s (td_cnn_*, medians 16 and 21 s), about 2.5-3.5x faster.
(``quick``'s 40 x 63 maps are below the batch chunks' threshold, so they run whole batches there.)

``make reports CORPUS=emodb`` end to end, from an empty results folder, on 2026-12-02 (commit
f659513, on a machine shared with other tenants): 01 10 s, 02 7 min 30 s (4 models and a 6-point
sweep, 45 runs), 03 12 min 30 s (80 runs: 8 models x 2 protocols x 5 folds), 04 60 s (reuses 03's
runs), 05 5 min 47 s (per-fold autoencoders, 5 fusion runs and 15 runs at 3x the training data):
26 min 57 s in all. Earlier the same day at b76571a (the fused first block, before the batch chunks),
28 min 31 s; at f8fc909 (Winograd, before the fused first block), 31
min 29 s; before the Winograd convolutions (commit 0848bc5), 49 min; before the
speed-ups (2026-11-23), 1-1.3 hours. The synthetic
corpus (700 utterances against EmoDB's 535) takes about 1.3x as long. Feature extraction is cached;
JAX's compilation cache (``<data>/cache/jax``) is shared by the notebooks.

``full`` costs about 15x ``quick`` per epoch on this CPU (zhao2d at 128 x 251 trained at ~7.9 samples/s
when this was measured, ~40 s an EmoDB epoch; ``sercore bench`` now gives ~62, so about 5 s), with
up to 7x the epochs, 3 seeds and the three costly models: days of CPU. On one NVIDIA H200
(2026-12-04, README "Scaling"): an epoch of 420 rows at 128 x 251 took 0.04-0.06 s for the 2-D nets,
0.15 s for dcnn_blstm_attn and 0.19 s for zhao1d, a process's first run 7-16 s of compilation; at
``standard``, zhao2d's 15 speaker-fold runs took 74 s in one process. A ``full`` EmoDB study (330 runs)
should train in well under an hour there: an estimate from those figures, not a measured run.

``standard`` measured on EmoDB on 2026-12-03 (this 2-core machine, always shared with other work):
the whole committed EmoDB study, 02 to 05, was trained in three passes. zhao2d's 15 speaker-fold runs
took 16 min 18 s; ``sercore reports --only 02`` 1 h 33 min for 85 more runs (zhao2d_dense, poolfix2d,
poolfix2d_bilstm; zhao2d's speaker-dependent runs; 20 time-pool sweep runs); and the rest, 03's other
four classifiers (80 runs) and 05's side experiments (5 fold autoencoders, 5 fusion runs, 15 noisy-copy
runs at 3x the training rows), 1 h 56 min with two to four ``sercore train`` / ``sercore reports``
processes side by side (two pinned to one core each most of the time; two single-core processes give
about 1.36x the throughput of one two-thread process here). Rendering the five reports from the
finished runs takes minutes. So the study costs about 3 h 45 min of wall time here when trained as
it was, over the 2.5-hour target; serial ``make reports CORPUS=emodb PROFILE=standard`` on an idle
machine has not been timed end to end. Median training time per run (speaker folds / speaker-
dependent folds): zhao2d 53 / 78 s, zhao2d_dense 59 / 63 s, poolfix2d 47 / 75 s, poolfix2d_bilstm
52 / 81 s, attn_blstm 133 / 160 s, baseline_cnn 115 / 82 s, td_cnn_bilstm 170 / 227 s, td_cnn_lstm 179 /
342 s (the last three measured on one core each, beside other jobs); median epochs 20-40, and 37 of
160 network runs stopped at the 40-epoch cap. The time-distributed nets and attn_blstm are the cost:
they are 3/8 of the classifiers and about 60 % of the time. ``baseline_cnn`` without its dropouts
(:data:`BASELINE_NO_DROPOUT`, 2026-12-04, one core beside another training job): median 39 / 51 s
(18-66 s), its 20 runs 14 min 39 s; notebook 05 on it, 38 min 12 s (fusion runs median 39 s, runs
with 2 noisy copies 110 s, leaky ones 167 s).

``standard`` measured on RAVDESS on 2026-12-04 (1,440 utterances of 3.7 s against EmoDB's 535 of 2.8 s),
with one seed (``n_seeds=1``) and the four networks of notebook 02 (zhao2d, zhao2d_dense, poolfix2d,
poolfix2d_bilstm) x 2 protocols x 5 folds = 40 runs, trained by ``sercore train`` processes pinned to one
core each, two to four of them beside a baseline and a cross-corpus process on the 2 cores: 1 h 38 min
of wall time (01:02-02:42). Median training time per run (actor folds / speaker-dependent folds):
zhao2d 152 / 240 s, zhao2d_dense 164 / 207 s, poolfix2d 222 / 420 s, poolfix2d_bilstm 304 / 453 s, about
3x EmoDB's; on its one idle core zhao2d's first actor fold took 99 s. Most speaker-dependent runs (14 of
20; 19 of all 40) ran to the 40-epoch cap, though none with its validation UAR still rising at the end
(their best epochs have a median of 30).
ComParE + linear SVM costs 2-18 min per fold here (liblinear at the large C values of the grid), eGeMAPS
and ComParE extraction 4.5 and 5.5 min for the 1,440 files in one process. attn_blstm (343 s a run,
2 of 3 at the cap) and the time-distributed nets were left out of the RAVDESS study for time.

Several seeds at once (:func:`sercore.training.train_many`, ``jax.vmap`` over stacked states) does
*not* pay on CPU: 3 seeds of zhao2d at 40 x 63 trained at 0.32x the samples/s of three sequential
runs (vmapped convolutions with per-member weights compile to slow grouped kernels on XLA:CPU).
Profiles therefore run seeds sequentially; ``train_many`` is there for GPUs.
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
    models : tuple of str or None
        The classifiers notebooks 03 and 04 train by default under this profile (None = every
        classifier). ``quick`` leaves out the three whose epochs cost 8-16x the others on a CPU;
        ``smoke`` keeps two.
    model_kwargs : dict
        Per-model constructor arguments, ``{model name: {kwarg: value}}``, merged under a study's own
        ``model_kwargs``. Profiles with a coarser hop use it to keep the windowed models' windows at the
        duration the papers meant (see :func:`windows_at_hop`).
    converged : bool
        Whether the profile trains every classifier to convergence (early stopping on the validation
        speakers with enough epochs and patience that runs stop on their own), i.e. as much as the
        documents did. :mod:`sercore.claims` reads it: only a converged profile can "refute" a claim;
        a profile that stops training early can only say "not reproduced at <profile>".
    description : str
    protocol_seeds : dict
        ``{protocol: seeds}`` for protocols trained with other seeds than ``seeds`` (``standard`` trains the
        speaker-dependent ``random`` protocol with one seed; see :meth:`seeds_for`).
    side_seeds : int
        How many of the seeds the side experiments use (notebook 02's time-pool sweep, notebook 05's
        autoencoder and augmentation runs); 0 = all of them.
    segments : dict or None
        Train on random crops and score whole utterances over windows (:func:`sercore.study.segment_settings`):
        ``{"crop_s": seconds, "step_s": scoring hop in seconds, "max_s": longest stored utterance}``;
        None = one fixed-length input per utterance (``features["duration"]``, cropped at its start).
    """

    name: str
    features: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    k: int = 5
    folds: int | None = None
    seeds: tuple[int, ...] = (0,)
    augment: dict | None = None
    models: tuple[str, ...] | None = None
    model_kwargs: dict = field(default_factory=dict)
    converged: bool = False
    description: str = ""
    segments: dict | None = None
    protocol_seeds: dict = field(default_factory=dict)
    side_seeds: int = 0

    def seeds_for(self, protocol: str) -> tuple[int, ...]:
        """The model seeds a protocol is trained with under this profile (``protocol_seeds``, else ``seeds``).

        >>> get_profile("standard").seeds_for("random"), get_profile("standard").seeds_for("speaker_kfold")
        ((0,), (0, 1, 2))
        """
        return tuple(self.protocol_seeds.get(protocol.split("+")[0], self.seeds))

    @property
    def side(self) -> tuple[int, ...]:
        """Seeds of the side experiments (the first ``side_seeds`` of ``seeds``, or all)."""
        return tuple(self.seeds[:self.side_seeds] if self.side_seeds else self.seeds)

    def replace(self, **kw) -> "Profile":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def windows_at_hop(hop_length: int, *, reference_hop: int = 256) -> dict:
    """Window settings of the windowed models at ``hop_length``, the same durations as at the
    reference hop (the models' defaults are in frames of hop 256: ``td_*`` 32-frame windows with step
    16, ~0.5 s; ``dcnn_blstm_attn`` 64-frame segments with 50 % overlap, ~1 s).

    >>> windows_at_hop(768)["td_cnn_lstm"]
    {'window_size': 11, 'window_step': 5}
    """
    def frames(n: int) -> int:
        return max(2, round(n * reference_hop / hop_length))

    td = {"window_size": frames(32), "window_step": frames(16)}
    segment = frames(64)
    return {"td_cnn_lstm": td, "td_cnn_bilstm": td,
            "dcnn_blstm_attn": {"segment_frames": segment, "segment_step": max(1, round(segment / 2))}}


#: Classifiers the ``smoke`` profile trains by default: two cheap ones, so that CI stays fast.
SMOKE_MODELS = ("zhao2d", "attn_blstm")

#: Classifiers the ``quick`` profile trains by default: all but ``zhao1d``, ``zhao1d_bilstm`` (raw 16 kHz
#: audio) and ``dcnn_blstm_attn``, whose epochs cost 32, 41 and 22 s against 2.2-5 s for these on 2 idle
#: cores (EmoDB fold, 309 training clips). Pass ``models=...`` to a notebook, or use ``full``, for them.
QUICK_MODELS = ("zhao2d", "zhao2d_dense", "poolfix2d", "poolfix2d_bilstm", "attn_blstm", "td_cnn_lstm",
                "td_cnn_bilstm", "baseline_cnn")

#: Every profile but ``smoke`` trains seed 003's baseline CNN (alone and inside ``ae_fusion``) without
#: its dropouts (0.3/0.3/0.4/0.4 after the blocks, 0.5 twice around the dense layer).
#:
#: ``quick``: with them it is still near chance after 8 epochs. Measured on EmoDB fold 0 (speaker_kfold,
#: 8 epochs): train accuracy 0.28 and test UAR 0.15 with the paper's dropouts, 0.53 / 0.34 with 0.1 / 0.2,
#: 0.95 / 0.50 with none.
#:
#: ``standard`` (from 2026-12-04; the EmoDB reports of 2026-12-03 trained it with them, UAR 0.29 over 15
#: speaker-fold runs): under standard's recipe it does not learn with them. Chosen on the
#: validation speakers, EmoDB speaker folds 0 and 1, seed 0: validation UAR 0.33 / 0.31 with the
#: paper's dropouts, 0.68 / 0.72 without (test UAR of those runs 0.28 / 0.27 and 0.68 / 0.68;
#: without dropouts all 5 folds gave 0.68, 0.68, 0.62, 0.70, 0.65, mean 0.67, 26-66 s a run on one core).
#: ``full`` follows the same rule by analogy; it has not been measured there.
BASELINE_NO_DROPOUT = {m: {"block_dropouts": (0.0, 0.0, 0.0, 0.0), "dropout": 0.0}
                       for m in ("baseline_cnn", "ae_fusion")}
QUICK_NO_DROPOUT = BASELINE_NO_DROPOUT   # the name before standard and full used it too

#: ``standard``'s segments: random 2 s crops in training (63 frames at hop 512), scoring windows every
#: 1 s over the whole utterance, utterances stored up to 10 s (EmoDB's longest is 8.98 s). On EmoDB
#: speaker folds 0 and 1 (zhao2d, seed 0) 2 s crops gave test UAR 0.653 / 0.545 against 0.624 / 0.453
#: for 1 s crops (scored every 0.5 s): single runs, so a hint rather than a measurement.
STANDARD_SEGMENTS = {"crop_s": 2.0, "step_s": 1.0, "max_s": 10.0}

#: ``full``'s segments: the paper's 4 s inputs (251 frames at hop 256) as random crops, scored every 2 s
#: over the whole utterance, utterances stored up to 10 s.
FULL_SEGMENTS = {"crop_s": 4.0, "step_s": 2.0, "max_s": 10.0}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        features={"n_mels": 32, "duration": 1.0, "hop_length": 512, "n_fft": 512},
        train={"epochs": 2, "batch_size": 16, "patience": 2, "learning_rate": 1e-3, "bn_momentum": 0.9},
        k=5, folds=2, seeds=(0,), models=SMOKE_MODELS, model_kwargs=windows_at_hop(512),
        segments={"crop_s": 0.75, "step_s": 0.5, "max_s": 6.0},
        description="pipeline check for tests/CI: tiny inputs (0.75 s crops scored over whole utterances, "
                    "as standard does), 2 epochs, 2 folds",
    ),
    "quick": Profile(
        name="quick",
        features={"n_mels": 40, "duration": 3.0, "hop_length": 768, "n_fft": 1024},
        train={"epochs": 8, "batch_size": 16, "patience": 3, "min_epochs": 4, "learning_rate": 1e-3,
               "bn_momentum": 0.9},
        k=5, folds=None, seeds=(0,), models=QUICK_MODELS,
        model_kwargs={**windows_at_hop(768), **BASELINE_NO_DROPOUT},
        description="main CPU job: 40x63 inputs (3 s), all 5 folds, <= 8 epochs, one seed, "
                    "the 8 cheaper classifiers",
    ),
    "standard": Profile(
        name="standard",
        features={"n_mels": 64, "n_fft": 1024, "hop_length": 512},
        segments=STANDARD_SEGMENTS,
        train={"epochs": 40, "batch_size": 32, "patience": 8, "min_epochs": 10, "learning_rate": 1e-3,
               "lr_schedule": "cosine", "warmup_epochs": 2, "bn_momentum": 0.9, "class_weighting": True,
               "freq_masks": 2, "freq_mask_width": 8, "time_masks": 2, "time_mask_width": 8,
               "mixup_alpha": 0.2},
        k=5, folds=None, seeds=(0, 1, 2), protocol_seeds={"random": (0,)}, side_seeds=1, models=QUICK_MODELS,
        model_kwargs={**windows_at_hop(512), **BASELINE_NO_DROPOUT}, converged=True,
        description="converged CPU study: 64-mel log-mels (32 ms hop), random 2 s crops scored over whole "
                    "utterances, SpecAugment + mixup, warm-up + cosine, early stopping (patience 8, <= 40 "
                    "epochs); 5 speaker folds x 3 seeds (speaker-dependent folds and side experiments: 1 seed), "
                    "the 8 cheaper classifiers",
    ),
    "full": Profile(
        name="full",
        features={"n_mels": 128, "hop_length": 256, "n_fft": 1024},
        segments=FULL_SEGMENTS,
        train={"epochs": 60, "batch_size": 32, "patience": 10, "min_epochs": 15, "learning_rate": 1e-3,
               "lr_schedule": "cosine", "warmup_epochs": 2, "bn_momentum": 0.9, "class_weighting": True,
               "freq_masks": 2, "freq_mask_width": 16, "time_masks": 2, "time_mask_width": 32,
               "mixup_alpha": 0.2},
        k=5, folds=None, seeds=(0, 1, 2), converged=True, model_kwargs=BASELINE_NO_DROPOUT,
        description="the real study (GPU): standard's recipe at the paper's 128 x 251 inputs (random 4 s crops "
                    "at hop 256, scored every 2 s over whole utterances), every classifier, all folds, <= 60 "
                    "epochs (patience 10), 3 seeds",
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
