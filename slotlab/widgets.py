"""Notebook widgets: a live loss/accuracy plot while training, and the Explorer.

``LivePlot`` is a trainer callback that redraws the loss and accuracy curves after every epoch into an
``ipywidgets.Image``; ``run_live(config)`` is ``load_or_run`` with that plot (a cached run shows its stored
history instead). The ``Explorer`` picks a method, model, dataset, K or density and seeds, trains on demand (the
Train button, never a slider move) with the live plot, keeps a table of its results and shows any layer's learned
selection (slot index or keep-mask per connection) as an image, with a slider over the selection snapshots
recorded while it trained (``slotlab.analysis.Recorder``) to watch choices flip. Methods come from
``slotlab.methods.METHODS`` and their controls from the options each method declares (``option(control=...)``), so
every registered method appears in the menu with its own controls. ``run_recorded(config)`` trains with
snapshots for the notebooks' flip-rate analyses.

Everything draws into widgets with matplotlib's Agg canvas, so the callbacks run, and are tested, without a
browser.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from slotlab.analysis import Recorder, load_snapshots
from slotlab.callback import Callback
from slotlab.config import RunConfig, scaled_config
from slotlab.data import dataset_names
from slotlab.errors import SlotlabError
from slotlab.layers.factory import SelectingLayer
from slotlab.methods import METHODS, OptionSpec, option_specs
from slotlab.methods.base import Range, SourceRun, Steps, Toggle
from slotlab.models import model_names
from slotlab.runs import RunResult, load_or_run, runs_root
from slotlab.scales import Scale, get_scale
from slotlab.train import Trainer

SPLIT_STYLE = {"train": "-", "val": "--", "test": "o"}


def figure_png(figure: Figure, dpi: int = 90) -> bytes:
    """The figure rendered as PNG bytes (Agg: no display needed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def hidden_image() -> w.Image:
    """An image widget that stays hidden until ``show_png`` gives it a picture (an empty one shows as broken)."""
    return w.Image(format="png", layout=w.Layout(display="none"))


def show_png(image: w.Image, png: bytes) -> None:
    image.value = png
    image.layout.display = ""


def draw_history(axes: Sequence[Any], history: pd.DataFrame, title: str = "") -> None:
    """Loss (left) and accuracy (right) per epoch and split of a run's history, drawn into two axes."""
    for ax, column in zip(axes, ("loss", "accuracy"), strict=True):
        ax.clear()
        for split, style in SPLIT_STYLE.items():
            rows = history[history["split"] == split]
            if len(rows):
                ax.plot(rows["epoch"], rows[column], style, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right")
    if title:
        axes[0].set_title(title, loc="left", fontsize="medium")


class LivePlot(Callback):
    """Redraws the loss and accuracy curves into ``image`` (an ``ipywidgets.Image``) after every epoch."""

    def __init__(self, image: w.Image | None = None, show: bool = True, title: str = "") -> None:
        self.image = image if image is not None else hidden_image()
        self.show = show  # display the image when training starts (off when it sits in a layout already)
        self.title = title
        self.figure = Figure(figsize=(8, 2.8), layout="constrained")  # labels clear of the next panel
        self.axes = self.figure.subplots(1, 2)
        self.draws = 0
        self._shown = False

    def display(self) -> None:
        if not self._shown:
            from IPython.display import display

            display(self.image)
            self._shown = True

    def update(self, history: pd.DataFrame, title: str | None = None) -> None:
        draw_history(self.axes, history, self.title if title is None else title)
        show_png(self.image, figure_png(self.figure))
        self.draws += 1

    def on_train_start(self, trainer: Trainer) -> None:
        self.title = self.title or trainer.settings.name
        if self.show:
            self.display()
        if len(trainer.rows):  # a resumed run: show what it had already
            self.update(trainer.history)

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.update(trainer.history)


def run_live(config: RunConfig, callbacks: Sequence[Callback] = (), **kwargs: Any) -> RunResult:
    """``load_or_run`` with a live plot; a run read back from its folder shows its stored history."""
    plot = LivePlot(title=config.name)
    result = load_or_run(config, callbacks=[plot, *callbacks], **kwargs)
    if plot.draws == 0:
        plot.update(result.history)
    plot.display()
    return result


RECORDED_DIR = "recorded"


class SelectionRecorder(Recorder):
    """A ``Recorder`` that stands aside for networks without a selection (dense, finetune), instead of failing."""

    def on_train_start(self, trainer: Trainer) -> None:
        self.active = bool(selecting_layers(trainer.model))
        if self.active:
            super().on_train_start(trainer)

    def on_step_end(self, trainer: Trainer) -> None:
        if self.active:
            super().on_step_end(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.active:
            super().on_epoch_end(trainer)


def run_recorded(
    config: RunConfig, every: int = 1, unit: str = "epoch", live: bool = False, root: str | Path | None = None
) -> RunResult:
    """``load_or_run`` with selection snapshots every ``every`` epochs (or steps), for flip rates and sliders.

    Recorded runs live in ``<runs root>/recorded/``: a run of the same config finished elsewhere without a
    recorder holds no snapshots, and a finished run is read back, never retrained.
    """
    folder = Path(root) if root is not None else runs_root() / RECORDED_DIR
    plot = LivePlot(title=config.name) if live else None
    recorder = Recorder(every=every, unit=unit)
    result = load_or_run(config, root=folder, callbacks=[recorder, *([plot] if plot else [])])
    if plot is not None:
        if plot.draws == 0:
            plot.update(result.history)
        plot.display()
    load_snapshots(result)  # a clear error if a finished run in this folder was trained without a recorder
    return result


# --- selections as images -------------------------------------------------------------------------------------


def selecting_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``model`` whose learned object is a discrete selection (slot index or keep-mask), by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SelectingLayer)}


def selection_matrix(selection: torch.Tensor) -> np.ndarray:
    """A selection shaped like its weight as a 2-D array: Linear (out, in) as is, Conv (out, in, kh, kw) as
    (out, in * kh * kw) with each filter's kernels side by side."""
    if selection.ndim < 2:
        raise SlotlabError(
            f"a selection has the shape of a weight (2-D or more), got {tuple(selection.shape)}"
        )
    return selection.reshape(selection.shape[0], -1).cpu().numpy()


def draw_selection(ax: Any, selection: torch.Tensor, title: str = "", k: int | None = None) -> Any:
    """The selection as an image: one colour per slot index (K colours), or kept (dark) / removed for a mask."""
    matrix = selection_matrix(selection)
    if matrix.dtype == np.bool_:
        image = ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        label = f"kept {matrix.mean():.1%}"
    else:
        top = (k or int(matrix.max()) + 1) - 1
        image = ax.imshow(
            matrix, cmap="viridis", vmin=0, vmax=max(top, 1), aspect="auto", interpolation="nearest"
        )
        label = f"slot index 0..{top}"
    ax.set_title(f"{title}  ({label})" if title else label, loc="left", fontsize="medium")
    ax.set_xlabel("input (kernels side by side for a conv)")
    ax.set_ylabel("output unit")
    return image


# --- the explorer ---------------------------------------------------------------------------------------------


def option_control(spec: OptionSpec) -> w.ValueWidget:
    """The widget of one method option, from the control it declares."""
    style = {"description_width": "initial"}
    label = spec.label
    control = spec.control
    if isinstance(control, Steps):
        return w.SelectionSlider(options=control.values, value=spec.default, description=label, style=style)
    if isinstance(control, Range):
        return w.FloatSlider(
            value=spec.default,
            min=control.low,
            max=control.high,
            step=control.step,
            description=label,
            style=style,
        )
    if isinstance(control, Toggle):
        return w.ToggleButtons(options=list(spec.choices or ()), value=spec.default, description=label)
    if isinstance(control, SourceRun):
        return w.Dropdown(options=[""], value="", description=label, style=style)
    raise SlotlabError(f"option {spec.name} declares no Explorer control")


RESULT_COLUMNS = ["run", "method", "model", "dataset", "k", "density", "seeds", "val %", "test %", "epochs"]


class Explorer:
    """Pick a method, model, K or density and seeds; train on demand; compare results; look at selections.

    ``Explorer()`` in a notebook cell shows it. Every control only changes the config; training happens when the
    Train button is pressed (or ``explorer.train()`` is called), and a config that already ran is read back.
    Runs live in the runs root (``$SLOTLAB_RUNS``, else ``runs/``), where finetuning finds its source run.
    """

    def __init__(self, scale: str | Scale | None = None) -> None:
        self.scale = get_scale(scale)
        self.results: list[RunResult] = []
        style = {"description_width": "initial"}
        self.method = w.Dropdown(options=list(METHODS), value="slots", description="method", style=style)
        self.model = w.Dropdown(options=model_names(), value="lenet300", description="model", style=style)
        self.dataset = w.Dropdown(options=dataset_names(), value="mnist", description="dataset", style=style)
        # one control per method option that declares one; options several methods share (k) share it
        self.controls: dict[str, w.ValueWidget] = {
            name: option_control(spec) for name, spec in option_specs().items() if spec.control is not None
        }
        self.weight_seed = w.BoundedIntText(
            value=0, min=0, max=2**31 - 1, description="weight seed", style=style
        )
        self.score_seed = w.BoundedIntText(
            value=0, min=0, max=2**31 - 1, description="score seed", style=style
        )
        # at least 2 epochs by default: a live plot of a single epoch is one point
        self.epochs = w.BoundedIntText(
            value=max(2, self.scale.epochs or 20), min=1, max=1000, description="epochs", style=style
        )
        self.train_button = w.Button(description="Train", button_style="primary", icon="play")
        self.status = w.HTML()
        self.log = w.Output()  # the progress bar
        self.plot = LivePlot(show=False)
        self.table = w.HTML()
        self.table.add_class("jp-RenderedHTMLCommon")  # JupyterLab's table style: aligned, ruled columns
        self.run_choice = w.Dropdown(options=[], description="run", style=style)
        self.layer = w.Dropdown(options=[], description="layer", style=style)
        self.selection_image = hidden_image()
        self.snapshot = w.IntSlider(value=0, min=0, max=0, description="snapshot", disabled=True, style=style)
        self.snapshot_label = w.Label()
        self._snapshots: Any = None
        self._snapshot_cache: dict[int, dict[str, torch.Tensor]] = {}
        self._selection_figure = Figure(figsize=(8, 3))
        self._viewed: nn.Module | None = None
        self._quiet = False
        self.train_button.on_click(self.train)
        self.method.observe(self._on_method, names="value")
        self._on_method({"new": self.method.value})
        self.run_choice.observe(self._on_run_choice, names="value")
        self.layer.observe(self._on_layer, names="value")
        self.snapshot.observe(self._on_snapshot, names="value")
        controls = w.VBox(
            [
                w.HBox([self.method, self.model, self.dataset]),
                w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap")),
                w.HBox([self.weight_seed, self.score_seed, self.epochs]),
                w.HBox([self.train_button, self.status]),
            ]
        )
        viewer = w.VBox(
            [
                w.HBox([self.run_choice, self.layer]),
                w.HBox([self.snapshot, self.snapshot_label]),
                self.selection_image,
            ]
        )
        self.widget = w.VBox(
            [
                w.HTML(f"<b>slotlab explorer</b> &middot; scale <code>{self.scale.name}</code>"),
                controls,
                self.log,
                self.plot.image,
                self.table,
                viewer,
            ]
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # --- config and training --------------------------------------------------------------------------------
    def config(self) -> RunConfig:
        """The config the controls describe, completed by the method's recipe at the explorer's scale."""
        choices: dict[str, Any] = {
            "model": self.model.value,
            "dataset": self.dataset.value,
            "weight_seed": self.weight_seed.value,
            "score_seed": self.score_seed.value,
            "epochs": self.epochs.value,
        }
        method = self.method.value
        own = METHODS[method].options_type.names()
        choices.update({name: self.controls[name].value for name in own if name in self.controls})
        return scaled_config(self.scale, method, **choices)

    def train(self, _button: w.Button | None = None) -> RunResult | None:
        """Run (or read back) the configured run, then add it to the table and show its selections."""
        try:
            config = self.config()
        except SlotlabError as error:
            self._say(str(error), error=True)
            return None
        self._say(f"training {config.name} ...")
        self.plot.title = config.name
        draws = self.plot.draws
        self.train_button.disabled = True
        try:
            with self.log:
                result = load_or_run(config, callbacks=[SelectionRecorder(every=1, unit="epoch"), self.plot])
        except SlotlabError as error:
            self._say(str(error), error=True)
            return None
        finally:
            self.train_button.disabled = False
        if self.plot.draws == draws:  # read back from its run folder: show the stored history
            self.plot.update(result.history, config.name)
        self.results = [r for r in self.results if r.config != config] + [result]
        self._say(f"{config.name}: test accuracy {result.test_accuracy:.2%}")
        self._refresh_table()
        self._refresh_sources()
        self._quiet = True  # setting options fires the observers; the run is viewed once, below
        try:
            self.run_choice.options = [r.config.name for r in self.results]
            self.run_choice.value = config.name
        finally:
            self._quiet = False
        self.view_run(config.name)
        return result

    def _on_method(self, change: dict[str, Any]) -> None:
        """Enable only the controls the chosen method uses."""
        used = set(METHODS[change["new"]].options_type.names())
        for name, control in self.controls.items():
            control.disabled = name not in used

    def _say(self, message: str, error: bool = False) -> None:
        colour = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{colour}'>{html.escape(message)}</span>"

    def results_frame(self) -> pd.DataFrame:
        """One row per run of this explorer: what was chosen and the accuracies reached."""
        rows = []
        for r in self.results:
            c = r.config
            rows.append(
                {
                    "run": c.name,
                    "method": c.method,
                    "model": c.model,
                    "dataset": c.dataset,
                    "k": getattr(c.options, "k", ""),
                    "density": getattr(c.options, "density", ""),
                    "seeds": f"w{c.weight_seed} s{c.score_seed}",
                    "val %": round(100 * r.metrics["val_accuracy"], 2),
                    "test %": round(100 * r.test_accuracy, 2),
                    "epochs": r.metrics["epochs"],
                }
            )
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    def _refresh_table(self) -> None:
        self.table.value = self.results_frame().to_html(index=False, border=0)

    def _refresh_sources(self) -> None:
        for name, spec in option_specs().items():
            if isinstance(spec.control, SourceRun):
                runs = [r.config.hash for r in self.results if r.config.method == spec.control.method]
                self.controls[name].options = ["", *runs]

    # --- selection viewer -----------------------------------------------------------------------------------
    def _on_run_choice(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"]:
            self.view_run(change["new"])

    def _on_layer(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"] is not None:
            self.show_selection(change["new"])

    def view_run(self, name: str) -> None:
        """Load run ``name`` into the viewer: its best network, its snapshots (if recorded), its first layer."""
        result = next((r for r in self.results if r.config.name == name), None)
        if result is None:
            raise SlotlabError(
                f"no run {name!r} in this explorer; runs: {', '.join(self.run_choice.options)}"
            )
        self._viewed = result.model("best")
        names = list(selecting_layers(self._viewed))
        self._snapshots, self._snapshot_cache = None, {}
        if names and (result.path / "selections").is_dir():
            self._snapshots = load_snapshots(result)
        self._quiet = True
        try:
            self.layer.options = names
            self.layer.value = names[0] if names else None
            if self._snapshots is not None:
                epochs = [s.epoch for s in self._snapshots]
                best = result.metrics["best_epoch"]
                self.snapshot.max = len(self._snapshots) - 1
                self.snapshot.value = epochs.index(best) if best in epochs else len(epochs) - 1
            else:
                self.snapshot.value, self.snapshot.max = 0, 0
            self.snapshot.disabled = self._snapshots is None
        finally:
            self._quiet = False
        if names:
            self.show_selection(names[0])
        else:
            self.snapshot_label.value = ""
            self._selection_figure.clear()
            self._selection_figure.text(
                0.5, 0.5, f"{result.config.method} learns weights, not a selection", ha="center", va="center"
            )
            show_png(self.selection_image, figure_png(self._selection_figure))

    def _on_snapshot(self, change: dict[str, Any]) -> None:
        if not self._quiet and self.layer.value is not None:
            self.show_selection(self.layer.value)

    def _snapshot_selections(self, index: int) -> dict[str, torch.Tensor]:
        if index not in self._snapshot_cache:
            self._snapshot_cache[index] = self._snapshots[index].read()
        return self._snapshot_cache[index]

    def show_selection(self, layer_name: str) -> np.ndarray:
        """Draw layer ``layer_name``'s selection into the viewer and return it as the drawn 2-D array.

        With recorded snapshots, the selection is the one of the snapshot under the slider, next to the
        connections that changed since the snapshot before it; without, the best network's.
        """
        layers = selecting_layers(self._viewed) if self._viewed is not None else {}
        if layer_name not in layers:
            raise SlotlabError(
                f"no selecting layer {layer_name!r} in the viewed run; layers: {', '.join(layers)}"
            )
        layer = layers[layer_name]
        self._selection_figure.clear()
        if self._snapshots is None:
            selection = layer.selection()
            ax = self._selection_figure.subplots()
            self._selection_figure.colorbar(
                draw_selection(ax, selection, layer_name, getattr(layer, "k", None)), ax=ax
            )
            self.snapshot_label.value = "best epoch (no snapshots recorded)"
        else:
            i = self.snapshot.value
            snapshot = self._snapshots[i]
            selection = self._snapshot_selections(i)[layer_name]
            previous = self._snapshot_selections(i - 1)[layer_name] if i > 0 else selection
            changed = selection != previous
            share = f"{changed.float().mean():.2%}"
            left, right = self._selection_figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
            image = draw_selection(
                left, selection, f"{layer_name}, epoch {snapshot.epoch}", getattr(layer, "k", None)
            )
            self._selection_figure.colorbar(image, ax=left)
            right.imshow(
                selection_matrix(changed),
                cmap="Greys",
                vmin=0,
                vmax=1,
                aspect="auto",
                interpolation="nearest",
            )
            right.set_title(
                f"changed since the snapshot before ({share})",
                loc="left",
                fontsize="medium",
            )
            right.set_xticks([])
            right.set_yticks([])
            self.snapshot_label.value = (
                f"epoch {snapshot.epoch}, step {snapshot.step}: {share} of {layer_name} changed"
            )
        show_png(self.selection_image, figure_png(self._selection_figure))
        return selection_matrix(selection)
