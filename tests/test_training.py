"""Training engine: learns, is deterministic, resumes exactly, never needs the test fold."""
from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from sercore import config, training
from sercore.checkpoint import load_meta
from sercore.errors import ConfigError, ModelError


class TinyNet(nnx.Module):
    """A tiny conv classifier with BatchNorm and dropout (exercises every mode switch)."""

    def __init__(self, input_shape=(8, 12, 1), num_classes=3, seed=0):
        rngs = nnx.Rngs(seed)
        self.conv = nnx.Conv(input_shape[-1], 6, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(6, momentum=0.8, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(6, num_classes, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn(self.conv(x)))
        return self.out(self.drop(h.mean(axis=(1, 2))))


def toy_data(n=150, k=3, seed=0, shape=(8, 12, 1)):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.int32)
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    X[..., 0] += 1.5 * (y[:, None, None] - 1)  # class shifts the level: learnable in a few epochs
    return X, y


def strip_times(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


CFG = training.TrainConfig(epochs=6, batch_size=16, patience=0, learning_rate=3e-2)


def test_fit_learns_and_restores_best_state():
    X, y = toy_data()
    model = TinyNet()
    res = training.fit(model, (X[:90], y[:90]), (X[90:120], y[90:120]), CFG, progress=False)
    assert res.epochs_run == 6 and len(res.history) == 6
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    best = max(res.history, key=lambda r: (r["val_uar"], -r["val_loss"]))
    assert res.best_epoch == best["epoch"]
    # the model holds the best state: its validation UAR equals the recorded one
    val = training.evaluate(model, X[90:120], y[90:120])
    assert val["uar"] == pytest.approx(res.best["val_uar"])
    test = training.evaluate(model, X[120:], y[120:])
    assert test["uar"] > 0.6 and test["probs"].shape == (30, 3)
    np.testing.assert_allclose(test["probs"].sum(1), 1.0, rtol=1e-5)


def test_same_seed_same_history_and_metrics():
    X, y = toy_data(seed=1)
    runs = []
    for _ in range(2):
        model = TinyNet(seed=3)
        res = training.fit(model, (X[:90], y[:90]), (X[90:120], y[90:120]), CFG.replace(seed=5), progress=False)
        runs.append((strip_times(res.history), training.evaluate(model, X[120:], y[120:])["probs"]))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_early_stopping_with_patience():
    X, y = toy_data()
    y_noise = np.random.default_rng(123).integers(0, 3, len(y)).astype(np.int32)  # unrelated to the inputs
    res = training.fit(TinyNet(), (X[:90], y[:90]), (X[90:], y_noise[90:]),
                       CFG.replace(epochs=30, patience=2, monitor="val_loss"), progress=False)
    assert res.stopped_early and res.epochs_run < 30
    assert res.epochs_run - res.best_epoch == 2


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    X, y = toy_data(seed=2)
    train, val = (X[:90], y[:90]), (X[90:120], y[90:120])
    ref_model = TinyNet(seed=1)
    ref = training.fit(ref_model, train, val, CFG, progress=False)

    ckpt = tmp_path / "run" / "checkpoint.npz"

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit(TinyNet(seed=1), train, val, CFG, checkpoint=ckpt, on_epoch=interrupt, progress=False)
    assert load_meta(ckpt)["epoch"] == 2
    resumed_model = TinyNet(seed=1)  # a fresh process would rebuild the model from scratch
    seen = []
    res = training.fit(resumed_model, train, val, CFG, checkpoint=ckpt, on_epoch=lambda r: seen.append(r["epoch"]),
                       progress=False)
    assert seen == [3, 4, 5, 6]  # epochs 1-2 were not trained again
    assert strip_times(res.history) == strip_times(ref.history) and res.best_epoch == ref.best_epoch
    np.testing.assert_array_equal(training.evaluate(resumed_model, X[120:], y[120:])["probs"],
                                  training.evaluate(ref_model, X[120:], y[120:])["probs"])
    assert not list(ckpt.parent.glob("*.tmp")), "atomic writes leave no temp files"


def test_checkpoint_of_another_model_is_refused(tmp_path):
    X, y = toy_data()
    ckpt = tmp_path / "c.npz"
    training.fit(TinyNet(), (X[:60], y[:60]), (X[60:90], y[60:90]), CFG.replace(epochs=1), checkpoint=ckpt,
                 progress=False)
    with pytest.raises(ModelError, match="another model"):
        training.fit(TinyNet(num_classes=4), (X[:60], y[:60]), (X[60:90], y[60:90]), CFG, checkpoint=ckpt,
                     num_classes=4, progress=False)


def test_model_selection_never_reads_the_test_fold():
    """fit() has no test argument; poisoning 'test' data cannot change training or model choice."""
    import inspect

    assert "test" not in inspect.signature(training.fit).parameters
    X, y = toy_data(seed=4)
    res_a = training.fit(TinyNet(), (X[:90], y[:90]), (X[90:120], y[90:120]), CFG, progress=False)
    X_poison = X.copy()
    X_poison[120:] = np.nan
    y_poison = y.copy()
    y_poison[120:] = np.random.default_rng(0).permutation(y[120:])
    res_b = training.fit(TinyNet(), (X_poison[:90], y_poison[:90]), (X_poison[90:120], y_poison[90:120]), CFG,
                         progress=False)
    assert strip_times(res_a.history) == strip_times(res_b.history)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_optimizers_schedules_and_class_weights(opt):
    X, y = toy_data()
    cfg = CFG.replace(epochs=2, optimizer=opt, decay=1e-3, momentum=0.9, weight_decay=1e-4, lr_schedule="cosine",
                      class_weighting=True, clip_norm=1.0)
    res = training.fit(TinyNet(), (X[:90], y[:90]), (X[90:], y[90:]), cfg, progress=False)
    assert np.isfinite(res.history[-1]["train_loss"])
    assert res.history[1]["lr"] < res.history[0]["lr"]  # Keras-style time decay
    w = training.class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 6, 2.0, 0.0])


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer"):
        training.TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="unknown training option"):
        training.TrainConfig.from_dict({"epoch": 3})
    assert json.loads(json.dumps(CFG.to_dict()))["batch_size"] == 16


