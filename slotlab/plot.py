"""Figures of the analyses, in a paper style, and one call to save them as PDF, SVG and PNG.

Every ``plot_*`` function takes the DataFrame of the matching analysis in ``slotlab.analysis`` and returns a
matplotlib ``Figure`` (built without pyplot, so nothing is shown twice in a notebook and no global figure
leaks); ``save_figure(fig, "figures/flips")`` writes ``flips.pdf``, ``flips.svg`` and ``flips.png`` atomically,
at the figure's own size for slides, or with ``width="column"`` (3.25 in) or ``width="text"`` (6.75 in) resized
to a paper's column or text width with print font sizes (8 pt text, 9 pt titles).

Layers are named as ``slotlab.analysis.sources.layer_names`` names them ("fc1 784->300"), accuracies are in
percent, legends sit outside the data, and the tick labels are fixed when a figure is built, so the figure shown
inline and the saved one have the same ticks.

The style (``slotlab/styles/paper.mplstyle`` on top of seaborn's paper context, scaled up for projectors) embeds
fonts as TrueType in PDFs and keeps SVG text editable:

    >>> from slotlab.analysis import flip_rates
    >>> from slotlab.plot import plot_flip_rates, save_figure
    >>> save_figure(plot_flip_rates(flip_rates(run)), "figures/flips")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import matplotlib as mpl
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from slotlab.checkpoint import atomic_write_bytes
from slotlab.errors import SlotlabError

FORMATS = ("pdf", "svg", "png")
# figure widths in inches: a two-column paper's column and text width (IEEE, ICML and NeurIPS are within a few
# hundredths of these), and None for a slide (the figure as built)
WIDTHS: dict[str, float | None] = {"column": 3.25, "text": 6.75, "slide": None}
PRINT_POINTS = 8.0  # text in print: labels, ticks, legends
PRINT_TITLE_POINTS = 9.0
FONT_SCALE = 1.5  # seaborn "paper" is sized for print; this keeps tick labels legible on a projector
CHANCE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.2}


def style_path() -> Path:
    """The paper style sheet shipped in the package."""
    return Path(str(resources.files("slotlab") / "styles" / "paper.mplstyle"))


@contextlib.contextmanager
def paper_style(font_scale: float = FONT_SCALE) -> Iterator[None]:
    """rcParams of seaborn's paper context (scaled) and slotlab's style sheet, restored on exit."""
    with mpl.rc_context(sns.plotting_context("paper", font_scale=font_scale)):
        with mpl.style.context(str(style_path())):
            yield


def fix_ticks(fig: Figure) -> Figure:
    """Pin every axis' tick style to the rcParams in force (call inside ``paper_style``).

    Matplotlib makes tick objects (with their grid lines) lazily, when a draw needs more of them, from the
    rcParams of that moment; a figure built in the style and shown inline outside it would get ticks and grid
    lines of another style than the saved one.
    """
    rc = mpl.rcParams
    for ax in fig.axes:
        for axis in ("x", "y"):
            for which in ("major", "minor"):
                ax.tick_params(
                    axis=axis,
                    which=which,
                    labelsize=rc[f"{axis}tick.labelsize"],
                    size=rc[f"{axis}tick.{which}.size"],
                    width=rc[f"{axis}tick.{which}.width"],
                    direction=rc[f"{axis}tick.direction"],
                    color=rc[f"{axis}tick.color"],
                    labelcolor=rc[f"{axis}tick.labelcolor"]
                    if rc[f"{axis}tick.labelcolor"] != "inherit"
                    else rc[f"{axis}tick.color"],
                    grid_color=rc["grid.color"],
                    grid_alpha=rc["grid.alpha"],
                    grid_linewidth=rc["grid.linewidth"],
                    grid_linestyle=rc["grid.linestyle"],
                )
    return fig


def _outside_legend(fig: Figure, ax, **kwargs) -> None:
    """The axes' legend moved to the right of the figure, clear of the data (bars, histograms)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", **kwargs)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise SlotlabError(f"{what} takes the DataFrame of the matching analysis, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SlotlabError(
            f"{what} needs columns {', '.join(missing)}; pass the frame of the matching analysis"
        )
    if frame.empty:
        raise SlotlabError(f"{what} got an empty frame; nothing to draw")


