"""Figures for the study notebooks: one seaborn style, small functions that each return a figure.

Every function returns a :class:`matplotlib.figure.Figure` with a title, labelled axes and units. The
figures are built without ``pyplot`` (no global state, nothing shown twice in a notebook): show one by
leaving it as the last expression of a cell or with ``IPython.display.display(fig)``; save it with
``fig.savefig(path)``. Computation beyond drawing (metrics, confusion matrices, splits) lives in the
engine modules; these functions take its tables and arrays.

>>> from sercore import plots
>>> plots.set_style()
>>> fig = plots.confusion_heatmap([[8, 2], [1, 9]], ["anger", "sadness"], title="Toy")
>>> fig.axes[0].get_title()
'Toy'
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

#: Canonical emotion order used on every axis and legend (corpus-specific labels are mapped to these).
EMOTION_ORDER = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral", "calm", "surprise")
#: Two-letter tick labels where space is short.
EMOTION_ABBREV = {"anger": "ang", "boredom": "bor", "disgust": "dis", "fear": "fea", "happiness": "hap",
                  "sadness": "sad", "neutral": "neu", "calm": "cal", "surprise": "sur"}
_PALETTE = "colorblind"
_CMAP = "magma"

#: Resolution reports render figures at (``set_style``'s default dpi; inline PNGs are saved at it).
RENDER_DPI = 100
#: Widest figure, in pixels at :data:`RENDER_DPI` and including legends outside the axes, that fits a
#: laptop-width report page (the report body is 1,100 px wide) without being shrunk.
MAX_WIDTH_PX = 1000
#: Most colours one panel may use before it is faceted into several panels: beyond ~5, lines and
#: bands of the colorblind palette can no longer be told apart.
MAX_COLOURS = 5
#: Widest figure size in inches that still leaves room for a legend beside it.
_MAX_W = MAX_WIDTH_PX / RENDER_DPI
_LEGEND_W = 1.9

#: Display names of codes that appear in figures. Protocols are named as everywhere else in sercore
#: (:func:`sercore.protocols.protocol_label`); models keep their registry names, which every table
#: and text of the reports uses too. :func:`display_name` is the one place codes become labels.
MODEL_NAMES: dict[str, str] = {}
_LEAKY = "+leaky-augmentation"


def display_name(code) -> str:
    """The label a figure shows for a code: protocols as :func:`sercore.protocols.protocol_label`
    (``speaker_kfold`` -> ``speaker-independent``; ``loso`` adds "(LOSO)", the leaky augmentation
    variant adds "+ leaky augmentation"), models by :data:`MODEL_NAMES`, anything else unchanged.

    >>> display_name("speaker_kfold"), display_name("random+leaky-augmentation"), display_name("zhao2d")
    ('speaker-independent', 'speaker-dependent + leaky augmentation', 'zhao2d')
    """
    from .protocols import PROTOCOLS, protocol_label

    text = str(code)
    base, _, rest = text.partition("+")
    if base in PROTOCOLS:
        label = protocol_label(base) + (" (LOSO)" if base == "loso" else "")
        if rest:
            label += " + " + rest.replace("-", " ")
        return label
    return MODEL_NAMES.get(text, text)


def display_names(values) -> list[str]:
    """:func:`display_name` of each value."""
    return [display_name(v) for v in values]


def _shown(data, *cols):
    """``data`` with the named columns' codes replaced by their display names."""
    cols = [c for c in cols if c is not None and c in data.columns]
    return data.assign(**{c: data[c].map(display_name) for c in cols}) if cols else data


def rendered_width_px(fig: Figure, dpi: int = RENDER_DPI) -> int:
    """Width in pixels of ``fig`` as a report embeds it (PNG at ``dpi``, ``bbox_inches="tight"`` like
    the notebook's inline backend, so legends outside the axes count)."""
    import io

    import matplotlib.image as mpimg

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    buf.seek(0)
    return int(mpimg.imread(buf, format="png").shape[1])


