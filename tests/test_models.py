"""Every registered model: shapes, loss, gradients, train/eval behaviour, overfitting a tiny batch.

Each model is built once on a small input and run once through a shared harness (one jitted
gradient step, one jitted optimizer update, one jitted eval forward); the tests below assert on what
the harness recorded, so the whole file compiles each model only twice.
"""
from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sercore import models
from sercore.errors import ConfigError, ModelError
from sercore.models.blocks import FrozenParam

NUM_CLASSES = 3
BATCH = 6
OVERFIT_STEPS = 20
LOG = (16, 48, 1)                                   # 16 mels x 48 frames
TD = dict(window_size=16, window_step=8)            # 5 windows

# name -> (input shape, create kwargs). Shapes give every recurrent layer >= 2 steps, so every
# weight (recurrent kernel and forget gate included) must receive a gradient.
SMALL = {
    "zhao2d": ((16, 130, 1), {}),                   # 'same' pools: 130 frames -> 2 LSTM steps
    "zhao2d_dense": ((16, 130, 1), {}),
    "poolfix2d": (LOG, {}),
    "poolfix2d_bilstm": (LOG, {"hidden": 64}),
    "attn_blstm": (LOG, {}),
    "td_cnn_lstm": (LOG, {**TD, "hidden": (64, 64)}),
    "td_cnn_bilstm": (LOG, TD),
    # seed 003's dropout (0.3-0.5, six places) makes a 6-example batch too noisy to fit in 20 steps
    "baseline_cnn": (LOG, {"block_dropouts": 0.1, "dropout": 0.1}),
    "zhao1d": ((1024, 1), {"hidden": 64}),
    "zhao1d_bilstm": ((1024, 1), {"hidden": 64}),
    "dcnn_blstm_attn": ((16, 48, 3), dict(segment_frames=16, segment_step=8)),
    "dense_ae": (LOG, {}),
    "gru_ae": (LOG, {"code": 32, "code_mode": "all"}),
    "ae_fusion": (LOG, {}),
}
ATTENTION = {"attn_blstm", "dcnn_blstm_attn"}
LEARNING_RATE = {"gru_ae": 2e-2}                   # Adam; 3e-3 for the others
# Tests compile many small graphs and run each a few dozen times: XLA's cheapest backend
# optimisation level halves compile time here (the models' numerics are unchanged).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def make(name: str, seed: int = 0):
    shape, kw = SMALL[name]
    kw = dict(kw)
    if name == "ae_fusion":
        kw["encoder"] = models.create("dense_ae", input_shape=shape, seed=seed + 1)
    return models.create(name, num_classes=NUM_CLASSES, input_shape=shape, seed=seed, **kw)