def _grid(count: int, cols: int, panel: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(cols, count))
    rows = -(-count // cols)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def _layers(frame: pd.DataFrame, layers: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame["layer"]))
    if layers is None:
        return present
    unknown = [name for name in layers if name not in present]
    if unknown:
        raise SlotlabError(f"unknown layers {unknown}; the frame has {present}")
    return list(layers)


# --- Slot Machines: which values are selected ---------------------------------------------------------------
def plot_value_histograms(frame: pd.DataFrame, layers: Sequence[str] | None = None, cols: int = 3) -> Figure:
    """Selected values against all initial values, one panel per layer (``value_histograms``)."""
    _require(frame, ["layer", "kind", "bin_left", "bin_right", "density"], "plot_value_histograms")
    with paper_style():
        names = _layers(frame, layers)
        fig, axes = _grid(len(names), cols, (3.6, 2.8))
        for ax, name in zip(axes, names, strict=False):
            for kind, style in (
                ("initial", {"color": "0.6", "alpha": 0.5, "label": "all K values"}),
                ("selected", {"color": "C0", "alpha": 0.8, "label": "selected"}),
            ):
                part = frame[(frame["layer"] == name) & (frame["kind"] == kind)]
                ax.stairs(
                    part["density"], [*part["bin_left"], part["bin_right"].iloc[-1]], fill=True, **style
                )
            ax.set_title(name)
            ax.set_xlabel("weight value")
        axes[0].set_ylabel("density")
        _outside_legend(fig, axes[0])
        fix_ticks(fig)
    return fig


def _bars_per_layer(frame: pd.DataFrame, x: str, xlabel: str, what: str) -> Figure:
    _require(frame, ["layer", x, "fraction", "chance"], what)
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        sns.barplot(data=frame, x=x, y="fraction", hue="layer", ax=ax, palette="colorblind")
        for chance in frame["chance"].unique():
            ax.axhline(chance, **CHANCE_STYLE)
        ax.plot([], [], **CHANCE_STYLE, label="chance (1/K)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of connections")
        _outside_legend(fig, ax)
        fix_ticks(fig)
    return fig


def plot_magnitude_ranks(frame: pd.DataFrame) -> Figure:
    """How often the selected value has each magnitude rank among its K (``magnitude_ranks``)."""
    return _bars_per_layer(
        frame, "rank", "rank of |selected value| among K (0 = smallest)", "plot_magnitude_ranks"
    )


def plot_slot_usage(frame: pd.DataFrame) -> Figure:
    """How the choices spread over the K slots (``slot_usage``)."""
    return _bars_per_layer(frame, "slot", "slot", "plot_slot_usage")


# --- flips ----------------------------------------------------------------------------------------------------
def plot_flip_rates(frame: pd.DataFrame, layer: str | None = "all", x: str = "epoch") -> Figure:
    """Flip rate over training on a log scale (``flip_rates`` or ``compare_flip_rates``).

    One line per run when the frame has a ``run`` column (e.g. greedy vs sampled) for ``layer``; with a single
    run and ``layer=None``, one line per layer.
    """
    _require(frame, ["layer", "flip_rate", x], "plot_flip_rates")
    data = frame if layer is None else frame[frame["layer"] == layer]
    if data.empty:
        raise SlotlabError(f"no rows for layer {layer!r}; layers: {list(dict.fromkeys(frame['layer']))}")
    hue = "run" if "run" in data.columns and layer is not None else "layer"
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        for label, part in data.groupby(hue, sort=False):
            rate = part["flip_rate"].where(part["flip_rate"] > 0)  # a zero has no place on a log axis
            ax.plot(part[x].astype(float), 100 * rate, marker="o", label=str(label))
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel(x)
        ax.set_ylabel("connections changed (%)")
        ax.set_title("selection flips" + (f" ({layer})" if layer not in (None, "all") else ""))
        ax.legend()
        fix_ticks(fig)
    return fig


# --- what a layer chose, as the image it reads -----------------------------------------------------------------
def unit_images(weights: np.ndarray, image_shape: Sequence[int], units: int = 16) -> np.ndarray:
    """The incoming weights of the first ``units`` output units of a layer that reads the image directly, each
    shaped as the image: (out, C*H*W) -> (units, H, W), channels averaged."""
    c, h, w = (int(v) for v in image_shape)
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != c * h * w:
        raise SlotlabError(
            f"unit images need a layer that reads the {c}x{h}x{w} image, got weights {tuple(weights.shape)}; "
            f"pick the first layer of a fully connected network (Lenet-300-100's fc1)"
        )
    return weights[:units].reshape(-1, c, h, w).mean(1)


def draw_unit_images(fig: Figure, images: np.ndarray, title: str = "", cols: int = 8) -> object:
    """Each unit's chosen weights as a small image (red positive, blue negative, one symmetric scale) into
    ``fig``, with a labelled colorbar; returns the colorbar."""
    rows = -(-len(images) // cols)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.abs(images).max()) or 1.0
    shown = None
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < len(images):
            shown = ax.imshow(images[index], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"unit {index}", fontsize="small")
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize="medium")
    colorbar = fig.colorbar(shown, ax=axes, shrink=0.8)
    colorbar.set_label("chosen weight")
    return colorbar


def plot_chosen_weights(
    weights: np.ndarray, image_shape: Sequence[int] = (1, 28, 28), units: int = 16, title: str = ""
) -> Figure:
    """The first ``units`` units of a first layer, each as the image of the weights it chose (the selected value
    per connection for slots, the kept weight or 0 for a mask): (out, C*H*W) weights, e.g. Lenet-300-100's fc1
    on MNIST. Strokes and blobs show what each unit looks for; noise shows a unit that learned little."""
    with paper_style():
        images = unit_images(weights, image_shape, units)
        cols = min(8, len(images))
        fig = Figure(figsize=(1.1 * cols + 1.0, 1.25 * -(-len(images) // cols) + 0.4), layout="constrained")
        draw_unit_images(fig, images, title, cols)
    return fig


# --- mask similarity --------------------------------------------------------------------------------------------
def plot_similarity_matrix(
    matrix: pd.DataFrame,
    upper: pd.DataFrame | None = None,
    labels: tuple[str, str] | None = None,
    annotate: bool | None = None,
) -> Figure:
    """A run x run heat-map (``similarity_matrix``).

    The diagonal (each run with itself: 1, or distance 0) is left blank, and the colour scale spans the
    off-diagonal cells, so that differences between pairs show instead of all looking alike next to the 1.0s.
    With ``upper``, the lower triangle shows ``matrix`` and the upper one ``upper`` (two methods in one square,
    as the mask-landscape figures do); ``labels`` names the two triangles.
    """
    if not isinstance(matrix, pd.DataFrame) or matrix.shape[0] != matrix.shape[1] or matrix.empty:
        raise SlotlabError("plot_similarity_matrix takes the square frame of similarity_matrix")
    values = matrix.to_numpy(dtype=float).copy()
    if upper is not None:
        if upper.shape != matrix.shape:
            raise SlotlabError(f"upper is {upper.shape} but matrix is {matrix.shape}; give equally many runs")
        above = np.triu_indices_from(values, k=1)
        values[above] = upper.to_numpy(dtype=float)[above]
    n = len(values)
    annotate = n <= 8 if annotate is None else annotate
    metric = matrix.attrs.get("metric", "similarity")
    diagonal = np.eye(n, dtype=bool)
    off = values[~diagonal]
    low, high = (float(np.nanmin(off)), float(np.nanmax(off))) if off.size else (0.0, 1.0)
    if high - low < 1e-9:  # all pairs alike: a small band around them
        low, high = low - 0.005, high + 0.005
    with paper_style():
        size = min(3.0 + 0.45 * n, 9.0)
        fig = Figure(figsize=(size + 1.2, size), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(
            pd.DataFrame(values, index=matrix.index, columns=matrix.columns),
            ax=ax,
            cmap="viridis",
            mask=diagonal,
            vmin=low,
            vmax=high,
            square=True,
            annot=annotate,
            fmt=".3f",
            cbar_kws={
                "label": metric if upper is None else f"{metric} / {upper.attrs.get('metric', 'upper')}"
            },
        )
        ax.set_xlabel("")
        ax.set_ylabel("")
        if upper is not None and labels is not None:
            ax.set_title(f"lower: {labels[0]}   upper: {labels[1]}")
        ax.set_facecolor("white")  # the blank diagonal
        fix_ticks(fig)
    return fig


def plot_layer_similarity(curves: pd.DataFrame) -> Figure:
    """Per-layer mean similarity with its min-max band and the chance level (``layer_similarity_curves``).

    A ``group`` column (curves of several sets of runs concatenated, e.g. one per method) draws a line per group.
    """
    _require(curves, ["layer", "position", "mean", "min", "max", "chance"], "plot_layer_similarity")
    groups = curves.groupby("group", sort=False) if "group" in curves.columns else [(None, curves)]
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        for label, part in groups:
            line = ax.plot(part["position"], part["mean"], marker="o", label=label or "mean over pairs")[0]
            ax.fill_between(part["position"], part["min"], part["max"], color=line.get_color(), alpha=0.2)
            if part["chance"].notna().any():
                ax.plot(part["position"], part["chance"], **CHANCE_STYLE)
        ax.plot([], [], **CHANCE_STYLE, label="chance")
        layers = list(dict.fromkeys(curves["layer"]))
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
        ax.set_ylabel(curves.attrs.get("metric", "similarity"))
        ax.legend()
        fix_ticks(fig)
    return fig


def plot_landscape(frame: pd.DataFrame, color: str = "accuracy", annotate: bool = False) -> Figure:
    """Runs as points of the 2-D MDS embedding of their mask distances, coloured by ``color`` (``mask_landscape``)."""
    _require(frame, ["run", "x", "y"], "plot_landscape")
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        has_colour = color in frame.columns and frame[color].notna().any()
        if has_colour and pd.api.types.is_numeric_dtype(frame[color]):
            shade = frame[color] * (100 if color == "accuracy" else 1)
            points = ax.scatter(frame["x"], frame["y"], c=shade, cmap="viridis", s=60, edgecolor="k")
            fig.colorbar(points, ax=ax, label="test accuracy %" if color == "accuracy" else color)
        elif has_colour:
            sns.scatterplot(data=frame, x="x", y="y", hue=color, ax=ax, s=60, palette="colorblind")
        else:
            ax.scatter(frame["x"], frame["y"], s=60, edgecolor="k")
        if annotate:
            for run, x, y in zip(frame["run"], frame["x"], frame["y"], strict=True):
                ax.annotate(str(run), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
        metric = frame.attrs.get("metric", "mask")
        ax.set_xlabel(f"MDS 1 ({metric} distance)")
        ax.set_ylabel("MDS 2")
        ax.set_aspect("equal", adjustable="datalim")
        if ax.get_legend() is not None:
            _outside_legend(fig, ax)
        fix_ticks(fig)
    return fig


# --- weight profiles and norms -------------------------------------------------------------------------------------
def plot_weight_profiles(frame: pd.DataFrame, layers: Sequence[str] | None = None) -> Figure:
    """Every neuron's sorted incoming weights on one axis; a row per layer, a column per checkpoint.

    Takes the frame of ``weight_profiles`` (pass ``max_neurons`` there for big layers).
    """
    _require(frame, ["checkpoint", "layer", "neuron", "quantile", "value"], "plot_weight_profiles")
    names = _layers(frame, layers)
    checkpoints = list(dict.fromkeys(frame["checkpoint"]))
    with paper_style():
        fig = Figure(figsize=(3.4 * len(checkpoints), 2.6 * len(names)), layout="constrained")
        axes = fig.subplots(len(names), len(checkpoints), squeeze=False, sharey="row")
        for i, name in enumerate(names):
            for j, checkpoint in enumerate(checkpoints):
                ax = axes[i, j]
                part = frame[(frame["layer"] == name) & (frame["checkpoint"] == checkpoint)]
                lines = [
                    np.column_stack([g["quantile"].to_numpy(), g["value"].to_numpy()])
                    for _, g in part.groupby("neuron", sort=False)
                ]
                alpha = min(1.0, max(0.03, 10 / max(len(lines), 1)))  # many neurons: fainter lines
                ax.add_collection(LineCollection(lines, linewidths=0.6, alpha=alpha, color="C0"))
                ax.autoscale()
                ax.set_title(f"{name} ({checkpoint})" if len(checkpoints) > 1 else name)
                if i == len(names) - 1:
                    ax.set_xlabel("rank within neuron (quantile)")
            axes[i, 0].set_ylabel("weight")
        fix_ticks(fig)
    return fig


def plot_kept_pruned_norms(frame: pd.DataFrame) -> Figure:
    """Per layer, the norm of kept weights up and of pruned weights down (``kept_pruned_norms``).

    A ``run`` column (from ``per_run``) draws grouped bars, e.g. a method against its recycled version.
    """
    _require(frame, ["layer", "kept_norm", "pruned_norm"], "plot_kept_pruned_norms")
    runs = list(dict.fromkeys(frame["run"])) if "run" in frame.columns else [None]
    layers = list(dict.fromkeys(frame["layer"]))
    width = 0.8 / len(runs)
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        for i, run in enumerate(runs):
            part = frame if run is None else frame[frame["run"] == run]
            part = part.set_index("layer").reindex(layers)
            x = np.arange(len(layers)) + (i - (len(runs) - 1) / 2) * width
            colour = f"C{i}"
            ax.bar(x, part["kept_norm"], width, color=colour, label=run)
            ax.bar(x, -part["pruned_norm"], width, color=colour, alpha=0.45)  # lighter: pruned
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
        ax.set_ylabel("norm: kept (+), pruned (-)")
        if runs != [None]:
            _outside_legend(fig, ax)
        fix_ticks(fig)
    return fig


# --- saving ----------------------------------------------------------------------------------------------------------
def print_sized(fig: Figure, width: str) -> Figure:
    """A copy of ``fig`` resized to ``width`` (a key of ``WIDTHS``) with print font sizes; ``fig`` is unchanged.

    The height keeps the figure's aspect ratio; every text is 8 pt, the axes' and figure's titles 9 pt, and the
    tick labels 8 pt (ticks made later, at the draw, too). "slide" returns ``fig`` itself.
    """
    if width not in WIDTHS:
        raise SlotlabError(f"width must be one of {', '.join(WIDTHS)}, got {width!r}")
    inches = WIDTHS[width]
    if inches is None:
        return fig
    copy = pickle.loads(
        pickle.dumps(fig)
    )  # a figure without pyplot pickles whole: the caller's stays as shown
    old_width, old_height = copy.get_size_inches()
    copy.set_size_inches(inches, old_height * inches / old_width)
    titles = {id(t) for ax in copy.axes for t in (ax.title, ax._left_title, ax._right_title)}
    if copy._suptitle is not None:
        titles.add(id(copy._suptitle))
    for text in copy.findobj(Text):
        text.set_fontsize(PRINT_TITLE_POINTS if id(text) in titles else PRINT_POINTS)
    for ax in copy.axes:
        ax.tick_params(axis="both", which="both", labelsize=PRINT_POINTS)
    return copy


def save_figure(
    fig: Figure,
    path_stem: str | Path,
    formats: Sequence[str] = FORMATS,
    dpi: int | None = None,
    width: str = "slide",
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.pdf``, ``.svg`` and ``.png`` (each atomically); returns the paths.

    ``width``: "slide" (the figure as built, sized for a projector), "column" (3.25 in) or "text" (6.75 in), the
    last two with print font sizes (``print_sized``). ``dpi`` sets the PNG resolution (default: the style's 300).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise SlotlabError(f"formats must be among {', '.join(FORMATS)}, got {unknown}")
    fig = print_sized(fig, width)
    stem = Path(path_stem)
    if stem.suffix.lstrip(".") in FORMATS:
        stem = stem.with_suffix("")
    written = []
    with paper_style():  # the font embedding settings are read when the file is written
        for fmt in formats:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, **({"dpi": dpi} if dpi else {}))
            path = stem.with_name(f"{stem.name}.{fmt}")
            atomic_write_bytes(buffer.getvalue(), path)
            written.append(path)
    return written
