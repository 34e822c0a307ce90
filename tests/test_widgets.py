"""The Explorer and the live plot, driven through their callbacks without a browser."""

from pathlib import Path

import numpy as np
import pytest
import torch

from slotlab.analysis import load_snapshots
from slotlab.config import RunConfig, scaled_config
from slotlab.methods import METHODS
from slotlab.runs import load_or_run, runs_root
from slotlab.train import Trainer
from slotlab.widgets import (
    Explorer,
    LivePlot,
    run_recorded,
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
    assert np.allclose(line_data(plot, 1, "val"), history.query("split == 'val'")["accuracy"])
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
    assert explorer.plot.draws == 2 and explorer.plot.image.value != plot_before
    assert explorer.plot.image.layout.display == explorer.selection_image.layout.display == ""
    frame = explorer.results_frame()
    assert frame["run"].tolist() == [result.config.name]
    assert frame["test %"].iloc[0] == round(100 * result.test_accuracy, 2)
    assert explorer.table.value != table_before and result.config.name in explorer.table.value
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


def test_controls_a_method_ignores_are_disabled_and_left_out_of_its_config() -> None:
    explorer = Explorer("smoke")
    explorer.controls["k"].value = 4
    explorer.controls["selection"].value = "sampled"
    assert explorer.config().options.k == 4 and explorer.config().options.selection == "sampled"
    explorer.method.value = "dense"
    assert (
        explorer.controls["k"].disabled
        and explorer.controls["selection"].disabled
        and explorer.controls["source"].disabled
    )
    dense = explorer.config()
    assert dense == scaled_config(
        explorer.scale, "dense", epochs=explorer.epochs.value
    )  # K and selection not passed
    explorer.method.value = "learned"
    assert not explorer.controls["k"].disabled and explorer.config().options.k == 4


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
        if method == "finetune":
            explorer.controls["source"].value = explorer.controls["source"].options[
                -1
            ]  # the slots run trained first
        result = explorer.train()
        assert result is not None, (method, explorer.status.value)
        assert result.config.method == method and result.config.dataset == "synthetic"
    assert explorer.results_frame()["method"].tolist() == list(METHODS)
