"""Notebook widgets: a live loss/accuracy plot while training, and the Explorer.

``LivePlot`` is a trainer callback that redraws the loss and accuracy curves after every epoch into an
``ipywidgets.Image``; ``run_live(config)`` is ``load_or_run`` with that plot and selection snapshots (a cached run
shows its stored history instead). The ``Explorer`` picks a method, model, dataset, K or density and seeds, trains
on demand (the Train button, never a slider move) with a progress bar and the live plot, keeps a table of its
results and shows any layer's learned selection as an image, with a slider over the selection snapshots recorded
while it trained (``slotlab.analysis.Recorder``) to watch choices flip. Methods come from
``slotlab.methods.METHODS`` and their controls from the options each method declares (``option(control=...)``), so
every registered method appears in the menu with its own controls; the controls of the other methods are hidden.
``run_recorded(config)`` trains with snapshots for the notebooks' flip-rate analyses.

In a kernel the Train button trains in a background thread, so that the kernel keeps answering the widgets:
Stop ends the run after the current epoch (its checkpoint written, the run unfinished, a second Train continues
it), Kernel -> Interrupt ends it at the next optimiser step (resumed from the last finished epoch), and a failure
(a SlotlabError, say a dataset whose folder is missing) is one line in the status; the status never stays
"training". ``explorer.train()`` from code trains in the calling thread. Before a run that would take more than
``WARN_SECONDS`` on the CPU, the first press shows an estimate (``estimated_seconds``) and the second trains.

Everything draws into widgets with matplotlib's Agg canvas, so the callbacks run, and are tested, without a
browser.
"""

from __future__ import annotations

import contextvars
import html
import io
import math
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from slotlab.analysis import Recorder, load_snapshots
from slotlab.analysis.sources import layer_names
from slotlab.callback import Callback
from slotlab.config import RunConfig, scaled_config
from slotlab.data import dataset_info, dataset_names
from slotlab.dataset_files import one_line
from slotlab.device import pick_device
from slotlab.errors import SlotlabError
from slotlab.layers.factory import SelectingLayer
from slotlab.methods import METHODS, OptionSpec, option_specs
from slotlab.methods.base import Range, SourceRun, Steps, Toggle
from slotlab.models import model_names
from slotlab.plot import draw_unit_images, unit_images
from slotlab.runs import RunResult, load_or_run, runs_root
from slotlab.scales import Scale, get_scale
from slotlab.train import Trainer, TrainingStopped

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


# --- readable run names -----------------------------------------------------------------------------------


def run_title(config: RunConfig) -> str:
    """A run as a person reads it: "slots K=8 greedy · lenet300 · mnist · 3f2a9c" (method and its main options,
    model, dataset, seeds where not 0, the first 6 digits of the config hash that names its folder)."""
    options = config.options
    parts = [config.method]
    if hasattr(options, "k"):
        parts.append(f"K={options.k}")
    if hasattr(options, "selection"):
        parts.append(str(options.selection))
    if hasattr(options, "density"):
        parts.append(f"density {options.density:g}")
    if hasattr(options, "sync_period"):
        parts.append(f"sync {options.sync_period}")
    for name in ("source", "mask_source"):  # the run a finetune starts from
        if getattr(options, name, ""):
            parts.append(f"from {str(getattr(options, name))[:6]}")
    seeds = [(name, value) for name, value in (("weight", config.weight_seed), ("score", config.score_seed))]
    shown = [f"{name} seed {value}" for name, value in seeds if value]
    return " · ".join([" ".join(parts), config.model, config.dataset, *shown, config.hash[:6]])