def test_quiet_under_ci(monkeypatch):
    monkeypatch.setenv("SERCORE_QUIET", "1")
    assert config.quiet()


def test_train_many_vmaps_seeds_like_sequential_fits():
    X, y = toy_data(seed=2)
    train, val = (X[:90], y[:90]), (X[90:120], y[90:120])
    cfg = CFG.replace(epochs=3)
    models = [TinyNet(seed=s) for s in (0, 1)]
    many = training.train_many(models, train, val, cfg, seeds=[0, 1])
    for s, (m, r) in enumerate(zip(models, many)):
        ref_model = TinyNet(seed=s)
        ref = training.fit(ref_model, train, val, cfg.replace(seed=s), progress=False)
        assert r.best_epoch == ref.best_epoch and r.epochs_run == ref.epochs_run
        np.testing.assert_allclose([h["val_loss"] for h in r.history], [h["val_loss"] for h in ref.history],
                                   rtol=1e-2)
        np.testing.assert_allclose(training.evaluate(m, X[120:], y[120:])["probs"],
                                   training.evaluate(ref_model, X[120:], y[120:])["probs"], atol=1e-2)


def test_min_epochs_floors_early_stopping():
    X, y = toy_data()
    y_noise = np.random.default_rng(123).integers(0, 3, len(y)).astype(np.int32)
    cfg = CFG.replace(epochs=12, patience=1, monitor="val_loss", min_epochs=7)
    res = training.fit(TinyNet(), (X[:90], y[:90]), (X[90:], y_noise[90:]), cfg, progress=False)
    assert res.epochs_run >= 7
