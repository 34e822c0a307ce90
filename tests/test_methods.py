"""The methods' rooms: options belong to one method, finetuning finds its source by hash, a method is one file."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from slotlab import cli
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.layers.plain import to_plain
from slotlab.methods import METHODS, option_specs
from slotlab.methods.random_slots import RandomSlots
from slotlab.runs import initial_network, load_or_run, open_run

TINY = dict(dataset="synthetic", epochs=1, batch_size=64, train_size=256, val_size=100)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--method", "slots", "--density", "0.3"],
            "density is not an option of method slots; its options are: k,",
        ),
        (["--method", "edge-popup", "--k", "4"], "k is not an option of method edge-popup"),
        (["--method", "laperm", "--density", "0.3"], "density is not an option of method laperm"),
        (["--source", "x"], "source is not an option of method slots"),
        (["--milestones", "5"], "milestones apply to the step and restarts schedules, not cosine"),
        (["--gamma", "0.5"], "gamma applies to the step schedule"),
        (["--learned-bn"], "learned_bn is not an option of method slots"),
        (
            ["--method", "random-mask", "--recycle-rate", "0.1"],
            "recycle_rate is not an option of method random-mask",
        ),
        (
            ["--method", "edge-popup", "--recycle-every", "2"],
            "recycle_every set while recycling and IteRand are off",
        ),
        (
            ["--method", "dense", "--k", "4"],
            "k is not an option of method dense; it has no options of its own",
        ),
    ],
)
def test_an_option_of_another_method_is_one_line_and_exit_2(argv, message, capsys, tmp_path: Path) -> None:
    assert cli.main(["train", *argv, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not any(tmp_path.iterdir())  # refused before a run folder exists


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--optimizer", "adamw"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'adamw'" in err and "\n" not in err


def test_every_option_has_help_and_a_flag() -> None:
    parser = cli._parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    flags = {option for action in train._actions for option in action.option_strings}
    for name, spec in option_specs().items():
        assert spec.help, name
        assert f"--{name.replace('_', '-')}" in flags


def test_options_are_typed_per_method() -> None:
    config = RunConfig(method="edge-popup", density="0.3", recycle_rate=0.1)
    assert type(config.options).__name__ == "MaskOptions" and config.options.density == 0.3
    assert not hasattr(config.options, "k") and not hasattr(config, "density")
    assert RunConfig(method="laperm").optimizer == "adam"  # the method's default for a common field
    assert RunConfig(method="laperm", optimizer="sgd", lr=0.1).optimizer == "sgd"


def test_a_run_folder_of_the_flat_format_reads_back_with_its_hash() -> None:
    # config.json before configs had parts: every field of every method, the others at their defaults
    flat = {
        **RunConfig(method="edge-popup", density=0.3).to_dict(),
        "k": 8,
        "selection": "greedy",
        "sync_period": 20,
    }
    assert RunConfig.from_dict(flat).hash == RunConfig(method="edge-popup", density=0.3).hash
    with pytest.raises(SlotlabError, match="k is not an option of method edge-popup"):
        RunConfig.from_dict({**flat, "k": 4})  # a non-default foreign option is not silently dropped


def test_changing_the_method_keeps_only_the_new_methods_options() -> None:
    slots = RunConfig(k=4, lr=0.2)
    assert slots.replace(method="learned").options.k == 4
    with pytest.raises(SlotlabError, match="k is not an option of method dense"):
        slots.replace(method="dense", k=4)
    assert slots.replace(method="dense").changed_fields() == {"method": "dense", "lr": 0.2}


@pytest.fixture(scope="module")
def slots_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs-a")
    return load_or_run(RunConfig(k=2, **TINY), root=root, progress=False), root


def test_a_source_by_folder_and_by_hash_is_one_experiment(slots_run) -> None:
    source, _ = slots_run
    by_hash = RunConfig(method="finetune", source=source.config.hash, **TINY)
    by_folder = RunConfig(method="finetune", source=str(source.path), **TINY)
    by_name = RunConfig(method="finetune", source=source.path.name, **TINY)
    assert by_hash.hash == by_folder.hash == by_name.hash
    assert by_folder.options.source == source.config.hash
    with pytest.raises(SlotlabError, match="neither a run folder nor a run's 12-digit hash"):
        RunConfig(method="finetune", source="abc", **TINY)


def test_finetune_finds_its_source_under_its_own_runs_root_and_keeps_it(slots_run, tmp_path: Path) -> None:
    source, root = slots_run
    config = RunConfig(method="finetune", source=source.config.hash, lr=0.01, **TINY)
    # the source lives under ``root`` only: the default runs root (here an empty folder) does not hold it
    finetuned = load_or_run(config, root=root, progress=False)
    start = torch.load(finetuned.path / "init.pt", weights_only=True)["model"]
    found = source.model("best")
    first = next(n for n in start if n.endswith("weight"))
    assert torch.equal(start[first], found.get_submodule(first.rpartition(".")[0]).effective_weight())
    # the source folder moves away: the finished finetune still loads its networks from its own folder
    moved = tmp_path / "elsewhere"
    shutil.move(str(source.path), moved)
    try:
        again = open_run(finetuned.path)
        best = again.model("best")
        assert sum(p.numel() for p in best.parameters()) == sum(
            p.numel() for p in to_plain(found).parameters()
        )
    finally:
        shutil.move(str(moved), source.path)


def test_finetune_refuses_a_source_that_is_not_a_slots_run(tmp_path: Path) -> None:
    dense = load_or_run(RunConfig(method="dense", **TINY), root=tmp_path, progress=False)
    config = RunConfig(method="finetune", source=dense.config.hash, **TINY)
    with pytest.raises(
        SlotlabError, match=r"finetune starts from a slots run; dense-\S+ is a dense run"
    ) as info:
        load_or_run(config, root=tmp_path, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / config.name / "init.pt").exists()


def test_the_worked_example_method_is_registered_and_learns_nothing(tmp_path: Path) -> None:
    assert isinstance(METHODS["random-slots"], RandomSlots)
    config = RunConfig(method="random-slots", k=4, **TINY)
    start = initial_network(config, (1, 28, 28), 10)
    result = load_or_run(config, root=tmp_path, progress=False)
    end = result.model("last")
    for (_, a), (_, b) in zip(start.named_parameters(), end.named_parameters(), strict=True):
        assert torch.equal(a, b)  # nothing trained
    layer = next(m for m in end.modules() if hasattr(m, "values"))
    chosen = layer.effective_weight().detach()
    # every connection uses one of its own K values: the slot the random scores point at
    assert torch.equal(chosen, layer.values.gather(0, layer.scores.argmax(0, keepdim=True)).squeeze(0))
    assert len(torch.unique(layer.selection())) == 4  # the K slots are all in use, at random


def test_the_readme_shows_how_to_add_a_method() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    source = (Path(__file__).resolve().parents[1] / "slotlab/methods/random_slots.py").read_text()
    assert "class RandomSlots(Slots):" in section and "class RandomSlots(Slots):" in source
    assert "RandomSlots()" in section


def test_config_json_holds_the_methods_options_only(slots_run) -> None:
    source, _ = slots_run
    saved = json.loads((source.path / "config.json").read_text())["config"]
    assert saved["k"] == 2 and "density" not in saved and "sync_period" not in saved
