"""The Explorer and the live plot, driven through their callbacks without a browser."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from slotlab.analysis import load_snapshots
from slotlab.callback import Callback
from slotlab.checkpoint import safe_load
from slotlab.config import RunConfig, scaled_config
from slotlab.methods import METHODS
from slotlab.runs import load_or_run, runs_root
from slotlab.train import Trainer
from slotlab.widgets import (
    Explorer,
    LivePlot,
    forward_macs,
    run_live,
    run_recorded,
    run_title,
    selecting_layers,
    selection_matrix,
)


def line_data(plot: LivePlot, axis: int, label: str) -> np.ndarray:
    (line,) = [ln for ln in plot.axes[axis].get_lines() if ln.get_label() == label]
    return np.asarray(line.get_ydata(), dtype=float)


def test_live_plot_redraws_every_epoch_with_the_history(tmp_path: Path) -> None:
    plot = LivePlot(show=False)
    config = RunConfig(dataset="synthetic", epochs=3, val_size=300, train_size=256)
    result = load_or_run(config, root=tmp_path, callbacks=[plot])
    assert plot.draws == 3 and bytes(plot.image.value).startswith(b"\x89PNG")
    history = result.history
    assert np.allclose(line_data(plot, 1, "val"), 100 * history.query("split == 'val'")["accuracy"])
    assert plot.axes[1].get_ylabel() == "accuracy %"
    assert np.allclose(line_data(plot, 0, "train"), history.query("split == 'train'")["loss"])


def test_method_menu_lists_every_registered_method() -> None:
    assert list(Explorer("smoke").method.options) == list(METHODS)


def test_controls_do_not_train_and_the_button_does() -> None:
    explorer = Explorer("smoke")
    explorer.controls["k"].value = 2
    explorer.score_seed.value = 3
    explorer.epochs.value = 2
    assert explorer.results == [] and not runs_root().exists() and explorer.plot.draws == 0
    table_before, plot_before = explorer.table.value, explorer.plot.image.value
    hidden = [explorer.plot.image.layout.display, explorer.selection_image.layout.display]
    assert hidden == ["none", "none"]  # an empty image would show as a broken one

    explorer.train_button.click()

    (result,) = explorer.results
    assert (result.config.options.k, result.config.score_seed, result.config.dataset) == (2, 3, "synthetic")
    # two epochs drawn live, then the finished run (test accuracy in the history) as the viewed run
    assert explorer.plot.draws == 3 and explorer.plot.image.value != plot_before
    assert explorer.plot.image.layout.display == explorer.selection_image.layout.display == ""
    frame = explorer.results_frame()
    assert frame["run"].tolist() == [run_title(result.config)]
    assert frame["test %"].iloc[0] == round(100 * result.test_accuracy, 2)
    assert explorer.table.value != table_before and run_title(result.config) in explorer.table.value
    assert "error" not in explorer.status.value and "#b00020" not in explorer.status.value


def test_a_finished_config_is_read_back_and_a_new_one_adds_a_row(monkeypatch) -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value = 1
    first = explorer.train()
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("trained again"))
    draws = explorer.plot.draws
    again = explorer.train()
    assert again.metrics == first.metrics and len(explorer.results) == 1
    assert explorer.plot.draws == draws + 1  # the stored history is shown
    monkeypatch.undo()
    explorer.controls["k"].value = 4
    explorer.train()
    assert explorer.results_frame()["k"].tolist() == [8, 4]


def test_bad_choices_are_reported_in_the_status_line() -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value = 1
    explorer.method.value = "finetune"
    assert explorer.train() is None
    assert "needs --source" in explorer.status.value and explorer.results == []
    explorer.method.value = "slots"
    slots = explorer.train()
    assert explorer.controls["source"].options == ("", slots.config.hash)
    explorer.method.value, explorer.controls["source"].value = "finetune", slots.config.hash
    finetuned = explorer.train()
    assert finetuned.config.options.source == slots.config.hash
    assert explorer.layer.options == ()  # a finetuned network has weights, no selection


def test_selection_viewer_shows_each_layers_selection() -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value = 1
    explorer.controls["k"].value = 4
    result = explorer.train()
    model = result.model("best")
    layers = selecting_layers(model)
    assert list(explorer.layer.options) == list(layers) and len(layers) == 3
    images = set()
    for name, layer in layers.items():
        explorer.layer.value = name  # the observer redraws
        images.add(explorer.selection_image.value)
        shown = explorer.show_selection(name)
        expected = layer.scores.detach().argmax(0).numpy()  # the greedy rule, independently
        assert np.array_equal(shown, expected)
    assert len(images) == 3


def test_selection_matrix_puts_a_filters_kernels_side_by_side() -> None:
    selection = torch.randint(0, 8, (4, 3, 2, 2), dtype=torch.uint8)
    matrix = selection_matrix(selection)
    assert matrix.shape == (4, 12)
    for o in range(4):
        for i in range(3):
            for y in range(2):
                for x in range(2):
                    assert matrix[o, i * 4 + y * 2 + x] == selection[o, i, y, x]


def test_layer_selection_is_the_greedy_index(tmp_path: Path) -> None:
    result = load_or_run(
        RunConfig(dataset="synthetic", epochs=1, k=3, train_size=128, val_size=100), root=tmp_path
    )
    for layer in selecting_layers(result.model("best")).values():
        assert torch.equal(layer.selection().long(), layer.scores.detach().argmax(0))


def test_controls_a_method_ignores_are_hidden_and_left_out_of_its_config() -> None:
    explorer = Explorer("smoke")
    explorer.controls["k"].value = 4
    explorer.controls["selection"].value = "sampled"
    assert explorer.config().options.k == 4 and explorer.config().options.selection == "sampled"
    explorer.method.value = "dense"
    for name in ("k", "selection", "source"):
        assert explorer.controls[name].disabled and explorer.controls[name].layout.display == "none"
    dense = explorer.config()
    assert dense == scaled_config(
        explorer.scale, "dense", epochs=explorer.epochs.value
    )  # K and selection not passed
    explorer.method.value = "learned"
    assert not explorer.controls["k"].disabled and explorer.config().options.k == 4
    assert (
        explorer.controls["k"].layout.display == ""
        and explorer.controls["selection"].layout.display == "none"
    )


def greedy(result, which: str, name: str) -> np.ndarray:
    return selecting_layers(result.model(which))[name].scores.detach().argmax(0).numpy()


def test_snapshot_slider_walks_through_the_recorded_selections() -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value, explorer.controls["k"].value = 3, 4
    result = explorer.train()
    epochs = [s.epoch for s in load_snapshots(result)]
    assert epochs == [0, 1, 2, 3]
    assert not explorer.snapshot.disabled and explorer.snapshot.max == 3
    assert explorer.snapshot.value == epochs.index(result.metrics["best_epoch"])
    name = explorer.layer.value
    assert np.array_equal(explorer.show_selection(name), greedy(result, "best", name))

    explorer.snapshot.value = 0  # the observer redraws: the selection before training
    first_image = explorer.selection_image.value
    initial = explorer.show_selection(name)
    assert np.array_equal(initial, greedy(result, "init", name))
    assert "0.00%" in explorer.snapshot_label.value
    explorer.snapshot.value = 1
    after_one = explorer.show_selection(name)
    assert f"{(after_one != initial).mean():.2%}" in explorer.snapshot_label.value
    assert explorer.selection_image.value != first_image


def test_runs_without_a_selection_record_nothing() -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value = 1
    explorer.method.value = "dense"
    result = explorer.train()
    assert not (result.path / "selections").exists() and explorer.snapshot.disabled


def test_run_recorded_keeps_its_snapshots_apart_and_reads_them_back(monkeypatch) -> None:
    config = RunConfig(dataset="synthetic", epochs=2, k=2, train_size=256, val_size=100)
    load_or_run(config)  # the same config, trained without a recorder, in the main runs folder
    recorded = run_recorded(config)
    assert recorded.path.parent == runs_root() / "recorded" and len(load_snapshots(recorded)) == 3
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("trained again"))
    assert run_recorded(config).metrics == recorded.metrics


def test_every_registered_method_trains_from_the_explorer() -> None:
    explorer = Explorer("smoke")
    explorer.epochs.value = 1
    for method in METHODS:
        explorer.method.value = method
        if method in ("finetune", "mask-finetune"):
            control = explorer.controls["source" if method == "finetune" else "mask_source"]
            control.value = control.options[-1]  # the slots (edge-popup) run trained first
        result = explorer.train()
        assert result is not None, (method, explorer.status.value)
        assert result.config.method == method and result.config.dataset == "synthetic"
    assert explorer.results_frame()["method"].tolist() == list(METHODS)


# --- errors, interrupts, Stop, the selected run, labels, estimates ------------------------------------------


class Hook(Callback):
    """Runs ``action(trainer)`` after the first optimiser step once ``epoch`` epochs are done (in epoch + 1)."""

    def __init__(self, epoch: int, action) -> None:
        self.epoch, self.action, self.starts, self.done = epoch, action, [], False

    def on_train_start(self, trainer: Trainer) -> None:
        self.starts.append(trainer.epoch)

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch and not self.done:
            self.done = True
            self.action(trainer)


def settled(explorer: Explorer) -> bool:
    """The Explorer is ready for the next run: Train on, Stop off, nothing says it is still training."""
    return (
        not explorer.train_button.disabled
        and explorer.stop_button.disabled
        and "training" not in explorer.status.value
        and "\n" not in explorer.status.value
    )


def small_explorer(callbacks=(), **kwargs) -> Explorer:
    explorer = Explorer("smoke", callbacks=callbacks, **kwargs)
    explorer.epochs.value = 3
    explorer.controls["k"].value = 2
    return explorer


def interrupt(_trainer: Trainer) -> None:
    raise KeyboardInterrupt


def test_a_failing_run_is_one_red_line_and_the_explorer_is_ready_again(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLOTLAB_DATA", str(tmp_path / "no-data"))
    explorer = Explorer("laptop", macs_per_second=1e30)  # no estimate warning: this is about the failure
    explorer.dataset.value = "imagenet"
    assert explorer.train() is None
    assert "imagenet" in explorer.status.value and "#b00020" in explorer.status.value
    assert settled(explorer) and explorer.results == []
    assert "failed" in explorer.progress_label.value


def test_an_interrupt_is_one_line_and_a_second_train_continues_the_run() -> None:
    hook = Hook(epoch=2, action=interrupt)  # in epoch 3
    explorer = small_explorer([hook])
    assert explorer.train() is None
    assert "interrupted" in explorer.status.value and settled(explorer)
    folder = runs_root() / explorer.config().name
    assert (folder / "last.pt").is_file() and not (folder / "result.json").exists()
    result = explorer.train()
    assert hook.starts == [0, 2]  # resumed after the two finished epochs
    assert result.metrics["epochs"] == 3 and result.history.query("split == 'val'")["epoch"].tolist() == [
        1,
        2,
        3,
    ]
    assert "test accuracy" in explorer.status.value and settled(explorer)


def test_stop_ends_the_epoch_and_train_continues_the_run() -> None:
    explorer = small_explorer()
    hook = Hook(epoch=0, action=lambda _trainer: explorer.stop())  # pressed during the first epoch
    explorer.callbacks.append(hook)
    explorer.stop_button.disabled = False  # as while a run trains
    assert explorer.train() is None
    assert "stopped after epoch 1 of 3" in explorer.status.value and settled(explorer)
    folder = runs_root() / explorer.config().name
    assert not (folder / "result.json").exists()
    assert safe_load(folder / "last.pt")["epoch"] == 1  # the stopped epoch's checkpoint
    result = explorer.train()
    assert hook.starts == [0, 1] and result.metrics["epochs"] == 3
    assert [s.epoch for s in load_snapshots(result)] == [0, 1, 2, 3]  # one snapshot an epoch across the stop


def test_the_stop_button_works_while_a_background_run_trains() -> None:
    started, release = threading.Event(), threading.Event()

    def wait(_trainer: Trainer) -> None:
        started.set()
        assert release.wait(60)

    explorer = small_explorer([Hook(epoch=0, action=wait)], background=True)
    explorer.train_button.click()
    assert started.wait(60)
    assert explorer.training and explorer.train_button.disabled and not explorer.stop_button.disabled
    explorer.stop_button.click()
    release.set()
    explorer._worker.join(60)
    assert "stopped after epoch 1 of 3" in explorer.status.value and settled(explorer)
    explorer.method.value = "finetune"  # refused (no source) in the thread: Train is enabled again
    explorer.train_button.click()
    explorer._worker.join(60)
    assert "needs --source" in explorer.status.value and settled(explorer)


def test_the_bar_and_the_plot_follow_the_selected_run() -> None:
    explorer = small_explorer()
    explorer.epochs.value = 1
    first = explorer.train()
    explorer.controls["k"].value = 4
    second = explorer.train()
    titles = [run_title(r.config) for r in (first, second)]
    assert [label for label, _ in explorer.run_choice.options] == titles
    assert (
        explorer.plot.axes[0].get_title(loc="left") == titles[1]
        and titles[1] in explorer.progress_label.value
    )
    explorer.run_choice.value = first.config.name  # picked in the run list
    assert explorer.plot.axes[0].get_title(loc="left") == titles[0]
    assert titles[0] in explorer.progress_label.value and explorer.progress.value == explorer.progress.max
    assert (
        titles[0] in explorer.status.value and titles[1] not in explorer.status.value
    )  # not the last trained
    explorer.controls["k"].value = 4
    explorer.train()  # read back from its folder: the bar shows this run, not the one before
    assert titles[1] in explorer.progress_label.value and titles[1] in explorer.status.value


def test_run_titles_read_as_method_options_model_dataset_and_hash() -> None:
    config = scaled_config("laptop", "slots", k=8)
    assert run_title(config) == f"slots K=8 greedy · lenet300 · mnist · {config.hash[:6]}"
    masks = scaled_config("laptop", "edge-popup", density=0.3, score_seed=2)
    assert run_title(masks) == f"edge-popup density 0.3 · lenet300 · mnist · score seed 2 · {masks.hash[:6]}"


def test_run_live_records_snapshots_that_the_explorer_replays() -> None:
    explorer = small_explorer()
    explorer.epochs.value = 2
    trained = run_live(explorer.config())  # as the quickstart trains its default config
    assert [s.epoch for s in load_snapshots(trained)] == [0, 1, 2]
    explorer.train()  # read back
    assert not explorer.snapshot.disabled and explorer.snapshot.max == 2


def test_forward_macs_count_each_layer_once() -> None:
    lenet = scaled_config("laptop", "slots", model="lenet300")
    assert forward_macs(lenet) == 784 * 300 + 300 * 100 + 100 * 10
    conv2 = scaled_config("laptop", "dense", model="conv2", dataset="cifar10")
    model = conv2.method_rule.architecture(conv2, (3, 32, 32), 10)
    expected = 0  # by hand: output elements x inputs per output element, per layer
    x = torch.zeros(1, 3, 32, 32)
    for module in model.body:
        y = module(x)
        if isinstance(module, torch.nn.Conv2d):
            expected += y.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            expected += module.in_features * module.out_features
        x = y
    assert forward_macs(conv2) == expected
    resnet50 = scaled_config("laptop", "slots", model="resnet50", dataset="imagenet")
    assert abs(forward_macs(resnet50) / 1e9 - 4.09) < 0.01  # the published 4.1 G multiply-adds at 224 x 224


def test_a_long_run_shows_its_estimate_first_and_trains_on_the_second_press(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SLOTLAB_DATA", str(tmp_path / "no-data"))
    explorer = Explorer("laptop", macs_per_second=1e6)  # a slow machine: every real dataset run is long
    explorer.dataset.value = "imagenet"
    assert explorer.train() is None
    assert "about" in explorer.status.value and "press Train again" in explorer.status.value
    assert "#b00020" not in explorer.status.value and not runs_root().exists()  # a warning, nothing started
    assert explorer.train() is None and "#b00020" in explorer.status.value  # trained: the data are missing


def test_the_viewer_shows_first_layer_units_as_images_and_labels_its_colorbars() -> None:
    explorer = small_explorer()
    explorer.epochs.value = 1
    explorer.controls["k"].value = 4
    result = explorer.train()
    first, second = list(explorer.layer.options)[:2]
    assert (first, second) == ("fc1 784->300", "fc2 300->100")
    explorer.show_selection(first)  # reads the 28 x 28 image: each unit's chosen weights as that image
    figure = explorer._selection_figure
    images = [ax.get_images()[0] for ax in figure.axes if ax.get_images()]
    layer = selecting_layers(result.model("best"))[first]
    chosen = layer.values.gather(
        0, explorer._snapshot_selections(explorer.snapshot.value)[first].long()[None]
    )[0]
    assert len(images) == 16 and np.allclose(images[3].get_array(), chosen[3].reshape(28, 28).numpy())
    assert figure.axes[-1].get_ylabel() == "chosen weight"
    explorer.show_selection(second)  # a hidden layer: the slot index per connection, one colour per slot
    selection_ax, colorbar_ax = figure.axes[0], figure.axes[-1]
    assert selection_ax.get_xlabel() == "input" and colorbar_ax.get_ylabel() == "slot index"
    assert [int(t) for t in colorbar_ax.get_yticks()] == [0, 1, 2, 3]
