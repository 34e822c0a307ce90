import math

import pytest

from slotlab.config import RunConfig
from slotlab.errors import SlotlabError


def test_hash_regression() -> None:
    # Pinned: a change here renames every stored run. Add new fields with a no-op default instead.
    assert RunConfig().hash == "44136fa355b3"
    assert RunConfig(k=2, lr=0.2, weight_decay=1e-4).hash == "89ecde8d66ed"
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
