"""sercore.models.analysis: parameter counts against the documents, trace_shapes, one-step LSTM."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sercore import models
from sercore.models import analysis
from sercore.models.blocks import to_sequence
from sercore.models.timedist import SEED002_TD_BILSTM


def _abstract(name, **kw):
    return nnx.eval_shape(lambda: models.create(name, **kw))


def test_zhao2d_param_count_vs_pytorch_reference():
    """128x251x1, 7 classes. /work/shared/bench/bench_torch.py's CNNLSTM has 656,839 parameters:
    convs 640 + 36,928 + 73,856 + 147,584, BN affine 2 x (64 + 64 + 128 + 128) = 768,
    nn.LSTM(128, 256) 4*256*(128+256) + 2*4*256 = 395,264 (two biases), Linear 1,799."""
    model = _abstract("zhao2d", num_classes=7, input_shape=(128, 251, 1))
    torch_reference = 640 + 36_928 + 73_856 + 147_584 + 768 + 395_264 + 1_799
    assert torch_reference == 656_839
    assert analysis.count_params(model) == torch_reference - 4 * 256      # one LSTM bias, not two
    assert analysis.count_params(model, "non_trainable") == 2 * (64 + 64 + 128 + 128)
    assert analysis.count_params(model, "total") == 656_583


def test_seed002_time_distributed_bilstm_param_count():
    """Seed 002's Keras summary: total 372,423, trainable 371,399, non-trainable 1,024."""
    model = _abstract("td_cnn_bilstm", num_classes=7, input_shape=(128, 219, 1), **SEED002_TD_BILSTM)
    assert model.recurrent_steps == 18
    assert analysis.count_params(model) == 371_399
    assert analysis.count_params(model, "non_trainable") == 1_024
    assert analysis.count_params(model, "total") == 372_423


def test_count_params_rejects_unknown_kind():
    with pytest.raises(ValueError, match="trainable"):
        analysis.count_params(_abstract("zhao2d_dense", input_shape=(16, 48, 1)), "everything")


def test_trace_shapes_zhao2d():
    model = models.create("zhao2d", num_classes=7, input_shape=(128, 251, 1))
    df = analysis.trace_shapes(model, (128, 251, 1))
    assert list(df.columns) == ["layer", "type", "depth", "output_shape", "params"]
    rows = df.set_index("layer")
    assert rows.loc["(model)", "output_shape"] == (1, 7)
    assert rows.loc["(model)", "params"] == analysis.count_params(model)
    assert rows.loc["cnn", "output_shape"] == (1, 1, 2, 128)              # 'same' pools: 2 steps
    assert rows.loc["cnn.blocks.0", "output_shape"] == (1, 64, 126, 64)
    assert rows.loc["rnn", "output_shape"] == (1, 2, 256)
    assert rows.loc["out", "params"] == 256 * 7 + 7
    top = analysis.trace_shapes(model, (128, 251, 1), max_depth=1)
    assert list(top["layer"]) == ["cnn", "rnn", "out", "(model)"]


def test_trace_shapes_valid_pooling_gives_one_step():
    model = models.create("zhao2d", input_shape=(128, 251, 1), pool_padding="valid")
    rows = analysis.trace_shapes(model, (128, 251, 1), max_depth=1).set_index("layer")
    assert rows.loc["cnn", "output_shape"] == (1, 1, 1, 128)
    assert rows.loc["rnn", "output_shape"] == (1, 1, 256)


def test_trace_shapes_time_distributed():
    model = models.create("td_cnn_bilstm", input_shape=(128, 219, 1), **SEED002_TD_BILSTM)
    rows = analysis.trace_shapes(model, (128, 219, 1), batch_size=2).set_index("layer")
    assert rows.loc["cnn", "output_shape"] == (2 * 18, 7, 1, 128)         # per window: 7 x 1 x 128
    assert rows.loc["rnn", "output_shape"] == (2, 18, 64)
    assert rows.loc["(model)", "output_shape"] == (2, 7)


def test_one_step_lstm_equals_gated_dense():
    result = analysis.one_step_lstm_equivalence(in_features=128, hidden=256, batch_size=16)
    assert result["max_abs_diff"] < 1e-5
    assert result["lstm_params"] == 4 * 256 * (128 + 256 + 1)
    assert result["used_params"] == 3 * 256 * 128 + 3 * 256
    assert result["unused_params"] == 256 * 128 + 4 * 256 * 256 + 256
    assert result["recurrent_kernel_grad_norm"] == 0.0
    assert result["forget_gate_grad_norm"] == 0.0


def test_one_step_lstm_inside_zhao2d_valid():
    """In zhao2d with 'valid' pools the LSTM runs one step: its output is the gated dense layer of
    the CNN features (zero gradients of the unused weights: test_one_step_lstm_equals_gated_dense)."""
    model = models.create("zhao2d", input_shape=(128, 140, 1), pool_padding="valid",
                          channels=(4, 4, 8, 8), hidden=8, num_classes=3)
    assert model.recurrent_steps == 1
    model.eval()
    x = jax.random.normal(jax.random.key(0), (4, 128, 140, 1))

    @nnx.jit
    def both(m, x):
        cell = m.rnn.forward_cells[0]
        return m.embed(x), analysis.gated_dense(cell, to_sequence(m.cnn(x))[:, 0])

    lstm_out, dense_out = both(model, x)
    np.testing.assert_allclose(lstm_out, dense_out, atol=1e-5)


def test_recurrent_steps_table():
    """The numbers the LSTM-redundancy notebook tabulates (default 4 s input)."""
    steps = {name: models.model_info(name)["recurrent_steps"]
             for name in ("zhao2d", "zhao2d_dense", "poolfix2d", "td_cnn_bilstm", "zhao1d")}
    assert steps == {"zhao2d": 2, "zhao2d_dense": None, "poolfix2d": 32, "td_cnn_bilstm": 14,
                     "zhao1d": 250}


def test_parameter_table_matches_documented_counts():
    """Our counts beside the documents': Keras counting and seed 002's summary match exactly; the PyTorch
    reference differs by exactly its second LSTM bias (2 x 4 x 256)."""
    table = analysis.parameter_table().set_index(["model", "documented by"])
    diffs = table["difference (trainable)"].tolist()
    assert sorted(diffs) == [-1024, 0, 0]
    td = table.xs("td_cnn_bilstm", level="model").iloc[0]
    assert td["ours trainable"] + td["ours non-trainable"] == 372_423