def tiny_batch(shape):
    """Class templates plus noise: learnable by classifiers and by autoencoders."""
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((NUM_CLASSES, *shape)).astype(np.float32)
    y = np.arange(BATCH) % NUM_CLASSES
    x = templates[y] + 0.3 * rng.standard_normal((BATCH, *shape)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def _is_ae(name):
    return models._entry(name).task == "autoencode"


def _stats(model):
    return [np.array(v) for v in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]


def _frozen(model):
    return [np.array(v) for v in jax.tree.leaves(nnx.state(model, FrozenParam))]


def _has_dropout(model):
    return any(isinstance(n, nnx.Dropout) and n.rate > 0 for _, n in nnx.iter_graph(model))


@functools.cache
def harness(name: str) -> dict:
    """Build ``name`` small, train it on a tiny batch, evaluate it; record everything.

    Two compiled functions (``jax.jit`` on the split model, to pass compiler options): a fused
    train step (loss, gradients, Adam update) and an eval forward.
    """
    shape = SMALL[name][0]
    model = make(name)
    x, y = tiny_batch(shape)
    ae = _is_ae(name)

    def loss_fn(m, x, y):
        out = m(x)
        if ae:
            return jnp.mean((out - x) ** 2), out
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), out

    def train_step(state, x, y):
        m, opt = nnx.merge(train_def, state)
        (loss, out), grads = nnx.value_and_grad(loss_fn, has_aux=True)(m, x, y)
        opt.update(m, grads)
        return nnx.state((m, opt)), loss, out, grads

    def evaluate(state, x):
        m = nnx.merge(eval_def, state)
        extra = m.encode(x) if ae else m.embed(x)
        attn = m(x, return_attention=True)[1] if name in ATTENTION else None
        return m(x), extra, attn

    train_step = jax.jit(train_step, compiler_options=FAST_COMPILE)
    evaluate = jax.jit(evaluate, compiler_options=FAST_COMPILE)

    rec = {"model": model, "shape": shape}
    model.train()
    opt = nnx.Optimizer(model, optax.adam(LEARNING_RATE.get(name, 3e-3)), wrt=nnx.Param)
    # a twin at the same weights whose dropout draws differ: train outputs differ iff dropout is on
    twin, twin_opt = nnx.clone(model), nnx.clone(opt)
    nnx.reseed(twin, default=12345)
    stats0, frozen0 = _stats(model), _frozen(model)
    train_def, state = nnx.split((model, opt))
    state, loss, out_a, grads = train_step(state, x, y)
    nnx.update((model, opt), state)
    stats1 = _stats(model)
    _, _, out_b, _ = train_step(nnx.state((twin, twin_opt)), x, y)
    rec.update(train_out_shape=out_a.shape, loss0=float(loss),
               train_calls_differ=not np.allclose(out_a, out_b),
               bn_changed_in_train=any(not np.array_equal(a, b) for a, b in zip(stats0, stats1)),
               has_bn=bool(stats0), has_dropout=_has_dropout(model),
               zero_grads=[jax.tree_util.keystr(p) for p, g in jax.tree_util.tree_leaves_with_path(grads)
                           if not np.any(np.asarray(g))],
               n_grads=len(jax.tree.leaves(grads)),
               grad_leaves=sum(1 for _ in jax.tree.leaves(nnx.state(model, nnx.Param))))
    losses = [float(loss)]
    for _ in range(OVERFIT_STEPS):
        state, loss, _, _ = train_step(state, x, y)
        losses.append(float(loss))
    nnx.update((model, opt), state)
    rec["losses"] = losses
    rec["frozen_unchanged"] = all(np.array_equal(a, b) for a, b in zip(frozen0, _frozen(model)))
    rec["n_frozen"] = len(frozen0)
    model.eval()
    stats2 = _stats(model)
    eval_def, state = nnx.split(model)
    e1, extra, attn = evaluate(state, x)
    e2, _, _ = evaluate(state, x)
    nnx.update(model, state)
    rec.update(eval_out_shape=e1.shape, eval_identical=np.array_equal(e1, e2), extra_shape=extra.shape,
               bn_unchanged_in_eval=all(np.array_equal(a, b) for a, b in zip(stats2, _stats(model))),
               attention=None if attn is None else np.asarray(attn))
    return rec


MODEL_NAMES = models.list_models()


