"""The converged-study recipe: random crops, whole-utterance window scoring, SpecAugment, mixup,
warm-up + cosine, masked and per-speaker normalisation, and the study wiring (``segments``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from sercore import training
from sercore.errors import ConfigError
from sercore.features import FeatureConfig, fit_normalizer, speaker_normalize, valid_steps
from test_study import toy  # noqa: F401 (fixture: a 6-speaker tone corpus and a tiny model registry)


class TimeNet(nnx.Module):
    """Global-average conv classifier: accepts any number of frames (axis -2)."""

    def __init__(self, num_classes=3, seed=0):
        rngs = nnx.Rngs(seed)
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.out = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


def padded_data(n=120, k=3, T=40, seed=0):
    """Utterances of 12-40 frames padded to 40 with a constant floor; the class sets the level of the valid part."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.int32)
    lengths = rng.integers(12, T + 1, n)
    X = np.full((n, 6, T, 1), -4.0, np.float32)
    for i in range(n):
        X[i, :, :lengths[i], 0] = rng.normal(size=(6, lengths[i])) + 1.5 * (y[i] - 1)
    return X, y, lengths


def test_window_starts_cover_every_frame_and_stay_inside():
    rows, starts = training.window_starts([10, 3, 8, 25], crop_frames=8, step=4, n_frames=25)
    for i, length in enumerate([10, 3, 8, 25]):
        s = starts[rows == i]
        covered = np.zeros(25, bool)
        for v in s:
            covered[v:v + 8] = True
        assert covered[:length].all()                     # nothing cut off
        assert (s + 8 <= 25).all() and (s >= 0).all()     # inside the stored row
        assert (s <= max(length - 8, 0)).all()            # no window starts in the padding
    assert starts[rows == 1].tolist() == [0] and starts[rows == 2].tolist() == [0]
    assert starts[rows == 3].tolist() == [0, 4, 8, 12, 16, 17]
    r0, s0 = training.window_starts([5, 7], crop_frames=0, step=1)
    assert r0.tolist() == [0, 1] and s0.tolist() == [0, 0]


def test_random_crops_stay_in_the_valid_part():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 20, 40, 60])
    starts = np.stack([training.random_crop_starts(rng, lengths, 10, 40) for _ in range(200)])
    assert (starts[:, 0] == 0).all()                     # shorter than the crop: from its start
    assert starts[:, 1].max() == 10 and starts[:, 2].max() == 30 and starts[:, 3].max() == 30
    assert len(np.unique(starts[:, 2])) > 10              # really random


def test_whole_utterance_score_is_the_mean_of_window_logits():
    X, y, lengths = padded_data(n=6)
    model = TimeNet()
    model.eval()
    probs = training.predict_proba(model, X, lengths=lengths, crop_frames=10, window_step=5)
    rows, starts = training.window_starts(lengths, 10, 5, X.shape[-2])
    for i in range(len(X)):
        windows = np.stack([X[i, :, s:s + 10] for s in starts[rows == i]])
        logits = np.asarray(model(windows)).mean(0)
        expect = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(probs[i], expect, rtol=1e-4, atol=1e-6)


def test_crop_training_learns_and_is_deterministic():
    X, y, lengths = padded_data()
    cfg = training.TrainConfig(epochs=5, batch_size=16, patience=0, learning_rate=2e-2, crop_frames=10,
                               window_step=5, freq_masks=1, freq_mask_width=2, time_masks=1, time_mask_width=3,
                               mixup_alpha=0.2, warmup_epochs=1, lr_schedule="cosine")
    runs = []
    for _ in range(2):
        model = TimeNet()
        res = training.fit(model, (X[:80], y[:80]), (X[80:100], y[80:100]), cfg, progress=False,
                           train_lengths=lengths[:80], val_lengths=lengths[80:100])
        runs.append((model, res))
    h = [[{k: v for k, v in r.items() if k != "seconds"} for r in res.history] for _, res in runs]
    assert h[0] == h[1]
    model, res = runs[0]
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    test = training.evaluate(model, X[100:], y[100:], lengths=lengths[100:], crop_frames=10, window_step=5)
    assert test["uar"] > 0.6
    # the recorded validation UAR is the whole-utterance window score of the restored state
    val = training.evaluate(model, X[80:100], y[80:100], lengths=lengths[80:100], crop_frames=10, window_step=5)
    assert val["uar"] == pytest.approx(res.best["val_uar"])