def _legend_outside(ax, title: str | None = None, **kw) -> None:
    """Move an axes' legend beside the data (right of the axes), never over it."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title_fontsize=9, frameon=False, **kw)


def _groups(values, per: int = MAX_COLOURS) -> list[list]:
    """``values`` cut into as few groups as keep each at most ``per`` long, of near-equal sizes."""
    values = list(values)
    n = max(1, -(-len(values) // per))
    size = -(-len(values) // n)
    return [values[i:i + size] for i in range(0, len(values), size)] or [[]]


def set_style(dpi: int = 100) -> None:
    """Apply sercore's one figure style (seaborn ``whitegrid``, colorblind palette, readable sizes).

    Call once at the top of a notebook. In IPython it also makes inline figures PNG (so HTML reports
    embed them) at ``dpi`` dots per inch.
    """
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=_PALETTE, font_scale=0.9)
    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "axes.titleweight": "bold",
                         "axes.titlesize": 11, "figure.titlesize": 12, "figure.titleweight": "bold",
                         "image.cmap": _CMAP, "legend.frameon": False})
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            ip.run_line_magic("matplotlib", "inline")
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")
    except ImportError:  # plain Python: nothing to configure
        pass


def emotion_order(labels: Sequence[str]) -> list[str]:
    """The distinct labels in canonical emotion order (unknown labels last, sorted)."""
    present = list(dict.fromkeys(str(x) for x in labels))
    known = [e for e in EMOTION_ORDER if e in present]
    return known + sorted(set(present) - set(known))


def emotion_palette(labels: Sequence[str]) -> dict[str, tuple]:
    """One fixed colour per canonical emotion, so an emotion has the same colour in every figure."""
    import seaborn as sns

    colours = sns.color_palette(_PALETTE, len(EMOTION_ORDER))
    fixed = dict(zip(EMOTION_ORDER, colours))
    extra = [lab for lab in emotion_order(labels) if lab not in fixed]
    more = sns.color_palette("husl", max(len(extra), 1))
    return {lab: fixed.get(lab, more[extra.index(lab)] if lab in extra else None) for lab in emotion_order(labels)}


def gender_palette(values: Sequence[str]) -> dict[str, tuple]:
    """Fixed colours for genders (female, male, then anything else), the same in every figure."""
    import seaborn as sns

    colours = sns.color_palette(_PALETTE, 10)
    fixed = {"female": colours[4], "male": colours[9], "unknown": (0.6, 0.6, 0.6)}
    present = sorted(set(str(v) for v in values), key=lambda g: (g not in fixed, list(fixed).index(g)
                                                                  if g in fixed else 0, g))
    return {g: fixed.get(g, colours[(7 + i) % 10]) for i, g in enumerate(present)}


def _figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.0, 4.0), **kw):
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


# ------------------------------------------------------------------------------------------- corpus
def corpus_counts(df, title: str = "Utterances per emotion, speaker and gender") -> Figure:
    """Bar charts of utterance counts by emotion, by speaker (coloured by gender) and by gender.

    Parameters
    ----------
    df : pandas.DataFrame
        A corpus table (:func:`sercore.load_corpus`): columns ``emotion``, ``speaker``, ``gender``.
    """
    import seaborn as sns

    fig, axes = _figure(3, 1, size=(_MAX_W - 0.2, 3.6), width_ratios=[1.2, 1.6, 0.6])
    order = emotion_order(df["emotion"])
    counts = df["emotion"].value_counts().reindex(order)
    sns.barplot(x=counts.index, y=counts.values, hue=counts.index, palette=emotion_palette(order),
                ax=axes[0, 0], legend=False)
    _label(axes[0, 0], "By emotion", "emotion", "utterances (count)")
    axes[0, 0].tick_params(axis="x", rotation=30)
    spk = (df.groupby(["speaker", "gender"], dropna=False).size().rename("n").reset_index()
           .sort_values("speaker"))
    spk["gender"] = spk["gender"].fillna("unknown")
    genders = gender_palette(spk["gender"])
    sns.barplot(data=spk, x="speaker", y="n", hue="gender", hue_order=list(genders), palette=genders,
                dodge=False, ax=axes[0, 1])
    axes[0, 1].set_ylim(0, 1.3 * spk["n"].max())
    axes[0, 1].legend(title=None, ncol=3, loc="upper right", fontsize=8)
    _label(axes[0, 1], "By speaker", "speaker id", "utterances (count)")
    axes[0, 1].tick_params(axis="x", rotation=90 if len(spk) > 12 else 0)
    g = df["gender"].fillna("unknown").value_counts().sort_index()
    sns.barplot(x=g.index, y=g.values, hue=g.index, palette=gender_palette(g.index), ax=axes[0, 2], legend=False)
    _label(axes[0, 2], "By gender", "gender", "utterances (count)")
    fig.suptitle(title)
    return fig


def duration_hist(df, crop_s: float | None = None, title: str = "Utterance durations") -> Figure:
    """Histogram of utterance durations (s), with the fixed crop length marked if given."""
    import seaborn as sns

    fig, axes = _figure(size=(6.5, 3.6))
    ax = axes[0, 0]
    sns.histplot(df["duration"], bins=30, ax=ax, color="C0")
    if crop_s is not None:
        longer = float((df["duration"] > crop_s).mean())
        ax.axvline(crop_s, color="C3", ls="--", lw=1.5)
        ax.text(crop_s, ax.get_ylim()[1] * 0.95, f" crop {crop_s:g} s\n {longer:.0%} longer",
                color="C3", va="top", fontsize=9)
    _label(ax, title, "duration (s)", "utterances (count)")
    return fig


def logmel_grid(examples: Mapping[str, np.ndarray], *, sr: int, hop_length: int, fmin: float = 0.0,
                fmax: float | None = None, ncols: int = 4, title: str = "Log-mel spectrogram per emotion",
                captions: Mapping[str, str] | None = None) -> Figure:
    """A grid of log-mel spectrograms, one panel per emotion.

    Parameters
    ----------
    examples : mapping of str to ndarray, shape (n_mels, n_frames) or (n_mels, n_frames, C)
        Log-mel power in dB per emotion (channel 0 is drawn).
    sr, hop_length : int
        Sample rate (Hz) and hop (samples) of the features, for the time axis in seconds.
    fmin, fmax : float
        Mel filterbank range (Hz), for the frequency axis.
    captions : mapping of str to str, optional
        Extra text per panel (e.g. the utterance id).
    """
    import librosa.display

    names = [e for e in emotion_order(list(examples))]
    nrows = int(np.ceil(len(names) / ncols))
    ncols = max(1, min(ncols, len(names)))
    nrows = int(np.ceil(len(names) / ncols))
    width = min(3.3 * ncols, _MAX_W - 1.0)   # room for the colour bar
    fig, axes = _figure(ncols, nrows, size=(width, 2.6 * nrows * width / (3.3 * ncols)), sharey=True)
    images = [np.asarray(examples[n])[..., 0] if np.ndim(examples[n]) == 3 else np.asarray(examples[n])
              for n in names]
    vmin = min(float(np.min(s)) for s in images)
    vmax = max(float(np.max(s)) for s in images)
    mesh = None
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        mesh = librosa.display.specshow(images[i], sr=sr, hop_length=hop_length, x_axis="time", y_axis="mel",
                                        fmin=fmin, fmax=fmax, ax=ax, vmin=vmin, vmax=vmax, cmap=_CMAP)
        cap = f" ({captions[names[i]]})" if captions and names[i] in captions else ""
        _label(ax, f"{names[i]}{cap}", "time (s)", "frequency (Hz)" if i % ncols == 0 else "")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, format="%+.0f dB", label="power (dB)", shrink=0.8)
    fig.suptitle(title)
    return fig


def crop_loss(frames_lost, title: str = "What fixed-length cropping cuts off") -> Figure:
    """Histogram of the share of each utterance's frames lost to cropping (%).

    Parameters
    ----------
    frames_lost : array-like, shape (n_utterances,)
        Fraction (0..1) of each utterance's frames beyond the crop.
    """
    import seaborn as sns

    lost = 100 * np.asarray(frames_lost, dtype=float)
    fig, axes = _figure(size=(6.5, 3.6))
    ax = axes[0, 0]
    sns.histplot(lost[lost > 0], bins=20, ax=ax, color="C3")
    ax.text(0.98, 0.95, f"{(lost > 0).mean():.0%} of utterances cropped\n"
            f"they lose {lost[lost > 0].mean() if (lost > 0).any() else 0:.1f} % of their frames on average",
            transform=ax.transAxes, ha="right", va="top", fontsize=9)
    _label(ax, title, "frames cut off (% of the utterance)", "cropped utterances (count)")
    return fig


# ----------------------------------------------------------------------------------------- training
def learning_curves(history, *, x: str = "epoch", y: str = "value", hue: str | None = "split",
                    col: str | None = "metric", units: Mapping[str, str] | None = None,
                    title: str = "Learning curves", band: bool = True) -> Figure:
    """Line plots of training histories, one panel per ``col`` value (e.g. loss, accuracy).

    At most :data:`MAX_COLOURS` ``hue`` values share a panel: with more (e.g. 8 models), the panels
    are repeated in rows, each row with its own group of hue values and its legend beside it.

    Parameters
    ----------
    history : pandas.DataFrame
        Long table: one row per (run, epoch, split, metric) with columns ``x``, ``y``, ``hue``, ``col``.
        Several runs (seeds, folds) at the same epoch are averaged; the band is the range of the
        middle 95 % of runs' values (seaborn ``("pi", 95)``: a spread of runs, not a confidence
        interval of the mean).
    units : mapping, optional
        Unit label per panel, e.g. ``{"loss": "cross-entropy (nats)", "accuracy": "accuracy (%)"}``.
    band : bool
        Draw the spread band (off: mean lines only).
    """
    import seaborn as sns

    history = _shown(history, hue, col)
    panels = list(dict.fromkeys(history[col])) if col else [None]
    hues = list(dict.fromkeys(history[hue])) if hue else [None]
    rows = _groups(hues) if hue else [[None]]
    # each row restarts the palette: a colour is unique within its panel and named by that row's legend
    colours = {h: c for r in rows for h, c in zip(r, sns.color_palette(_PALETTE, len(r)))}
    legend = hue is not None and len(hues) > 1
    pw = min(4.6, (_MAX_W - (_LEGEND_W if legend else 0)) / len(panels))
    fig, axes = _figure(len(panels), len(rows), size=(pw * len(panels), 3.0 * len(rows) + 0.6), sharex=True)
    for i, group in enumerate(rows):
        for j, panel in enumerate(panels):
            ax = axes[i, j]
            data = history if panel is None else history[history[col] == panel]
            if hue:
                data = data[data[hue].isin(group)]
            sns.lineplot(data=data, x=x, y=y, hue=hue, hue_order=group if hue else None,
                         palette={h: colours[h] for h in group} if hue else None, ax=ax,
                         errorbar=("pi", 95) if band else None,
                         marker="o" if data[x].nunique() < 15 else None, markersize=4)
            ylabel = (units or {}).get(panel, str(panel) if panel is not None else y)
            _label(ax, (str(panel) if panel is not None else "") if i == 0 else "",
                   (f"{x} (count)" if x == "epoch" else x) if i == len(rows) - 1 else "", ylabel)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        if legend:
            _legend_outside(axes[i, -1], title={"variant": "model"}.get(hue, hue))
    note = " (line: mean over runs; band: middle 95 % of runs)" if band else " (mean over runs)"
    fig.suptitle(title + note if len(title) < 70 else title)
    return fig


def results_ci(summary, *, y: str = "model", value: str = "mean", low: str = "ci_low", high: str = "ci_high",
               hue: str | None = "protocol", xlabel: str = "UAR (%)", scale: float = 100.0,
               reference: Mapping[str, float] | None = None, title: str = "Results with 95 % CIs") -> Figure:
    """Point estimates with confidence-interval bars, one row per ``y`` (e.g. model), coloured by ``hue``.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per (``y``, ``hue``) with ``value``, ``low``, ``high`` as fractions (0..1) unless
        ``scale=1``.
    reference : mapping of str to float, optional
        Vertical reference lines (label -> value as a fraction), e.g. claimed numbers or chance level.
    """
    import seaborn as sns

    summary = _shown(summary, y, hue)
    rows = list(dict.fromkeys(summary[y]))
    groups = list(dict.fromkeys(summary[hue])) if hue else [None]
    colours = sns.color_palette(_PALETTE, len(groups))
    fig, axes = _figure(size=(_MAX_W - _LEGEND_W - 0.6, 0.45 * len(rows) * max(1, len(groups) * 0.6) + 1.6))
    ax = axes[0, 0]
    offset = np.linspace(-0.2, 0.2, len(groups)) if len(groups) > 1 else [0.0]
    for k, g in enumerate(groups):
        sub = summary if g is None else summary[summary[hue] == g]
        pos = [rows.index(r) + offset[k] for r in sub[y]]
        mid = scale * sub[value].to_numpy(float)
        err = np.vstack([mid - scale * sub[low].to_numpy(float), scale * sub[high].to_numpy(float) - mid])
        ax.errorbar(mid, pos, xerr=np.clip(err, 0, None), fmt="o", capsize=3, color=colours[k],
                    label=None if g is None else str(g))
    for i, (lab, v) in enumerate((reference or {}).items()):
        ax.axvline(scale * v, ls=":", color=f"C{(i + 4) % 10}", lw=1.2, label=lab)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.invert_yaxis()
    _label(ax, title, xlabel, str(y))
    if len(groups) > 1 or reference:
        _legend_outside(ax)
    return fig


def metric_vs(data, *, x: str, y: str = "uar", hue: str | None = None, xlabel: str, ylabel: str = "UAR (%)",
              scale: float = 100.0, chance: float | None = None, logx: bool = False,
              title: str = "") -> Figure:
    """A metric against a swept setting (e.g. UAR against the number of LSTM time steps), 95 % CI band.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per run (seed, fold) with columns ``x``, ``y`` (fraction) and ``hue``.
    chance : float, optional
        Chance level (fraction) drawn as a dashed line.
    """
    import seaborn as sns

    fig, axes = _figure(size=(6.5, 3.8))
    ax = axes[0, 0]
    d = _shown(data, hue).assign(**{y: scale * data[y].astype(float)})
    sns.lineplot(data=d, x=x, y=y, hue=hue, marker="o", errorbar=("pi", 95), ax=ax,
                 **({} if hue else {"label": "mean over runs\n(band: middle 95 % of runs)"}))
    if chance is not None:
        ax.axhline(scale * chance, color="grey", ls="--", lw=1, label="chance")
    _legend_outside(ax)
    if logx:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(d[x].unique()))          # the swept values, written as plain numbers
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    _label(ax, title, xlabel, ylabel)
    return fig


# ----------------------------------------------------------------------------------------- errors
def confusion_heatmap(cm, labels: Sequence[str], *, title: str = "Confusion matrix",
                      normalize: bool = True) -> Figure:
    """Heatmap of a confusion matrix, rows = true class; row-normalised to recall (%) by default.

    Parameters
    ----------
    cm : array-like, shape (K, K)
        Counts, ``cm[i, j]`` = utterances of true class ``i`` predicted as ``j``.
    labels : sequence of str, length K
    """
    import seaborn as sns

    cm = np.asarray(cm, dtype=float)
    shown = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    k = len(labels)
    fig, axes = _figure(size=(1.0 + 0.75 * k, 0.8 + 0.65 * k))
    ax = axes[0, 0]
    sns.heatmap(shown, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100 if normalize else None,
                xticklabels=list(labels), yticklabels=list(labels), square=True, ax=ax,
                cbar_kws={"label": "share of true class (%)" if normalize else "utterances (count)"})
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    _label(ax, title, "predicted emotion", "true emotion")
    return fig


def grouped_bars(data, *, x: str, y: str, hue: str | None = None, xlabel: str, ylabel: str,
                 scale: float = 100.0, chance: float | None = None, title: str = "",
                 order: Sequence[str] | None = None, rotate: int = 0) -> Figure:
    """Bars of a metric per group (per-emotion recall, per-speaker or per-gender accuracy), 95 % CI.

    At most :data:`MAX_COLOURS` ``hue`` values share a panel; with more (e.g. 8 models), the figure is
    faceted into rows of panels with a shared y axis, each with its legend beside it, so that it stays
    within :data:`MAX_WIDTH_PX`.

    Parameters
    ----------
    data : pandas.DataFrame
        Rows with columns ``x``, ``y`` (fraction), ``hue``; several rows per bar (runs) give a CI
        (seaborn's bootstrap over the rows).
    """
    import seaborn as sns

    d = _shown(data, x, hue).assign(**{y: scale * data[y].astype(float)})
    order = display_names(order) if order is not None else list(dict.fromkeys(d[x]))
    order = [o for o in order if o in set(d[x])]
    hues = list(dict.fromkeys(d[hue])) if hue else [None]
    rows = _groups(hues) if hue else [[None]]
    legend = hue is not None or chance is not None
    width = min(max(5.0, 0.28 * len(order) * len(rows[0]) + 2.0), _MAX_W - (_LEGEND_W if legend else 0))
    fig, axes = _figure(1, len(rows), size=(width, 3.3 * len(rows) + 0.5), sharey=True)
    for i, group in enumerate(rows):
        ax = axes[i, 0]
        sub = d[d[hue].isin(group)] if hue else d
        palette = (gender_palette(group) if hue == "gender" else
                   dict(zip(group, sns.color_palette(_PALETTE, len(group)))) if hue else None)
        sns.barplot(data=sub, x=x, y=y, hue=hue, order=order, hue_order=group if hue else None,
                    errorbar=("ci", 95), capsize=0.1, ax=ax, err_kws={"linewidth": 1}, palette=palette)
        if chance is not None:
            ax.axhline(scale * chance, color="grey", ls="--", lw=1, label="chance")
        if rotate:
            ax.tick_params(axis="x", rotation=rotate)
        _label(ax, title if i == 0 else "", xlabel if i == len(rows) - 1 else "", ylabel)
        if legend:
            _legend_outside(ax, title={"variant": "model"}.get(hue, hue))
    return fig


def binned_error(data, *, x: str, error: str = "error", bins: Sequence[float], xlabel: str,
                 hue: str | None = None, title: str = "") -> Figure:
    """Model error rate (%) against a binned continuous variable (e.g. the listeners' recognition rate).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per prediction with ``x`` and ``error`` (1 = wrong, 0 = right).
    bins : sequence of float
        Bin edges in the units of ``x``.
    """
    import pandas as pd
    import seaborn as sns

    order = [f"{bins[i]:g}-{bins[i + 1]:g}" for i in range(len(bins) - 1)]
    d = data.assign(_bin=pd.cut(data[x], bins=bins, labels=order, include_lowest=True).astype(str),
                    _err=100 * data[error].astype(float))
    d = _shown(d, hue)
    fig, axes = _figure(size=(7, 3.8))
    ax = axes[0, 0]
    sns.barplot(data=d, x="_bin", y="_err", hue=hue, order=[o for o in order if o in set(d["_bin"])],
                errorbar=("ci", 95), capsize=0.1, ax=ax, err_kws={"linewidth": 1})
    if hue:
        _legend_outside(ax, title={"variant": "model"}.get(hue, hue))
    counts = d["_bin"].value_counts()
    shown = [o for o in order if o in set(d["_bin"])]
    ax.set_xticks(range(len(shown)), [f"{b}\nn={counts[b]}" for b in shown])
    _label(ax, title, xlabel, "model error rate (%)")
    return fig


def attention_over_logmel(logmel: np.ndarray, weights: np.ndarray, *, sr: int, hop_length: int,
                          fmin: float = 0.0, fmax: float | None = None, title: str = "Attention weights") -> Figure:
    """A log-mel spectrogram with the model's attention weights over time drawn beneath it.

    Parameters
    ----------
    logmel : ndarray, shape (n_mels, n_frames) or (n_mels, n_frames, C)
        Log-mel power (dB).
    weights : ndarray, shape (T,)
        Attention weights over the model's T time steps (summing to 1); step ``t`` is drawn over the
        frames it covers (T steps spread evenly over the n_frames).
    """
    import librosa.display

    s = logmel[..., 0] if logmel.ndim == 3 else logmel
    w = np.asarray(weights, dtype=float)
    n_frames = s.shape[1]
    duration = n_frames * hop_length / sr
    fig, axes = _figure(1, 2, size=(7.5, 4.6), sharex=True, height_ratios=[3, 1.2])
    mesh = librosa.display.specshow(s, sr=sr, hop_length=hop_length, x_axis="time", y_axis="mel", fmin=fmin,
                                    fmax=fmax, ax=axes[0, 0], cmap=_CMAP)
    fig.colorbar(mesh, ax=axes[:, 0], format="%+.0f dB", label="power (dB)")
    _label(axes[0, 0], title, "", "frequency (Hz)")
    edges = np.linspace(0, duration, len(w) + 1)
    axes[1, 0].stairs(w, edges, fill=True, alpha=0.6, color="C1")
    axes[1, 0].axhline(1 / len(w), color="grey", ls="--", lw=1, label="uniform")
    axes[1, 0].set_xlim(0, duration)
    axes[1, 0].legend(fontsize=8, loc="upper right")
    _label(axes[1, 0], "", "time (s)", "weight")
    return fig


def embedding_projection(embeddings: np.ndarray, labels: Sequence[str], *, style: Sequence[str] | None = None,
                         title: str = "Embeddings projected on their first two principal components") -> Figure:
    """2-D PCA projection of penultimate-layer embeddings, coloured by emotion.

    Parameters
    ----------
    embeddings : ndarray, shape (N, D)
    labels : sequence of str, length N
        Colour (emotion).
    style : sequence of str, length N, optional
        Marker (e.g. gender or correct/wrong).
    """
    import pandas as pd
    import seaborn as sns

    X = np.asarray(embeddings, dtype=np.float64)
    X = X - X.mean(axis=0)
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    Z = X @ vt[:2].T
    explained = sv[:2] ** 2 / max(float((sv ** 2).sum()), 1e-12)
    d = pd.DataFrame({"PC1": Z[:, 0], "PC2": Z[:, 1] if Z.shape[1] > 1 else 0.0,
                      "emotion": [str(v) for v in labels]})
    if style is not None:
        d["marker"] = [str(v) for v in style]
    fig, axes = _figure(size=(6.5, 5))
    ax = axes[0, 0]
    order = emotion_order(d["emotion"])
    sns.scatterplot(data=d, x="PC1", y="PC2", hue="emotion", hue_order=order, palette=emotion_palette(order),
                    style="marker" if style is not None else None, s=28, alpha=0.8, ax=ax)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _label(ax, title, f"PC 1 ({explained[0]:.0%} of variance, arb. units)",
           f"PC 2 ({explained[1] if len(explained) > 1 else 0:.0%} of variance, arb. units)")
    return fig


def training_time(summary, *, y: str = "model", value: str = "train_s", title: str = "Training time per run")\
        -> Figure:
    """Horizontal bars of mean training time per run (s)."""
    import seaborn as sns

    summary = _shown(summary, y)
    fig, axes = _figure(size=(6.5, 0.35 * summary[y].nunique() + 1.5))
    sns.barplot(data=summary, y=y, x=value, errorbar=("ci", 95), ax=axes[0, 0], color="C0")
    _label(axes[0, 0], title, "wall time (s)", str(y))
    return fig
