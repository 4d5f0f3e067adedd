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


# ------------------------------------------------- every figure fits a laptop page, names no raw codes
MODELS8 = ["zhao2d", "zhao2d_dense", "poolfix2d", "poolfix2d_bilstm", "attn_blstm", "td_cnn_lstm",
           "td_cnn_bilstm", "baseline_cnn"]
PROTOCOL_CODES = ("speaker_kfold", "random", "loso", "leaky-augmentation")


def _report_sized_calls():
    """One call per figure function, at the sizes the reports draw: EmoDB's 10 speakers and 7 emotions,
    the 8 models of ``quick``, both protocols as raw codes in the data."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"emotion": [EMOTIONS[i % 7] for i in range(535)],
                       "speaker": [f"{i % 10 + 3:02d}" for i in range(535)],
                       "gender": ["female" if i % 10 < 5 else "male" for i in range(535)],
                       "duration": rng.uniform(1.0, 8.0, 535)})
    hist = pd.DataFrame([{"epoch": e, "split": s, "variant": m, "value": rng.uniform(), "fold": f,
                          "protocol": "speaker_kfold", "metric": "UAR"}
                         for e in range(1, 9) for s in ("train (accuracy)", "validation (UAR)")
                         for m in MODELS8 for f in range(5)])
    summary = pd.DataFrame([{"model": m, "protocol": p, "uar_mean": 0.5, "uar_low": 0.4, "uar_high": 0.6}
                            for m in MODELS8 + ["logmel_logreg", "egemaps_svm"]
                            for p in ("random", "speaker_kfold", "random+leaky-augmentation")])
    recall = pd.DataFrame([{"true_label": e, "recall": rng.uniform(), "variant": m, "run_id": f"{m}{f}",
                            "protocol": "speaker_kfold"} for e in EMOTIONS for m in MODELS8 for f in range(5)])
    gender = pd.DataFrame([{"variant": m, "gender": g, "accuracy": rng.uniform(), "run_id": f}
                           for m in MODELS8 for g in ("female", "male") for f in range(5)])
    speakers = pd.DataFrame([{"speaker": f"{s:02d}", "gender": "female" if s % 2 else "male",
                              "accuracy": rng.uniform()} for s in range(3, 13) for _ in range(2)])
    sweep = pd.DataFrame({"lstm_steps": [1, 2, 4, 8, 16, 32] * 5, "uar": rng.uniform(0.3, 0.6, 30),
                          "protocol": "speaker_kfold"})
    binned = pd.DataFrame({"recognition": rng.uniform(80, 100, 500), "error": rng.integers(0, 2, 500),
                           "variant": "zhao2d"})
    ex = {e: rng.normal(-40, 10, (40, 63)) for e in EMOTIONS}
    return {
        "corpus_counts": lambda: plots.corpus_counts(df),
        "duration_hist": lambda: plots.duration_hist(df, crop_s=3.0),
        "logmel_grid": lambda: plots.logmel_grid(ex, sr=16000, hop_length=768),
        "crop_loss": lambda: plots.crop_loss(rng.uniform(0, 0.5, 100)),
        "learning_curves": lambda: plots.learning_curves(hist, hue="variant", col="split",
                                                         title="emodb: training accuracy and validation UAR"),
        "results_ci": lambda: plots.results_ci(summary, value="uar_mean", low="uar_low", high="uar_high",
                                               reference={"chance": 1 / 7}, title="test UAR"),
        "metric_vs": lambda: plots.metric_vs(sweep, x="lstm_steps", hue="protocol", xlabel="steps (count)",
                                             chance=1 / 7, logx=True, title="sweep"),
        "confusion_heatmap": lambda: plots.confusion_heatmap(rng.integers(0, 20, (7, 7)), EMOTIONS),
        "grouped_bars": lambda: plots.grouped_bars(recall, x="true_label", y="recall", hue="variant",
                                                   order=EMOTIONS, chance=1 / 7, xlabel="true emotion",
                                                   ylabel="recall (%)", rotate=30, title="per-emotion recall"),
        "grouped_bars (gender)": lambda: plots.grouped_bars(gender, x="variant", y="accuracy", hue="gender",
                                                            chance=1 / 7, xlabel="model", ylabel="accuracy (%)",
                                                            rotate=30, title="by gender"),
        "grouped_bars (speakers)": lambda: plots.grouped_bars(speakers, x="speaker", y="accuracy", hue="gender",
                                                              chance=1 / 7, xlabel="speaker", ylabel="accuracy (%)",
                                                              title="per speaker"),
        "binned_error": lambda: plots.binned_error(binned, x="recognition", bins=[80, 90, 95, 100],
                                                   hue="variant", xlabel="listeners (%)", title="listeners"),
        "attention_over_logmel": lambda: plots.attention_over_logmel(ex["anger"], rng.dirichlet(np.ones(8)),
                                                                     sr=16000, hop_length=768),
        "embedding_projection": lambda: plots.embedding_projection(rng.normal(size=(100, 16)),
                                                                   [EMOTIONS[i % 7] for i in range(100)],
                                                                   style=["correct", "wrong"] * 50),
        "training_time": lambda: plots.training_time(pd.DataFrame({"variant": MODELS8 * 2,
                                                                   "train_seconds": rng.uniform(5, 30, 16)}),
                                                     y="variant", value="train_seconds"),
    }


def _texts(fig) -> list[str]:
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    legends = list(fig.legends)
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        out += [t.get_text() for t in leg.get_texts()] + [leg.get_title().get_text()]
    return out


def test_every_figure_function_is_checked():
    import inspect

    from matplotlib.figure import Figure

    made = {name.split(" ")[0] for name in _report_sized_calls()}
    drawing = {n for n, f in vars(plots).items() if inspect.isfunction(f) and not n.startswith("_")
               and f.__module__ == plots.__name__ and inspect.signature(f).return_annotation in (Figure, "Figure")}
    assert drawing <= made, f"add these figure functions to _report_sized_calls: {sorted(drawing - made)}"


@pytest.mark.parametrize("name", list(_report_sized_calls()))
def test_figures_fit_a_laptop_page_and_show_display_names(name):
    fig = _report_sized_calls()[name]()
    width = plots.rendered_width_px(fig)
    assert width <= plots.MAX_WIDTH_PX, f"{name}: {width} px wide as embedded (limit {plots.MAX_WIDTH_PX})"
    texts = _texts(fig)
    raw = [t for t in texts for code in PROTOCOL_CODES if code in t]
    assert not raw, f"{name}: raw protocol codes in titles, labels or legends: {raw}"
    for ax in fig.axes:   # legends beside the data, never over it; few enough colours to tell apart
        leg = ax.get_legend()
        if leg is not None and leg.get_texts():
            assert leg.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1 or name in (
                "corpus_counts", "attention_over_logmel"), f"{name}: legend inside the axes"
            if name == "embedding_projection":   # emotions: one fixed colour each, the same in every figure
                continue
            n_colours = len([t for t in leg.get_texts() if t.get_text() != "chance"])
            assert n_colours <= plots.MAX_COLOURS, f"{name}: {n_colours} colours in one panel"


def test_display_name_is_the_protocol_label():
    from sercore.protocols import protocol_label

    assert plots.display_name("speaker_kfold") == protocol_label("speaker_kfold")
    assert plots.display_name("random") == protocol_label("random")
    assert "LOSO" in plots.display_name("loso")
    assert plots.display_name("random+leaky-augmentation") == "speaker-dependent + leaky augmentation"
    assert plots.display_name("zhao2d") == "zhao2d"
