import math

import pytest

from slotlab.config import RunConfig
from slotlab.errors import SlotlabError


def test_hash_regression() -> None:
    # Pinned: a change here renames every stored run. Add new fields with a no-op default instead.
    # slots' default init became the released code's: the paper-init runs keep their hashes
    assert RunConfig(init="paper").hash == "44136fa355b3"
    assert RunConfig(init="paper", k=2, lr=0.2, weight_decay=1e-4).hash == "89ecde8d66ed"
    assert RunConfig(method="dense", milestones=(25, 75), schedule="restarts").hash == "67019e7c5faa"


def test_hash_ignores_spelling_and_depends_on_every_field() -> None:
    assert RunConfig(k=8.0, lr="0.1").hash == RunConfig().hash
    assert RunConfig(milestones="25,75", schedule="step").milestones == (25, 75)
    seen = {RunConfig().hash}
    for change in (
        {"k": 4},
        {"score_seed": 1},
        {"weight_seed": 1},
        {"data_seed": 1},
        {"sample_seed": 1},
        {"split_seed": 1},
        {"epochs": 3},
        {"augment": True},
        {"protocol": "best-test"},
    ):
        seen.add(RunConfig(**change).hash)
    assert len(seen) == 10


def test_round_trip_through_dict() -> None:
    config = RunConfig(k=4, milestones=(3, 5), schedule="step", augment=True)
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "popup"}, "unknown method 'popup'; valid methods: slots, dense"),
        ({"model": "lenet5"}, "valid models: lenet300"),
        ({"dataset": "svhn"}, "valid datasets: mnist, fashion-mnist, cifar10"),
        ({"k": 0}, "k .* must be a whole number >= 1, got 0"),
        ({"k": 2.5}, "k must be a whole number, got 2.5"),
        ({"k": "eight"}, "k must be a whole number"),
        ({"lr": math.nan}, "lr must be a number"),
        ({"lr": -1}, "lr must be a positive"),
        ({"selection": "softmax"}, "selection must be one of greedy, sampled"),
        ({"init": "kaiming"}, "init 'kaiming' is not one of method slots's"),
        ({"milestones": (75, 25)}, "milestones must be increasing"),
        ({"method": "finetune"}, "needs --source"),
        ({"train_size": -1900}, "train_size must be >= 0"),
        ({"val_size": -5}, "val_size must be >= 1, or -1"),
        ({"val_size": 0}, "0 only with protocol best-test"),
        ({"momentum": -1}, "momentum must be a finite number >= 0"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_input_is_one_clear_line(change: dict, message: str) -> None:
    with pytest.raises(SlotlabError, match=message) as info:
        RunConfig(**change)
    assert "\n" not in str(info.value)


def test_unknown_fields_are_named() -> None:
    with pytest.raises(SlotlabError, match=r"unknown config fields \['K'\]"):
        RunConfig.from_dict({"K": 8})


def test_best_test_protocol_may_hold_no_validation_set() -> None:
    assert RunConfig(protocol="best-test", val_size=0).val_size == 0


def test_an_unknown_device_is_one_clear_line() -> None:
    from slotlab.device import pick_device

    with pytest.raises(SlotlabError, match="unknown device 'foo'; use auto, cpu, cuda or cuda:N"):
        pick_device("foo")
    assert pick_device("cpu").type == "cpu"


def test_pipeline_switches_refuse_what_they_would_not_change(tmp_path) -> None:
    with pytest.raises(SlotlabError, match="crop false"):
        RunConfig(dataset="cifar10", model="conv4", crop=False)
    with pytest.raises(SlotlabError, match="val_indices fixes the validation split"):
        RunConfig(val_indices=str(tmp_path / "val.pt"), val_size=500)
    # the defaults keep every existing hash: a new field is hashed only when it is changed
    assert RunConfig().hash == RunConfig(normalize=True, crop=True, val_indices="").hash
    assert RunConfig(normalize=False).hash != RunConfig().hash


def test_a_changed_default_init_keeps_every_cached_run_meaning_what_it_meant(tmp_path) -> None:
    # the new default is hashed as the explicit choice it is, the old default under its old hash
    assert RunConfig().init == "code" and RunConfig().hash == RunConfig(init="code").hash
    assert RunConfig().hash != RunConfig(init="paper").hash == "44136fa355b3"
    # a config.json written when "default" meant the paper's init reads back as that init, under its hash
    old = {**RunConfig(init="paper").to_dict(), "init": "default"}
    assert RunConfig.from_dict(old).init == "paper" and RunConfig.from_dict(old).hash == "44136fa355b3"
    # configs always name their init, so a stored config is never ambiguous again
    assert RunConfig().to_dict()["init"] == "code"
    # what differs from today's defaults: the default init is not a choice, the old one is
    assert "init" not in RunConfig().changed_fields()
    assert RunConfig(init="paper").changed_fields() == {"init": "paper"}
    # replace keeps the init, whether or not it is the default
    assert RunConfig(init="paper").replace(k=4).init == "paper"
    assert RunConfig().replace(k=4).init == "code"
    # another method gets its own default, not the old method's
    assert RunConfig().replace(method="edge-popup").init == RunConfig(method="edge-popup").init
    assert RunConfig(init="paper").replace(method="learned").init == "paper"
    # methods whose default did not change hash as before
    assert RunConfig(method="dense", milestones=(25, 75), schedule="restarts").hash == "67019e7c5faa"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"optimizer": "adam", "momentum": 0.5}, "momentum applies to SGD"),
        ({"dataset": "imagenet", "model": "resnet18", "augment": True}, "always augmented"),
    ],
)
def test_options_that_would_do_nothing_are_refused(change: dict, message: str) -> None:
    with pytest.raises(SlotlabError, match=message):
        RunConfig(method="dense", **change)
