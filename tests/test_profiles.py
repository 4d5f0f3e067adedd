"""Every classifier can be built and run at every profile's input shapes (shapes only, no compute)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from sercore import models
from sercore.profiles import PROFILES, get_profile, windows_at_hop
from sercore.study import feature_config_for

CLASSIFIERS = [n for n in models.list_models()
               if models.model_info(n)["task"] == "classify" and n != "ae_fusion"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_fits_every_profile(profile, name):
    prof = get_profile(profile)
    cfg = feature_config_for(name, prof)
    kwargs = prof.model_kwargs.get(name, {})
    model = nnx.eval_shape(lambda: models.create(name, num_classes=7, input_shape=cfg.shape, **kwargs))
    graphdef, state = nnx.split(model)

    def forward(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        return m(x)

    out = jax.eval_shape(forward, state, jax.ShapeDtypeStruct((2, *cfg.shape), jnp.float32))
    assert out.shape == (2, 7)


def test_windows_keep_their_duration_at_a_coarser_hop():
    w = windows_at_hop(768)
    assert w["td_cnn_lstm"] == {"window_size": 11, "window_step": 5}        # ~0.5 s, as 32 x 16 ms
    assert w["dcnn_blstm_attn"]["segment_frames"] == 21                    # ~1 s, as 64 x 16 ms
    assert windows_at_hop(256)["td_cnn_bilstm"] == {"window_size": 32, "window_step": 16}


def test_unknown_profile_is_a_clear_error():
    from sercore.errors import ConfigError

    with pytest.raises(ConfigError, match="smoke"):
        get_profile("fast")


def test_converged_profiles_share_the_recipe_that_learns():
    # `full` once kept Keras' BatchNorm momentum 0.99 and a constant learning rate: with ~14 steps an
    # epoch its evaluation statistics stayed stale and the validation UAR sat at chance while training
    # accuracy rose. Every converged profile trains with standard's recipe, at its own input size.
    from sercore.profiles import PROFILES

    standard = PROFILES["standard"]
    recipe = ("bn_momentum", "lr_schedule", "warmup_epochs", "class_weighting", "mixup_alpha", "freq_masks",
              "time_masks")
    for prof in PROFILES.values():
        if not prof.converged:
            continue
        assert {k: prof.train.get(k) for k in recipe} == {k: standard.train[k] for k in recipe}, prof.name
        assert prof.segments and prof.segments["crop_s"] > prof.segments["step_s"] > 0, prof.name
    full = PROFILES["full"]
    assert full.features["n_mels"] == 128 and full.features["hop_length"] == 256 and full.segments["crop_s"] == 4.0