def test_crops_never_read_the_padding():
    """Poisoning every frame past each utterance's length (and past the crop's reach) changes nothing."""
    X, y, lengths = padded_data()
    lengths = np.maximum(lengths, 10)
    cfg = training.TrainConfig(epochs=3, batch_size=16, patience=0, learning_rate=2e-2, crop_frames=10)
    poisoned = X.copy()
    for i in range(len(X)):
        poisoned[i, :, lengths[i]:] = 1e3
    out = []
    for data in (X, poisoned):
        res = training.fit(TimeNet(), (data[:80], y[:80]), (data[80:100], y[80:100]), cfg, progress=False,
                           train_lengths=lengths[:80], val_lengths=lengths[80:100])
        out.append([r["train_loss"] for r in res.history] + [r["val_uar"] for r in res.history])
    assert out[0] == out[1]


def test_spec_augment_masks_and_crop():
    import jax

    x = np.ones((4, 16, 30, 1), np.float32)
    out = np.asarray(training.augment_batch(x, jax.random.key(0), np.array([0, 5, 10, 20]), crop_frames=10,
                                            freq_masks=2, freq_mask_width=3, time_masks=2, time_mask_width=4))
    assert out.shape == (4, 16, 10, 1)
    for b in range(4):
        zero_rows = (out[b, :, :, 0] == 0).all(axis=1).sum()
        zero_cols = (out[b, :, :, 0] == 0).all(axis=0).sum()
        assert zero_rows <= 6 and zero_cols <= 8               # at most 2 masks of up to 3 / 4
    assert (out == 0).any() and (out == 1).any()
    plain = np.asarray(training.augment_batch(np.arange(30, dtype=np.float32).reshape(1, 1, 30, 1) + x[:1, :1],
                                              jax.random.key(1), np.array([7]), crop_frames=5))
    assert plain[0, 0, :, 0].tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]


def test_warmup_cosine_schedule():
    lr = [float(training.learning_rate_at(s, learning_rate=1.0, lr_schedule="cosine", total_steps=100,
                                          warmup_steps=10)) for s in range(0, 101)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert np.all(np.diff(lr[:10]) > 0) and np.all(np.diff(lr[10:]) <= 1e-9)
    assert lr[55] == pytest.approx(0.5, abs=1e-6) and lr[100] == pytest.approx(0.0, abs=1e-9)
    # the history records the schedule the optimiser follows
    X, y = padded_data(n=64)[:2]
    cfg = training.TrainConfig(epochs=4, batch_size=16, patience=0, warmup_epochs=1, lr_schedule="cosine")
    res = training.fit(TimeNet(), (X[:48], y[:48]), (X[48:], y[48:]), cfg, progress=False)
    assert res.history[0]["lr"] == pytest.approx(1e-3 / 3) and res.history[1]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("bad", [dict(crop_frames=-1), dict(mixup_alpha=-0.1), dict(warmup_epochs=5, epochs=5),
                                 dict(time_masks=-2)])
def test_bad_recipe_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        training.TrainConfig(**bad)


def test_crop_longer_than_examples_is_refused():
    X, y, lengths = padded_data(n=40)
    with pytest.raises(ConfigError, match="crop_frames"):
        training.fit(TimeNet(), (X[:30], y[:30]), (X[30:], y[30:]), training.TrainConfig(epochs=1, crop_frames=41),
                     progress=False)


def test_normaliser_ignores_padding_and_speaker_norm_uses_each_speaker():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4, 20, 1)).astype(np.float32)
    lengths = rng.integers(3, 21, 12)
    for i in range(12):
        X[i, :, lengths[i]:] = -100.0                      # silence padding
    norm = fit_normalizer(X, np.arange(8), lengths=lengths)
    valid = np.concatenate([X[i, :, :lengths[i], 0] for i in range(8)], axis=1)
    np.testing.assert_allclose(norm.mean[:, 0, 0], valid.mean(1), rtol=1e-5)
    np.testing.assert_allclose(norm.std[:, 0, 0], valid.std(1), rtol=1e-5)
    speakers = np.array(list("aaaabbbbcccc"))
    X[4:8] += 10.0                                          # speaker b is louder
    Z = speaker_normalize(X, speakers, lengths=lengths)
    for spk in "abc":
        rows = np.flatnonzero(speakers == spk)
        v = np.concatenate([Z[i, :, :lengths[i], 0] for i in rows], axis=1)
        np.testing.assert_allclose(v.mean(1), 0.0, atol=1e-4)
        np.testing.assert_allclose(v.std(1), 1.0, atol=1e-3)


