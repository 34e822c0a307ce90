"""Figures of the analyses, in a paper style, and one call to save them as PDF, SVG and PNG.

Every ``plot_*`` function takes the DataFrame of the matching analysis in ``slotlab.analysis`` and returns a
matplotlib ``Figure`` (built without pyplot, so nothing is shown twice in a notebook and no global figure
leaks); ``save_figure(fig, "figures/flips")`` writes ``flips.pdf``, ``flips.svg`` and ``flips.png`` atomically.

The style (``slotlab/styles/paper.mplstyle`` on top of seaborn's paper context, scaled up for projectors) embeds
fonts as TrueType in PDFs and keeps SVG text editable:

    >>> from slotlab.analysis import flip_rates
    >>> from slotlab.plot import plot_flip_rates, save_figure
    >>> save_figure(plot_flip_rates(flip_rates(run)), "figures/flips")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
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

from slotlab.checkpoint import atomic_write_bytes
from slotlab.errors import SlotlabError

FORMATS = ("pdf", "svg", "png")
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
        axes[0].legend(loc="best")
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
        ax.legend(title=None, ncols=2)
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
    return fig


# --- mask similarity --------------------------------------------------------------------------------------------
def plot_similarity_matrix(
    matrix: pd.DataFrame,
    upper: pd.DataFrame | None = None,
    labels: tuple[str, str] | None = None,
    annotate: bool | None = None,
) -> Figure:
    """A run x run heat-map (``similarity_matrix``).

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
    with paper_style():
        size = min(3.0 + 0.45 * n, 9.0)
        fig = Figure(figsize=(size + 1.2, size), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(
            pd.DataFrame(values, index=matrix.index, columns=matrix.columns),
            ax=ax,
            cmap="viridis",
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
    return fig


def plot_landscape(frame: pd.DataFrame, color: str = "accuracy", annotate: bool = False) -> Figure:
    """Runs as points of the 2-D MDS embedding of their mask distances, coloured by ``color`` (``mask_landscape``)."""
    _require(frame, ["run", "x", "y"], "plot_landscape")
    with paper_style():
        fig = Figure(layout="constrained")
        ax = fig.subplots()
        has_colour = color in frame.columns and frame[color].notna().any()
        if has_colour and pd.api.types.is_numeric_dtype(frame[color]):
            points = ax.scatter(frame["x"], frame["y"], c=frame[color], cmap="viridis", s=60, edgecolor="k")
            fig.colorbar(points, ax=ax, label=color)
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
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# --- saving ----------------------------------------------------------------------------------------------------------
def save_figure(
    fig: Figure, path_stem: str | Path, formats: Sequence[str] = FORMATS, dpi: int | None = None
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.pdf``, ``.svg`` and ``.png`` (each atomically); returns the paths.

    ``dpi`` sets the PNG resolution (default: the style's 300).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise SlotlabError(f"formats must be among {', '.join(FORMATS)}, got {unknown}")
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
