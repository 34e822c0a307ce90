import math

import pytest
import torch
import torch.nn.functional as F

from slotlab.cli import _given_values, _parser
from slotlab.config import RECIPES, RunConfig, recipe_config
from slotlab.errors import SlotlabError
from slotlab.init import random_weight_layers
from slotlab.layers import DenseFactory
from slotlab.methods import METHODS, get_method
from slotlab.models import build_model
from slotlab.optim import lr_factor, make_optimizer, make_scheduler


def test_warmup_then_cosine_equals_the_hand_computation_per_epoch() -> None:
    epochs, warmup, base = 12, 5, 0.256
    config = RunConfig(method="dense", model="lenet300", epochs=epochs, warmup_epochs=warmup, lr=base)
    model = build_model("lenet300", DenseFactory(), (1, 28, 28), 10)
    optimizer = make_optimizer(config, list(model.parameters()), model)
    scheduler = make_scheduler(config, optimizer)
    for epoch in range(epochs):
        if epoch < warmup:
            hand = base * (epoch + 1) / warmup  # hidden-networks' _warmup_lr
        else:
            hand = 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))) * base
        assert optimizer.param_groups[0]["lr"] == pytest.approx(hand, rel=1e-12), epoch
        optimizer.step()
        scheduler.step()
    assert [lr_factor("cosine", 10)(e) for e in range(10)] == [
        lr_factor("cosine", 10, (), 0.1, 0)(e) for e in range(10)
    ]


def test_batchnorm_parameters_and_biases_are_in_a_group_without_decay() -> None:
    config = RunConfig(
        method="dense", model="conv2-lp", dataset="cifar10", weight_decay=1e-4, norm_decay=False
    )
    model = get_method("dense").initial_network(config, (3, 32, 32), 10)
    optimizer = make_optimizer(config, list(model.parameters()), model)
    decayed, free = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-4 and free["weight_decay"] == 0.0
    norm_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))
        for p in m.parameters()
    }
    bias_ids = {id(p) for n, p in model.named_parameters() if n.endswith(".bias") and p.dim() == 1}
    assert norm_ids and {id(p) for p in free["params"]} == norm_ids | bias_ids
    assert all(p.dim() > 1 for p in decayed["params"])
    # with decay on everything, one group as before
    assert (
        len(make_optimizer(config.replace(norm_decay=True), list(model.parameters()), model).param_groups)
        == 1
    )


def test_label_smoothing_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(3)
    logits, labels, eps = torch.randn(6, 10, generator=gen), torch.randint(0, 10, (6,), generator=gen), 0.1
    # Szegedy et al. 2016: target (1 - eps) one-hot + eps / classes uniform
    target = torch.full((6, 10), eps / 10)
    for row, label in enumerate(labels.tolist()):
        target[row, label] += 1 - eps
    slow = -(target * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(F.cross_entropy(logits, labels, label_smoothing=eps), slow)
    assert RunConfig(label_smoothing=0.1).train_settings().label_smoothing == 0.1


def test_the_imagenet_recipe_from_python_and_the_command_line() -> None:
    config = recipe_config("imagenet", method="edge-popup", model="resnet50", dataset="imagenet", density=0.3)
    assert (config.lr, config.momentum, config.weight_decay) == (0.256, 0.875, 3.0517578125e-5)
    assert (config.warmup_epochs, config.label_smoothing, config.schedule, config.norm_decay) == (
        5,
        0.1,
        "cosine",
        False,
    )
    args = _parser().parse_args(["train", "--recipe", "imagenet", "--epochs", "90", "--model", "resnet50"])
    given = _given_values(args)
    assert given["epochs"] == "90" and given["lr"] == RECIPES["imagenet"]["lr"]
    nesterov = RunConfig(method="dense", nesterov=True)
    model = build_model("lenet300", DenseFactory(), (1, 28, 28), 10)
    assert make_optimizer(nesterov, list(model.parameters()), model).param_groups[0]["nesterov"]
    # the new fields at their defaults keep every hash
    assert (
        RunConfig().hash
        == RunConfig(warmup_epochs=0, nesterov=False, norm_decay=True, label_smoothing=0).hash
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"warmup_epochs": 20}, "warmup_epochs must be >= 0 and fewer than the 20 epochs"),
        ({"nesterov": True, "optimizer": "adam"}, "nesterov applies to SGD with momentum"),
        ({"norm_decay": False}, "give --weight-decay too"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"width": 0}, "width must be a positive finite multiplier"),
    ],
)
def test_recipe_fields_refuse_what_they_would_not_change(change: dict, message: str) -> None:
    with pytest.raises(SlotlabError, match=message):
        RunConfig(**change)


def test_width_is_a_config_field_that_reaches_the_network() -> None:
    config = RunConfig(method="dense", width=0.5)
    assert config.hash != RunConfig(method="dense").hash and RunConfig(width=1.0).hash == RunConfig().hash
    model = config.method_rule.initial_network(config, (1, 28, 28), 10)
    assert [m.weight.shape[0] for m in model.modules() if hasattr(m, "weight")] == [150, 50, 10]
    with pytest.raises(SlotlabError, match="nothing to widen"):
        RunConfig(model="f1", width=2)


def test_every_method_builds_its_network_at_the_width() -> None:
    # no run may be hashed at a width its network was not built at
    for name, method in METHODS.items():
        if method.source_methods:
            with pytest.raises(SlotlabError, match="from its source run; leave width at 1"):
                RunConfig(method=name, width=2.0)
            continue
        config = RunConfig(method=name, width=0.5)
        model = method.initial_network(config, (1, 28, 28), 10).eval()
        widths = []
        hooks = [
            layer.register_forward_hook(lambda _m, _i, out, seen=widths: seen.append(out.shape[1]))
            for _, layer in random_weight_layers(model)
        ]
        model(torch.randn(2, 1, 28, 28))
        for hook in hooks:
            hook.remove()
        assert widths == [150, 50, 10], name  # lenet300 at half width: 784 -> 150 -> 50 -> 10