def test_every_registered_model_has_a_small_test_config():
    assert sorted(SMALL) == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_and_finite_loss(name):
    rec = harness(name)
    expected = (BATCH, *rec["shape"]) if _is_ae(name) else (BATCH, NUM_CLASSES)
    assert rec["train_out_shape"] == expected
    assert rec["eval_out_shape"] == expected
    assert np.isfinite(rec["loss0"]) and rec["loss0"] > 0
    if not _is_ae(name):                    # untrained logits: loss near log K
        assert 0.3 * np.log(NUM_CLASSES) < rec["loss0"] < 5 * np.log(NUM_CLASSES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_embed_or_encode_shape(name):
    rec = harness(name)
    assert len(rec["extra_shape"]) == 2 and rec["extra_shape"][0] == BATCH and rec["extra_shape"][1] > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_gets_a_gradient(name):
    rec = harness(name)
    assert rec["n_grads"] == rec["grad_leaves"] > 0
    # An LFLB's conv bias feeds BatchNorm, which subtracts it again: its true gradient is 0, and the
    # fused LFLB op returns exactly 0 (autodiff of the unfused chain gave rounding noise). It stays
    # a parameter so parameter counts match the papers' and the running means include it.
    lflb_conv_bias = re.compile(r"\['blocks'\]\[\d+\]\['conv'\]\['bias'\]")
    assert [p for p in rec["zero_grads"] if not lflb_conv_bias.search(p)] == []


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_overfits_tiny_batch(name):
    losses = harness(name)["losses"]
    assert all(np.isfinite(losses))
    assert min(losses[-5:]) < 0.3 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropout_only_in_train_mode(name):
    rec = harness(name)
    assert rec["eval_identical"]
    assert rec["train_calls_differ"] == rec["has_dropout"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_batchnorm_stats_update_in_train_not_eval(name):
    rec = harness(name)
    if not rec["has_bn"]:
        assert name in ("dense_ae", "gru_ae")
        return
    assert rec["bn_changed_in_train"]
    assert rec["bn_unchanged_in_eval"]


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention_weights_sum_to_one(name):
    rec = harness(name)
    w = rec["attention"]
    assert w.shape == (BATCH, rec["model"].recurrent_steps)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)


def test_ae_fusion_encoder_is_frozen():
    rec = harness("ae_fusion")
    model = rec["model"]
    assert rec["n_frozen"] > 0 and rec["frozen_unchanged"]
    from sercore.models.analysis import count_params      # imported here: the test must not rely on another test's import
    assert count_params(model.encoder) == 0
    assert count_params(model.encoder, "non_trainable") > 0


def test_ae_fusion_from_saved_encoder(tmp_path):
    encoder = models.create("dense_ae", input_shape=LOG, code=8, seed=3)
    path = models.save_weights(encoder, tmp_path / "ae.npz")
    fused = models.create("ae_fusion", num_classes=NUM_CLASSES, input_shape=LOG, encoder=str(path))
    np.testing.assert_array_equal(fused.encoder.enc2.kernel[...], encoder.enc2.kernel[...])
    assert isinstance(fused.encoder.enc2.kernel, FrozenParam)


def test_ae_fusion_needs_matching_encoder():
    with pytest.raises(ConfigError, match="encoder"):
        models.create("ae_fusion", input_shape=LOG)
    other = models.create("dense_ae", input_shape=(16, 40, 1), code=8)
    with pytest.raises(ConfigError, match="input"):
        models.create("ae_fusion", input_shape=LOG, encoder=other)


def test_dcnn_pretrained_segment_cnn_round_trip(tmp_path):
    from sercore.models.dcnn import save_segment_cnn

    shape, kw = SMALL["dcnn_blstm_attn"]
    source = models.create("dcnn_blstm_attn", input_shape=shape, seed=1, **kw)
    source.segment_cnn.blocks[0].bn1.mean[...] = jnp.full_like(source.segment_cnn.blocks[0].bn1.mean[...], 0.25)
    path = save_segment_cnn(source, tmp_path / "segment_cnn.npz")
    loaded = models.create("dcnn_blstm_attn", input_shape=shape, seed=2, pretrained=path, **kw)
    fresh = models.create("dcnn_blstm_attn", input_shape=shape, seed=2, **kw)
    for a, b in zip(jax.tree.leaves(nnx.state(source.segment_cnn, nnx.Not(nnx.RngState))),
                    jax.tree.leaves(nnx.state(loaded.segment_cnn, nnx.Not(nnx.RngState)))):
        np.testing.assert_array_equal(a, b)
    # only the segment CNN comes from the file; the rest keeps its own initialisation
    np.testing.assert_array_equal(loaded.out.kernel[...], fresh.out.kernel[...])
    assert not np.array_equal(loaded.segment_cnn.stem.kernel[...], fresh.segment_cnn.stem.kernel[...])


def test_dcnn_pretrained_bad_files(tmp_path):
    from sercore.models.dcnn import load_segment_cnn, save_segment_cnn

    model = nnx.clone(harness("dcnn_blstm_attn")["model"])
    with pytest.raises(ModelError, match="no such weights file"):
        load_segment_cnn(model, tmp_path / "missing.npz")
    path = save_segment_cnn(model, tmp_path / "cnn.npz")
    arrays = dict(np.load(path))
    arrays["stem/kernel"] = np.zeros((3, 3, 3, 7), np.float32)          # wrong width
    np.savez(tmp_path / "wrong_shape.npz", **arrays)
    with pytest.raises(ModelError, match="shape"):
        load_segment_cnn(model, tmp_path / "wrong_shape.npz")
    del arrays["stem/kernel"]
    np.savez(tmp_path / "missing_key.npz", **arrays)
    with pytest.raises(ModelError, match="stem/kernel"):
        load_segment_cnn(model, tmp_path / "missing_key.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable"):
        load_segment_cnn(model, tmp_path / "junk.npz")


def test_registry_info():
    expected = {"zhao2d", "zhao2d_dense", "poolfix2d", "poolfix2d_bilstm", "attn_blstm", "td_cnn_lstm",
                "td_cnn_bilstm", "baseline_cnn", "zhao1d", "zhao1d_bilstm", "dcnn_blstm_attn",
                "dense_ae", "gru_ae", "ae_fusion"}
    assert set(MODEL_NAMES) == expected
    info = models.model_info("dcnn_blstm_attn")
    assert info["features"] == {"kind": "logmel_deltas", "n_mels": 64}
    assert info["input_shape"] == (64, 251, 3) and info["recurrent_steps"] == 6
    assert models.model_info("zhao1d")["features"] == {"kind": "raw"}
    assert models.model_info("zhao1d")["recurrent_steps"] == 250
    assert models.model_info("gru_ae")["task"] == "autoencode"
    assert models.model_info("zhao2d")["recurrent_steps"] == 2
    assert models.model_info("poolfix2d")["recurrent_steps"] == 32
    assert models.model_info("td_cnn_lstm")["recurrent_steps"] == 14
    for name in MODEL_NAMES:
        info = models.model_info(name)
        assert info["source"] and info["description"] and info["task"] in ("classify", "autoencode")


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown model 'nope'.*zhao2d"):
        models.create("nope")
    with pytest.raises(ConfigError, match="zhao2d"):
        models.create("zhao2d", input_shape=LOG, no_such_option=1)
    with pytest.raises(ConfigError, match="pool padding"):
        models.create("zhao2d", input_shape=LOG, pool_padding="full")
    with pytest.raises(ConfigError, match="too small"):
        models.create("zhao2d", input_shape=(16, 40, 1), pool_padding="valid", time_pools=8)
    with pytest.raises(ConfigError, match="window"):
        models.create("td_cnn_lstm", input_shape=(16, 10, 1))


@pytest.mark.parametrize("padding, n_frames, steps", [("same", 251, 2), ("valid", 251, 1),
                                                      ("same", 219, 2), ("valid", 219, 1)])
def test_zhao2d_recurrent_steps(padding, n_frames, steps):
    assert models.recurrent_steps("zhao2d", (128, n_frames, 1), pool_padding=padding) == steps


def test_poolfix_time_pools_set_the_steps():
    assert models.recurrent_steps("poolfix2d", (128, 251, 1)) == 32
    assert models.recurrent_steps("poolfix2d", (128, 251, 1), time_pools=2) == 16
    assert models.recurrent_steps("poolfix2d", (128, 251, 1), time_pools=1) == 251
    assert models.recurrent_steps("poolfix2d", (128, 251, 1), time_pools=(2, 4, 1, 1)) == 32


def test_spec_round_trip(tmp_path):
    model = models.create("poolfix2d", num_classes=4, input_shape=LOG, seed=5, time_pools=(2, 2, 1, 1),
                          hidden=16)
    path = models.save_weights(model, tmp_path / "m.npz")
    again = models.load_model(path)
    assert again.spec == {**model.spec, "kwargs": {"time_pools": [2, 2, 1, 1], "hidden": 16}} or \
        again.spec["kwargs"]["hidden"] == 16
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(nnx.state(again, nnx.Param))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, kw, code_shape", [("gru_ae", {"code": 100, "code_mode": "last"}, (2, 100)),
                                                 ("gru_ae", {"code": 100, "code_mode": "all"}, (2, 4800)),
                                                 ("dense_ae", {"code": 300}, (2, 300))])
def test_autoencoder_code_shapes(name, kw, code_shape):
    model = models.create(name, input_shape=LOG, **kw)
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2, *LOG), jnp.float32)
    code = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).encode(x), state, x)
    recon = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert code.shape == code_shape and recon.shape == (2, *LOG)
    assert model.code_features == code_shape[1]
