"""Scales: SLOTLAB_SCALE, the methods' recipes at each scale and the notebooks' configs."""

import pytest

from slotlab.config import RunConfig, scaled_config
from slotlab.errors import SlotlabError
from slotlab.experiments import get_experiment
from slotlab.notebooks import NOTEBOOKS, notebook_configs
from slotlab.scales import SCALES, get_scale


def all_configs(value) -> list[RunConfig]:
    if isinstance(value, RunConfig):
        return [value]
    items = value.values() if isinstance(value, dict) else value
    return [c for item in items for c in all_configs(item)]


def test_profile_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SLOTLAB_SCALE", "smoke")
    assert get_scale().name == "smoke"
    monkeypatch.delenv("SLOTLAB_SCALE")
    assert get_scale().name == "laptop"
    assert get_scale("paper").name == "paper"
    monkeypatch.setenv("SLOTLAB_SCALE", "huge")
    with pytest.raises(SlotlabError, match="valid scales: smoke, laptop, paper"):
        get_scale()


def test_smoke_configs_of_every_notebook_are_tiny_and_synthetic() -> None:
    for notebook in NOTEBOOKS:
        configs = all_configs(notebook_configs(notebook, "smoke"))
        assert configs
        for config in configs:
            assert config.dataset.startswith("synthetic") and config.epochs == 1, (notebook, config.name)


def test_laptop_and_paper_use_the_real_data() -> None:
    for name in ("laptop", "paper"):
        for config in all_configs(notebook_configs("00_quickstart", name)):
            assert config.dataset == "mnist"


def test_paper_recipe_for_slot_machines() -> None:
    paper = SCALES["paper"]
    greedy8, greedy16 = scaled_config(paper, "slots", k=8), scaled_config(paper, "slots", k=16)
    assert (greedy8.lr, greedy16.lr) == (0.2, 0.1)
    assert greedy8.schedule == "restarts" and greedy8.milestones == (25, 75) and greedy8.epochs == 200
    assert greedy8.weight_decay == 1e-4 and greedy8.momentum == 0.9
    assert scaled_config(paper, "slots", k=8, selection="sampled").lr == 25.0
    assert scaled_config(paper, "slots", model="vgg19", dataset="cifar10").epochs == 220
    assert scaled_config(paper, "learned").lr == 0.01


def test_the_callers_fields_win_over_the_recipe() -> None:
    laptop = SCALES["laptop"]
    config = scaled_config(laptop, "slots", k=4, lr=0.3, epochs=3, score_seed=7)
    assert (config.options.k, config.lr, config.epochs, config.score_seed) == (4, 0.3, 3, 7)
    assert scaled_config(laptop, "slots").epochs == laptop.epochs
    with pytest.raises(SlotlabError, match="unknown config fields"):
        scaled_config(laptop, "slots", kk=4)


def test_finetune_config_names_its_source_by_hash() -> None:
    runs = get_experiment("slot-machines/finetune-budget").configs(SCALES["smoke"], [0, 1])
    slots = {seed: c for p, seed, c in runs if c.method == "slots"}
    finetunes = [(p, seed, c) for p, seed, c in runs if c.method == "finetune"]
    assert finetunes
    for point, seed, config in finetunes:
        # one slot run per seed keeps its selections; each finetune starts from the one of its epoch
        assert config.options.source == slots[seed].hash and config.options.source_epoch == point.x
        assert str(point.x) in slots[seed].options.keep_epochs.split(",")
    with pytest.raises(SlotlabError, match="known notebooks"):
        notebook_configs("99_nothing", "smoke")


def test_k1_is_trained_one_epoch_since_it_cannot_learn() -> None:
    configs = notebook_configs("00_quickstart", "laptop")
    assert configs["random"].epochs == 1 and configs["random"].options.k == 1
    assert configs["slots"].epochs == SCALES["laptop"].epochs


def test_run_all_keeps_the_shape_and_the_table_has_a_row_per_run() -> None:
    from slotlab.notebooks import results_table, run_all

    smoke = SCALES["smoke"]
    configs = {
        "sweep": {2: scaled_config(smoke, "slots", k=2, epochs=1)},
        "list": [scaled_config(smoke, "dense", epochs=1)],
    }
    runs = run_all(configs)
    assert runs["sweep"][2].config == configs["sweep"][2] and runs["list"][0].config == configs["list"][0]
    table = results_table(runs["sweep"], label="K")
    assert table["K"].tolist() == [2]
    assert table["test %"].iloc[0] == round(100 * runs["sweep"][2].test_accuracy, 2)
    with pytest.raises(SlotlabError, match="expected configs"):
        run_all({"bad": 3})


def test_run_all_trains_only_the_missing_runs_in_one_sweep_then_reads_all_back(monkeypatch) -> None:
    import slotlab.sweep as sweeping
    from slotlab.notebooks import run_all
    from slotlab.runs import load_or_run

    smoke = SCALES["smoke"]
    done, missing = (scaled_config(smoke, "slots", k=k, epochs=1) for k in (2, 4))
    load_or_run(done, progress=False)
    swept, real = [], sweeping.sweep
    monkeypatch.setattr(
        sweeping, "sweep", lambda **kw: swept.append(kw["points"]) or real(**{**kw, "workers": 1})
    )
    runs = run_all({"done": done, "more": [missing, done]})
    assert swept == [[missing.changed_fields()]]  # one sweep, without the finished run
    assert runs["done"].config == done and [r.config for r in runs["more"]] == [missing, done]


def test_laperm_trains_with_adam_inside_as_in_its_paper() -> None:
    for name in ("laptop", "paper"):
        config = scaled_config(name, "laperm", sync_period=20)
        assert (config.optimizer, config.lr, config.options.sync_period) == ("adam", 1e-3, 20)
    [(_, _, weight_agnostic)] = get_experiment("laperm/weight-agnostic-f2").configs(SCALES["paper"], [0])
    assert (weight_agnostic.model, weight_agnostic.epochs, weight_agnostic.batch_size) == ("f2", 25, 128)
    assert (
        weight_agnostic.options.shared_value == 0.03
        and weight_agnostic.options.init_density == "1/15,1/7,1/3"
    )


def test_mask_recipes_follow_the_papers() -> None:
    paper = SCALES["paper"]
    edge_popup = scaled_config(paper, "edge-popup", density=0.3)
    assert (edge_popup.lr, edge_popup.schedule, edge_popup.epochs, edge_popup.weight_decay) == (
        0.1,
        "cosine",
        100,
        1e-4,
    )
    assert (
        scaled_config(paper, "edge-popup", recycle_rate=0.1).epochs == 250
    )  # Iterative Weight Recycling trains 250
    binary = scaled_config(paper, "biprop", binary_activations=True)
    assert (binary.optimizer, binary.lr, binary.weight_decay) == ("adam", 0.1, 0.0)
    landscape = notebook_configs("06_mask_landscapes", "laptop")["slots"]
    assert (
        len({c.weight_seed for c in landscape.values()}) == 1
        and len({c.score_seed for c in landscape.values()}) > 1
    )