def draw_history(axes: Sequence[Any], history: pd.DataFrame, title: str = "") -> None:
    """Loss (left) and accuracy in % (right) per epoch and split of a run's history, drawn into two axes.

    Lines carry markers while there are few epochs, so that a one-epoch run shows its points, not empty axes."""
    epochs = int(history["epoch"].max()) if len(history) else 0
    for ax, column in zip(axes, ("loss", "accuracy"), strict=True):
        ax.clear()
        for split, style in SPLIT_STYLE.items():
            rows = history[history["split"] == split]
            if len(rows):
                values = rows[column] * (100 if column == "accuracy" else 1)
                marked = style if style == "o" or epochs > 12 else style + "o"
                ax.plot(rows["epoch"], values, marked, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers
        if epochs <= 1:
            ax.set_xlim(0.5, 1.5)
        ax.set_ylabel("accuracy %" if column == "accuracy" else column)
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
        self._lock = threading.Lock()  # the Explorer redraws from its training thread and from the kernel's

    def display(self) -> None:
        if not self._shown:
            from IPython.display import display

            display(self.image)
            self._shown = True

    def update(self, history: pd.DataFrame, title: str | None = None) -> None:
        with self._lock:
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


def run_live(config: RunConfig, callbacks: Sequence[Callback] = (), **kwargs: Any) -> RunResult:
    """``load_or_run`` with a live plot and a selection snapshot every epoch (so that the Explorer can replay a
    run the notebook trained); a run read back from its folder shows its stored history."""
    plot = LivePlot(title=run_title(config))
    recorder = SelectionRecorder(every=1, unit="epoch")
    result = load_or_run(config, callbacks=[recorder, plot, *callbacks], **kwargs)
    if plot.draws == 0:
        plot.update(result.history)
    plot.display()
    return result


def run_recorded(
    config: RunConfig, every: int = 1, unit: str = "epoch", live: bool = False, root: str | Path | None = None
) -> RunResult:
    """``load_or_run`` with selection snapshots every ``every`` epochs (or steps), for flip rates and sliders.

    Recorded runs live in ``<runs root>/recorded/``: a run of the same config finished elsewhere without a
    recorder holds no snapshots, and a finished run is read back, never retrained.
    """
    folder = Path(root) if root is not None else runs_root() / RECORDED_DIR
    plot = LivePlot(title=run_title(config)) if live else None
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
    """The layers of ``model`` whose learned object is a discrete selection (slot index or keep-mask), by readable
    name ("fc1 784->300", ``slotlab.analysis.sources.layer_names``)."""
    names = layer_names(model)
    return {names.get(path, path): m for path, m in model.named_modules() if isinstance(m, SelectingLayer)}


def selection_matrix(selection: torch.Tensor) -> np.ndarray:
    """A selection shaped like its weight as a 2-D array: Linear (out, in) as is, Conv (out, in, kh, kw) as
    (out, in * kh * kw) with each filter's kernels side by side."""
    if selection.ndim < 2:
        raise SlotlabError(
            f"a selection has the shape of a weight (2-D or more), got {tuple(selection.shape)}"
        )
    return selection.reshape(selection.shape[0], -1).cpu().numpy()


def slot_colours(k: int) -> tuple[ListedColormap, BoundaryNorm]:
    """K distinct colours, one per slot index 0..K-1 (a slot index is a label, not a quantity)."""
    base = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    colours = ListedColormap([base(i % base.N) for i in range(k)])
    return colours, BoundaryNorm(np.arange(-0.5, k), k)


def input_label(selection: torch.Tensor) -> str:
    return "input (channel x kernel position)" if selection.ndim == 4 else "input"


def draw_selection(ax: Any, selection: torch.Tensor, title: str = "", k: int | None = None) -> Any:
    """The selection as an image: one colour per slot index (K colours), or kept (dark) / removed for a mask.

    Returns the image; ``label_colorbar(fig.colorbar(image, ax=ax), image)`` gives it its labelled colorbar."""
    matrix = selection_matrix(selection)
    if matrix.dtype == np.bool_:
        image = ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        image.slotlab_label = "kept (1) / removed (0)"
        label = f"kept {matrix.mean():.1%}"
    else:
        k = k or int(matrix.max()) + 1
        colours, norm = slot_colours(k)
        image = ax.imshow(matrix, cmap=colours, norm=norm, aspect="auto", interpolation="nearest")
        image.slotlab_label = "slot index"
        label = f"slot index 0..{k - 1}"
    ax.set_title(f"{title}  ({label})" if title else label, loc="left", fontsize="medium")
    ax.set_xlabel(input_label(selection))
    ax.set_ylabel("output unit")
    return image


def label_colorbar(colorbar: Any, image: Any) -> Any:
    """Label a colorbar drawn for ``draw_selection``'s image; slot indices get one integer tick per slot."""
    colorbar.set_label(getattr(image, "slotlab_label", ""))
    norm = image.norm
    if isinstance(norm, BoundaryNorm):
        k = norm.Ncmap
        colorbar.set_ticks(range(k) if k <= 16 else range(0, k, max(1, k // 8)))
    return colorbar


# --- cost estimate ----------------------------------------------------------------------------------------------

# training examples per epoch of the full datasets (before the validation split is taken out)
TRAIN_EXAMPLES = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000, "imagenet": 1_281_167}
WARN_SECONDS = 180.0  # warn before a run that would take longer than this
PROBE_SHAPE = (
    8,
    64,
    32,
    32,
)  # the probe's batch: Conv-4's second layer (64 -> 64, 3x3) on 8 CIFAR-sized maps


def measure_macs_per_second(repeats: int = 3) -> float:
    """This CPU's training rate in multiply-accumulates per second, from a probe of a fraction of a second: the
    forward and backward (3x the forward's MACs) of a 64 -> 64 3x3 convolution, best of ``repeats``.
    benchmarks/explorer_estimate.py compares it with whole models' training steps."""
    batch, channels, height, width = PROBE_SHAPE
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    images = torch.randn(*PROBE_SHAPE)
    macs = 3 * batch * channels * height * width * channels * 9
    conv(images).sum().backward()  # the first call allocates: not timed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        conv(images).sum().backward()
        best = min(best, time.perf_counter() - start)
    return macs / best


def forward_macs(config: RunConfig) -> int:
    """Multiply-accumulates of one forward pass of ``config``'s architecture on one example, counted on the
    meta device (no memory, no compute) over its linear and conv layers: output elements x inputs per output."""
    info = dataset_info(config.dataset)
    plain = RunConfig(method="dense", model=config.model, dataset=config.dataset)  # same shapes, plain layers
    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            total += output[0].numel() * module.weight[0].numel()

    with torch.device("meta"):
        model = plain.method_rule.architecture(plain, info.input_shape, info.num_classes)
        hooks = [m.register_forward_hook(count) for m in model.modules()]
        model.eval()(torch.zeros(1, *info.input_shape))
    for hook in hooks:
        hook.remove()
    return total


def estimated_seconds(config: RunConfig, macs_per_second: float) -> float | None:
    """Seconds ``config`` would train on a CPU: epochs x (training examples x 3 forward MACs + validation and test
    examples x 1 forward MAC) / ``macs_per_second``. None for a dataset of unknown size (synthetic ones)."""
    full = TRAIN_EXAMPLES.get(config.dataset)
    if full is None:
        return None
    val = config.val_size if config.val_size >= 0 else dataset_info(config.dataset).val_size
    train = config.train_size or full - val
    test = 10_000  # evaluated once at the end
    return (config.epochs * (3 * train + val) + test) * forward_macs(config) / macs_per_second


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
        # sized to its buttons: the default fixed width wraps the second button under the first
        return w.ToggleButtons(
            options=list(spec.choices or ()),
            value=spec.default,
            description=label,
            style={"button_width": "auto", **style},
            layout=w.Layout(width="auto", flex="0 0 auto"),
        )
    if isinstance(control, SourceRun):
        return w.Dropdown(options=[""], value="", description=label, style=style)
    raise SlotlabError(f"option {spec.name} declares no Explorer control")


RESULT_COLUMNS = ["run", "method", "model", "dataset", "k", "density", "seeds", "val %", "test %", "epochs"]


class ExplorerControl(Callback):
    """The Explorer's hooks into the loop: the progress bar, Stop (after the epoch) and interrupt (next step)."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.steps = 1

    def on_train_start(self, trainer: Trainer) -> None:
        self.steps = max(1, len(trainer.train_batches))
        self.every = max(1, self.steps // 20)  # about 20 bar updates an epoch
        self.explorer._progress_at(trainer.epoch, trainer.settings.epochs, trainer.step, self.steps)

    def on_step_end(self, trainer: Trainer) -> None:
        if self.explorer._interrupted.is_set():
            raise KeyboardInterrupt  # Kernel -> Interrupt while training in the background
        if trainer.step % self.every == 0:
            self.explorer._progress_at(trainer.epoch, trainer.settings.epochs, trainer.step, self.steps)

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.explorer._progress_at(trainer.epoch, trainer.settings.epochs, trainer.step, self.steps)
        if self.explorer._stop.is_set():
            trainer.stop_requested = (
                True  # the loop ends after this epoch; its checkpoint is written after us
            )


def _kernel_loop() -> Any:
    """The IPython kernel's event loop, or None outside a kernel (plain Python, tests)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    return getattr(kernel, "io_loop", None)


class Explorer:
    """Pick a method, model, K or density and seeds; train on demand; compare results; look at selections.

    ``Explorer()`` in a notebook cell shows it. Every control only changes the config; training happens when the
    Train button is pressed (or ``explorer.train()`` is called), and a config that already ran is read back.
    Runs live in the runs root (``$SLOTLAB_RUNS``, else ``runs/``), where finetuning finds its source run.
    ``callbacks`` are added to every run it trains; ``background`` (default: inside a kernel) makes the Train
    button train in a thread; ``macs_per_second`` is the CPU rate of the estimate (default: measured by
    ``measure_macs_per_second`` when first needed).
    """

    def __init__(
        self,
        scale: str | Scale | None = None,
        callbacks: Sequence[Callback] = (),
        background: bool | None = None,
        macs_per_second: float | None = None,
    ) -> None:
        self.scale = get_scale(scale)
        self.results: list[RunResult] = []
        self.callbacks = list(callbacks)
        self.background = _kernel_loop() is not None if background is None else background
        self.macs_per_second = macs_per_second  # None: measured by a short probe when first needed
        self.last_error: BaseException | None = (
            None  # an unexpected failure, with its traceback, for a bug report
        )
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
        self.stop_button = w.Button(
            description="Stop",
            icon="stop",
            disabled=True,
            tooltip="end after this epoch; Train continues the run",
        )
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="40%", display="none"))
        self.progress_label = w.Label()
        self.plot = LivePlot(show=False)
        self.table = w.HTML()
        self.table.add_class("jp-RenderedHTMLCommon")  # JupyterLab's table style: aligned, ruled columns
        self.run_choice = w.Dropdown(
            options=[], description="run", style=style, layout=w.Layout(width="auto")
        )
        self.layer = w.Dropdown(options=[], description="layer", style=style)
        self.selection_image = hidden_image()
        self.snapshot = w.IntSlider(value=0, min=0, max=0, description="snapshot", disabled=True, style=style)
        self.snapshot_label = w.Label()
        self._snapshots: Any = None
        self._snapshot_cache: dict[int, dict[str, torch.Tensor]] = {}
        self._selection_figure = Figure(figsize=(8, 3))
        self._viewed: nn.Module | None = None
        self._viewed_result: RunResult | None = None
        self._quiet = False
        self._fitting = False  # inside load_or_run
        self._confirmed = ""  # the hash of a long run whose estimate was shown: the next press trains it
        self._stop = threading.Event()
        self._interrupted = threading.Event()
        self._worker: threading.Thread | None = None
        self._previous_sigint: Any = None
        self.train_button.on_click(self._on_train_click)
        self.stop_button.on_click(lambda _button: self.stop())
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
                w.HBox([self.train_button, self.stop_button, self.status]),
                w.HBox([self.progress, self.progress_label]),
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

    @property
    def training(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop(self) -> None:
        """End the current run after its epoch: the checkpoint is written and Train continues the run."""
        if self.stop_button.disabled:
            return
        self._stop.set()
        self.stop_button.disabled = True
        self._say("stopping after this epoch ...")

    def train(self, _button: w.Button | None = None) -> RunResult | None:
        """Run (or read back) the configured run, then add it to the table and show its selections.

        Returns None, with one line in the status, when the config is refused, the run fails, is stopped or
        interrupted (both resumable), or would take long and its estimate is shown first."""
        self._stop.clear()
        self._interrupted.clear()
        try:
            config = self.config()
        except SlotlabError as error:
            self._say(str(error), error=True)
            return None
        title = run_title(config)
        if not self._estimate_accepted(config, title):
            return None
        self._say(f"training {title} ...")
        self.plot.title = title
        self._busy(True)
        self._progress_start(title)
        try:
            result = load_or_run(
                config,
                callbacks=[
                    SelectionRecorder(every=1, unit="epoch"),
                    self.plot,
                    ExplorerControl(self),
                    *self.callbacks,
                ],
                progress=False,
            )
            self._fitting = False  # trained: the plot and the bar may show the finished run
            self._show_result(config, result)
            self._say(f"{title}: test accuracy {result.test_accuracy:.2%}")  # last: the run is fully shown
        except TrainingStopped as stopped:
            self._say(f"{title}: {stopped}; press Train to continue it")
            self._progress_label(f"{title}: {stopped}")
            return None
        except KeyboardInterrupt:
            self._say(f"{title}: interrupted; press Train to continue from its last finished epoch")
            self._progress_label(f"{title}: interrupted")
            return None
        except SlotlabError as error:
            self._say(f"{title}: {error}", error=True)
            self._progress_label(f"{title}: failed")
            return None
        except Exception as error:
            self.last_error = error
            self._say(
                f"{title}: unexpected {type(error).__name__}: {one_line(error)} "
                "(explorer.last_error has the traceback)",
                error=True,
            )
            self._progress_label(f"{title}: failed")
            raise
        finally:
            self._busy(False)
        return result

    def _show_result(self, config: RunConfig, result: RunResult) -> None:
        """Add a finished run to the table, the run list and the source menus, and view it."""
        self.results = [r for r in self.results if r.config != config] + [result]
        self._refresh_table()
        self._refresh_sources()
        self._quiet = True  # setting options fires the observers; the run is viewed once, below
        try:
            self.run_choice.options = [(run_title(r.config), r.config.name) for r in self.results]
            self.run_choice.value = config.name
        finally:
            self._quiet = False
        self.view_run(config.name)

    def _estimate_accepted(self, config: RunConfig, title: str) -> bool:
        """False, with the estimate in the status, the first time a long run on the CPU is asked for."""
        if pick_device(None).type != "cpu" or self._confirmed == config.hash:
            return True
        if (runs_root() / config.name / "result.json").is_file() or config.dataset not in TRAIN_EXAMPLES:
            return True  # read back, not trained; or synthetic data of no fixed size (seconds)
        if self.macs_per_second is None:
            self.macs_per_second = measure_macs_per_second()
        try:
            seconds = estimated_seconds(config, self.macs_per_second)
        except (SlotlabError, RuntimeError, NotImplementedError):
            return True  # an architecture the meta device cannot run: no estimate, no warning
        if seconds is None or seconds <= WARN_SECONDS:
            return True
        self._confirmed = config.hash
        self._say(
            f"{title}: about {duration(seconds)} on this CPU at scale {self.scale.name} ({config.epochs} epochs, "
            f"{forward_macs(config) / 1e6:,.0f} M multiply-adds per image forward, this CPU trains "
            f"{self.macs_per_second / 1e9:.1f} G a second); press Train again to start it, or "
            f"choose a smaller model, dataset or fewer epochs",
            warning=True,
        )
        return False

    def _on_train_click(self, _button: w.Button) -> None:
        if self.training:
            return
        if not self.background:
            try:
                self.train()
            except Exception:  # reported in the status line; the traceback is in explorer.last_error
                pass
            return
        self.train_button.disabled = True  # at once: a second click before the thread starts is ignored
        context = (
            contextvars.copy_context()
        )  # the click's output context, for widget messages from the thread
        self._worker = threading.Thread(
            target=context.run, args=(self._train_in_background,), name="slotlab-explorer", daemon=True
        )
        self._worker.start()
        loop = _kernel_loop()
        if (
            loop is not None
        ):  # after the click handler returns, when ipykernel has restored its SIGINT handling
            loop.add_callback(self._catch_interrupts)

    def _train_in_background(self) -> None:
        try:
            self.train()
        except Exception:  # reported in the status line; the traceback is in explorer.last_error
            pass
        finally:
            self._busy(False)  # also after an early return (a refused config, an estimate shown first)
            loop = _kernel_loop()
            if loop is not None:
                loop.add_callback(self._release_interrupts)

    def _catch_interrupts(self) -> None:
        """On the kernel's main thread: Kernel -> Interrupt (SIGINT, ignored by an idle kernel) stops the
        background run at its next step instead."""
        if not self.training or self._previous_sigint is not None:
            return
        self._previous_sigint = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda _signum, _frame: self._interrupted.set())

    def _release_interrupts(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _busy(self, busy: bool) -> None:
        self._fitting = busy
        self.train_button.disabled = busy
        self.stop_button.disabled = not busy

    def _on_method(self, change: dict[str, Any]) -> None:
        """Show only the controls the chosen method uses."""
        used = set(METHODS[change["new"]].options_type.names())
        for name, control in self.controls.items():
            control.disabled = name not in used
            control.layout.display = "" if name in used else "none"
        self._refresh_sources()

    def _say(self, message: str, error: bool = False, warning: bool = False) -> None:
        colour = "#b00020" if error else "#8a5a00" if warning else "inherit"
        self.status.value = f"<span style='color:{colour}'>{html.escape(message)}</span>"

    # --- progress bar ---------------------------------------------------------------------------------------
    def _progress_start(self, title: str) -> None:
        self.progress.layout.display = ""
        self.progress.value, self.progress.bar_style = 0, ""
        self._progress_title = title
        self.progress_label.value = f"{title}: starting"

    def _progress_at(self, epoch: int, epochs: int, step: int, steps: int) -> None:
        self.progress.max = max(1, epochs * steps)
        self.progress.value = min(step, self.progress.max)
        self.progress_label.value = f"{self._progress_title}: epoch {epoch} of {epochs} done"

    def _progress_label(self, text: str) -> None:
        self.progress_label.value = text

    def _progress_finished(self, result: RunResult) -> None:
        self.progress.layout.display = ""
        self.progress.max, self.progress.value, self.progress.bar_style = 1, 1, "success"
        self._progress_title = run_title(result.config)
        self.progress_label.value = (
            f"{self._progress_title}: {result.metrics['epochs']} epochs, test {result.test_accuracy:.2%}"
        )

    # --- results --------------------------------------------------------------------------------------------
    def results_frame(self) -> pd.DataFrame:
        """One row per run of this explorer: what was chosen and the accuracies reached (in %)."""
        rows = []
        for r in self.results:
            c = r.config
            rows.append(
                {
                    "run": run_title(c),
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
        """Each source menu lists the finished runs of the method the chosen method starts from (a finetune
        starts from slots, a mask finetune from Edge-Popup: one shared control, its runs per method)."""
        own = {spec.name: spec for spec in METHODS[self.method.value].options_type.specs()}
        for name, spec in option_specs().items():
            spec = own.get(name, spec)
            if isinstance(spec.control, SourceRun):
                runs = [r.config.hash for r in self.results if r.config.method == spec.control.method]
                if list(self.controls[name].options) != ["", *runs]:
                    self.controls[name].options = ["", *runs]

    # --- selection viewer -----------------------------------------------------------------------------------
    def _on_run_choice(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"]:
            self.view_run(change["new"])

    def _on_layer(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"] is not None:
            self.show_selection(change["new"])

    def view_run(self, name: str) -> None:
        """Show run ``name`` (its folder name): its history in the plot and the progress bar, its best network,
        its snapshots (if recorded) and its first layer in the viewer."""
        result = next((r for r in self.results if r.config.name == name), None)
        if result is None:
            known = ", ".join(r.config.name for r in self.results) or "none yet"
            raise SlotlabError(f"no run {name!r} in this explorer; runs: {known}")
        self._viewed_result = result
        if not self._fitting:  # while a run trains, the plot, the bar and the status follow it
            self.plot.update(result.history, run_title(result.config))
            self._progress_finished(result)
            self._say(f"{run_title(result.config)}: test accuracy {result.test_accuracy:.2%}")
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

    def _image_shape(self) -> tuple[int, ...] | None:
        result = self._viewed_result
        return dataset_info(result.config.dataset).input_shape if result is not None else None

    def show_selection(self, layer_name: str) -> np.ndarray:
        """Draw layer ``layer_name``'s selection into the viewer and return it as the drawn 2-D array.

        With recorded snapshots, the selection is the one of the snapshot under the slider, next to the
        connections that changed since the snapshot before it; without, the best network's. A layer that reads
        the image itself (Lenet-300-100's fc1) is drawn as its first units' chosen weights, each as the image.
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
            epoch_text, share = "best epoch", None
            self.snapshot_label.value = "best epoch (no snapshots recorded)"
        else:
            i = self.snapshot.value
            snapshot = self._snapshots[i]
            selection = self._snapshot_selections(i)[layer_name]
            previous = self._snapshot_selections(i - 1)[layer_name] if i > 0 else selection
            share = f"{(selection != previous).float().mean():.2%}"
            epoch_text = f"epoch {snapshot.epoch}"
            self.snapshot_label.value = (
                f"epoch {snapshot.epoch}, step {snapshot.step}: {share} of {layer_name} changed"
            )
        chosen = chosen_weights(layer, selection)
        shape = self._image_shape()
        if (
            chosen is not None
            and shape is not None
            and chosen.ndim == 2
            and chosen.shape[1] == math.prod(shape)
        ):
            self._selection_figure.set_size_inches(8, 2.6)
            draw_unit_images(
                self._selection_figure,
                unit_images(chosen.numpy(), shape),
                f"{layer_name}, {epoch_text}: each unit's chosen weights over the image"
                + (f" ({share} of the layer changed since the snapshot before)" if share is not None else ""),
            )
        else:
            self._selection_figure.set_size_inches(8, 3)
            self._draw_selection_panels(layer, layer_name, selection, epoch_text, share)
        show_png(self.selection_image, figure_png(self._selection_figure))
        return selection_matrix(selection)

    def _draw_selection_panels(
        self, layer: nn.Module, layer_name: str, selection: torch.Tensor, epoch_text: str, share: str | None
    ) -> None:
        figure = self._selection_figure
        if share is None:
            ax = figure.subplots()
            image = draw_selection(ax, selection, f"{layer_name}, {epoch_text}", getattr(layer, "k", None))
            label_colorbar(figure.colorbar(image, ax=ax), image)
            return
        i = self.snapshot.value
        previous = self._snapshot_selections(i - 1)[layer_name] if i > 0 else selection
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        image = draw_selection(left, selection, f"{layer_name}, {epoch_text}", getattr(layer, "k", None))
        label_colorbar(figure.colorbar(image, ax=left), image)
        right.imshow(
            selection_matrix(selection != previous),
            cmap="Greys",
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        right.set_title(f"changed since the snapshot before ({share})", loc="left", fontsize="medium")
        right.set_xticks([])
        right.set_yticks([])


@torch.no_grad()
def chosen_weights(layer: nn.Module, selection: torch.Tensor) -> torch.Tensor | None:
    """The weight a selection makes of a layer's fixed random values: the chosen value per connection (slots,
    values (K, *shape)) or the kept random weight, 0 where removed (masks, weight (*shape)); None otherwise."""
    values = getattr(layer, "values", None)
    if (
        isinstance(values, torch.Tensor)
        and values.shape[1:] == selection.shape
        and selection.dtype != torch.bool
    ):
        return values.gather(0, selection.long().unsqueeze(0)).squeeze(0).float().cpu()
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.shape == selection.shape and selection.dtype == torch.bool:
        return (weight * selection).float().cpu()
    return None