def test_valid_steps():
    cfg = FeatureConfig(duration=4.0, hop_length=256)
    assert valid_steps([1.0, 10.0], cfg).tolist() == [1 + 16000 // 256, cfg.n_frames]
    raw = FeatureConfig(kind="raw", duration=2.0)
    assert valid_steps([0.5, 3.0], raw).tolist() == [8000, 32000]


# ------------------------------------------------------------------------------------------- study wiring
@pytest.fixture
def seg_profile():
    from sercore.profiles import get_profile

    smoke = get_profile("smoke")
    return smoke.replace(name="seg", segments={"crop_s": 0.5, "step_s": 0.25, "max_s": 4.0},
                         train={**smoke.train, "epochs": 2, "time_masks": 1, "time_mask_width": 3})


def test_study_trains_crops_and_scores_whole_utterances(toy, tmp_path, seg_profile):
    from sercore.study import run_study, segment_settings
    st = run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "res", folds=[0],
                   k=3, progress=False)
    run_dir = st.dir / "runs" / st.results["run_id"][0]
    config = json.loads((run_dir / "config.json").read_text())
    cfg, crop, step = segment_settings(FeatureConfig(n_mels=32, hop_length=512, n_fft=512), seg_profile.segments,
                                       [0.5])
    assert config["segments"] == seg_profile.segments and config["input_shape"][-2] == crop
    assert json.loads((run_dir / "model" / "model.json").read_text())["provenance"]["crop_frames"] == crop
    assert len(st.predictions) == st.results["n_test"][0] and not st.predictions.isna().any().any()
    # a protocol variant with per-speaker normalisation is labelled as one
    sn = run_study("toy", "tiny", "speaker_kfold", seg_profile, df=toy, results_root=tmp_path / "res", folds=[0],
                   k=3, progress=False, speaker_norm=True)
    assert set(sn.results["protocol"]) == {"speaker_kfold", "speaker_kfold+speaker-norm"}


def test_segment_settings_hold_the_longest_utterance():
    from sercore.study import segment_settings

    cfg, crop, step = segment_settings(FeatureConfig(hop_length=512), {"crop_s": 2.0, "step_s": 1.0, "max_s": 10.0},
                                       [1.2, 8.9, 3.0])
    assert cfg.duration == 9.0 and crop == 1 + round(2.0 * 16000 / 512) and step == round(16000 / 512)
    capped, _, _ = segment_settings(FeatureConfig(), {"crop_s": 2.0, "max_s": 5.0}, [30.0])
    assert capped.duration == 5.0
    raw, crop_raw, _ = segment_settings(FeatureConfig(kind="raw"), {"crop_s": 1.0}, [2.1])
    assert crop_raw == 16000 and raw.duration == 2.25
    with pytest.raises(ConfigError):
        segment_settings(FeatureConfig(), {"crop_s": 0.0}, [1.0])
