"""Every figure function returns a figure with a title, labelled axes and units."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sercore import plots

EMOTIONS = ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]


@pytest.fixture(scope="module", autouse=True)
def style():
    plots.set_style()


def _corpus(n=42, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"emotion": [EMOTIONS[i % 7] for i in range(n)],
                         "speaker": [f"{10 + i % 4}" for i in range(n)],
                         "gender": ["female" if i % 4 < 2 else "male" for i in range(n)],
                         "duration": rng.uniform(1.0, 5.0, n)})


def _titled(fig) -> bool:
    return bool(fig._suptitle and fig._suptitle.get_text()) or any(ax.get_title() for ax in fig.axes)


def _check(fig, min_axes=1):
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(visible) >= min_axes
    assert _titled(fig)
    labelled = [ax for ax in visible if ax.get_xlabel() or ax.get_ylabel()]
    assert labelled, "no labelled axes"
    fig.canvas.draw()   # renders without error
    return visible


def test_emotion_order_and_palette():
    assert plots.emotion_order(["neutral", "zzz", "anger", "anger"]) == ["anger", "neutral", "zzz"]
    pal = plots.emotion_palette(["sadness", "anger", "zzz"])
    assert set(pal) == {"anger", "sadness", "zzz"} and pal["anger"] != pal["sadness"]
    assert plots.emotion_palette(["anger"])["anger"] == pal["anger"]     # fixed colour per emotion


def test_corpus_figures():
    df = _corpus()
    axes = _check(plots.corpus_counts(df), 3)
    assert all("count" in ax.get_ylabel() for ax in axes)
    ax = _check(plots.duration_hist(df, crop_s=3.0))[0]
    assert ax.get_xlabel() == "duration (s)"
    ax = _check(plots.crop_loss(np.r_[np.zeros(5), np.linspace(0.1, 0.5, 5)]))[0]
    assert "%" in ax.get_xlabel()


def test_logmel_grid_and_attention():
    rng = np.random.default_rng(0)
    ex = {e: rng.normal(-40, 10, (32, 63)) for e in EMOTIONS}
    axes = _check(plots.logmel_grid(ex, sr=16000, hop_length=256, ncols=4), 7)
    assert axes[0].get_xlabel() == "time (s)" and "Hz" in axes[0].get_ylabel()
    w = rng.dirichlet(np.ones(9))
    axes = _check(plots.attention_over_logmel(ex["anger"][..., None], w, sr=16000, hop_length=256), 2)
    assert axes[1].get_xlabel() == "time (s)"


def test_confusion_heatmap_row_normalised():
    fig = plots.confusion_heatmap([[8, 2], [0, 5]], ["anger", "sadness"], title="cm")
    ax = _check(fig)[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["80", "20", "0", "100"]
    assert ax.get_xlabel() == "predicted emotion" and ax.get_ylabel() == "true emotion"


def test_training_and_results_figures():
    hist = pd.DataFrame([{"epoch": e, "split": s, "metric": m, "value": v, "seed": k}
                         for e in range(1, 6) for s in ("train", "validation") for m in ("loss", "uar")
                         for k in range(2) for v in [1 / e + 0.1 * k]])
    _check(plots.learning_curves(hist, units={"loss": "cross-entropy (nats)", "uar": "UAR (fraction)"}), 2)
    summary = pd.DataFrame({"model": ["a", "a", "b"], "protocol": ["sd", "si", "si"],
                            "mean": [0.7, 0.6, 0.5], "ci_low": [0.6, 0.5, 0.4], "ci_high": [0.8, 0.7, 0.6]})
    ax = _check(plots.results_ci(summary, reference={"claimed": 0.8}))[0]
    assert ax.get_xlabel() == "UAR (%)"
    runs = pd.DataFrame({"steps": [1, 1, 2, 2, 4, 4], "uar": [0.5, 0.55, 0.6, 0.62, 0.6, 0.7],
                         "model": ["lstm"] * 6})
    _check(plots.metric_vs(runs, x="steps", hue="model", xlabel="LSTM time steps (count)", chance=1 / 7,
                           logx=True, title="sweep"))
    per = pd.DataFrame({"emotion": EMOTIONS * 2, "recall": np.linspace(0.2, 0.9, 14), "model": ["m"] * 14})
    _check(plots.grouped_bars(per, x="emotion", y="recall", hue="model", xlabel="emotion",
                              ylabel="recall (%)", chance=1 / 7, title="recall"))
    times = pd.DataFrame({"model": ["a", "a", "b"], "train_s": [1.0, 2.0, 3.0]})
    assert "s)" in _check(plots.training_time(times))[0].get_xlabel()


def test_binned_error_and_embedding():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"recognition": rng.uniform(40, 100, 80), "error": rng.integers(0, 2, 80)})
    ax = _check(plots.binned_error(d, x="recognition", bins=[40, 60, 80, 100], xlabel="listeners (%)",
                                   title="hard for humans"))[0]
    assert ax.get_ylabel() == "model error rate (%)"
    emb = rng.normal(size=(40, 16))
    ax = _check(plots.embedding_projection(emb, [EMOTIONS[i % 7] for i in range(40)],
                                           style=["f", "m"] * 20))[0]
    assert ax.get_xlabel().startswith("PC 1")
