import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slotlab.callback import Callback
from slotlab.cli import main
from slotlab.config import RunConfig
from slotlab.data import make_splits
from slotlab.errors import SlotlabError
from slotlab.global_mask import DensityAnnealing, annealed_density, global_scope_of
from slotlab.layers.edge_popup import EdgePopupLayer, MaskedLayer, kept_count, top_mask
from slotlab.layers.factory import RandomWeightLayer, SelectingLayer
from slotlab.runs import initial_network, load_or_run, make_trainer
from slotlab.train import trainable_parameters


def reference_mask(magnitude: torch.Tensor, kept: int) -> torch.Tensor:
    """Full stable sort, descending: ties keep their flat order, so the lowest index wins.

    An explicit Python sort on (-value, index) for small tensors; torch's stable sort (same rule) for big ones.
    Computed on the CPU whatever the device of ``magnitude``; the mask comes back on that device.
    """
    flat = magnitude.detach().cpu().reshape(-1)
    if flat.numel() <= 5000:
        values = flat.tolist()
        order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    else:
        order = torch.sort(flat, descending=True, stable=True).indices
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:kept]] = True
    return mask.view(magnitude.shape).to(magnitude.device)


def masked_layers(model) -> list[MaskedLayer]:
    return [m for m in model.modules() if isinstance(m, MaskedLayer)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape", [(7,), (13, 11), (4, 3, 3, 3)])
def test_top_mask_equals_a_full_sort_including_ties(shape, ties: bool, device: torch.device) -> None:
    generator = torch.Generator().manual_seed(len(shape) + 10 * ties)  # drawn on the CPU, then moved
    numel = math.prod(shape)
    for trial in range(20):
        if ties:  # few distinct values: many ties at the threshold
            magnitude = torch.randint(0, 4, shape, generator=generator).float()
        else:
            magnitude = torch.rand(shape, generator=generator)
        kept = int(torch.randint(1, numel + 1, (1,), generator=generator))
        magnitude = magnitude.to(device)
        mask = top_mask(magnitude, kept)
        assert mask.dtype == torch.bool and int(mask.sum()) == kept and mask.device == magnitude.device
        assert torch.equal(mask, reference_mask(magnitude, kept)), (trial, kept)


def test_kept_count_rounds_half_up_and_is_exact_per_layer(device: torch.device) -> None:
    assert [kept_count(d, 10) for d in (0.05, 0.1, 0.15, 0.9, 1.0)] == [1, 1, 2, 9, 10]
    for density in (0.1, 0.3, 0.5, 0.7, 1.0):
        model = initial_network(
            RunConfig(method="edge-popup", density=density, dataset="synthetic"), (1, 28, 28), 10
        ).to(device)
        with torch.no_grad():
            for layer in masked_layers(model):
                layer.scores.copy_(torch.randint(-3, 4, layer.weight_shape).float())  # many ties
                expected = math.floor(density * layer.weight.numel() + 0.5)
                assert int(layer.selection().sum()) == expected == layer.kept


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.8])
def test_global_scope_keeps_the_exact_total_with_one_threshold(density: float, device: torch.device) -> None:
    config = RunConfig(method="edge-popup", scope="global", density=density, dataset="synthetic")
    model = initial_network(config, (1, 28, 28), 10).to(device)
    layers = masked_layers(model)
    with torch.no_grad():
        for layer in layers:
            layer.scores.mul_(torch.rand(layer.weight_shape).to(device))  # layers of different scales
            layer.scores[0].fill_(0.01)  # and ties across layers
    model.eval()
    magnitude = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in layers])
    expected = reference_mask(magnitude, kept_count(density, magnitude.numel()))
    got = torch.cat([layer.selection().reshape(-1) for layer in layers])
    assert torch.equal(got, expected)
    assert len({round(float(m.selection().float().mean()), 3) for m in layers}) > 1  # layers differ


def fused_sgd_steps(model: torch.nn.Module, steps: int) -> torch.Tensor:
    """A few large steps of fused SGD (which, unlike the plain kernels, does not bump version counters) on one
    random batch, on the model's device; returns that batch's inputs (32, 1, 28, 28)."""
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=5.0, momentum=0.9, fused=True)
    device = next(model.parameters()).device
    x, y = torch.randn(32, 1, 28, 28).to(device), torch.randint(0, 10, (32,)).to(device)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return x


def test_global_masks_follow_the_optimiser(device: torch.device) -> None:
    config = RunConfig(method="edge-popup", scope="global", density=0.3, dataset="synthetic")
    model = initial_network(config, (1, 28, 28), 10).to(device)
    before = [m.selection() for m in masked_layers(model)]
    fused_sgd_steps(model, 3)
    layers = masked_layers(model)
    magnitude = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in layers])
    expected = reference_mask(magnitude, kept_count(0.3, magnitude.numel()))
    after = [m.selection() for m in layers]
    assert torch.equal(torch.cat([a.reshape(-1) for a in after]), expected)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_training_forward_uses_fresh_global_masks_after_fused_steps(device: torch.device) -> None:
    # fused optimisers do not bump version counters: the masks must not be cached across forwards
    config = RunConfig(method="edge-popup", scope="global", density=0.3, dataset="synthetic")
    model = initial_network(config, (1, 28, 28), 10).to(device).train()
    x = fused_sgd_steps(model, 3)
    layers = masked_layers(model)
    magnitude = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in layers])
    masks = reference_mask(magnitude, kept_count(0.3, magnitude.numel())).split(
        [layer.weight.numel() for layer in layers]
    )
    h = x.flatten(1)
    for i, (layer, mask) in enumerate(zip(layers, masks, strict=True)):
        h = F.linear(h, layer.weight * mask.view(layer.weight_shape))
        h = h.relu() if i < len(layers) - 1 else h
    assert torch.allclose(model(x), h, atol=1e-5)


def test_annealed_density_follows_the_cubic_schedule() -> None:
    assert annealed_density(0.1, 0, 10) == pytest.approx(0.5)
    assert annealed_density(0.1, 5, 10) == pytest.approx(0.1 + 0.4 * 0.5**3)
    assert annealed_density(0.1, 10, 10) == 0.1 and annealed_density(0.1, 30, 10) == 0.1
    assert annealed_density(0.7, 0, 10) == 0.7  # only targets <= 0.5 are annealed
    values = [annealed_density(0.2, e, 10) for e in range(12)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_global_annealing_trains_denser_but_evaluates_at_the_target(
    tmp_path: Path, device: torch.device
) -> None:
    config = RunConfig(
        method="edge-popup",
        scope="global",
        density=0.2,
        anneal_epochs=4,
        epochs=2,
        dataset="synthetic",
        train_size=256,
        val_size=100,
    )
    seen = []

    class Probe(Callback):
        def on_step_end(self, trainer):
            scope = global_scope_of(trainer.model)
            seen.append(
                (
                    trainer.epoch,
                    scope.kept(True),
                    sum(int(m.mask().sum()) for m in masked_layers(trainer.model)),
                )
            )

    splits = make_splits("synthetic", 100, 0, 256)
    model = initial_network(config, splits.info.input_shape, splits.info.num_classes)
    make_trainer(config, model, splits, device, [Probe()], progress=False).fit()
    total = sum(m.weight.numel() for m in masked_layers(model))
    for epoch, kept, used in seen:
        assert kept == used == kept_count(annealed_density(0.2, epoch, 4), total)
    model.eval()
    assert sum(int(m.selection().sum()) for m in masked_layers(model)) == kept_count(0.2, total)


@pytest.mark.parametrize("conv", [False, True])
def test_straight_through_gradient_matches_the_formula(conv: bool, device: torch.device) -> None:
    torch.manual_seed(1)
    shape = (5, 3, 3, 3) if conv else (6, 9)
    layer = EdgePopupLayer(shape, density=0.4, init="kn", padding=1 if conv else 0)
    layer.init_values(torch.Generator().manual_seed(0))
    layer.init_scores(torch.Generator().manual_seed(1))
    layer.to(device)
    x = (torch.randn(4, 3, 6, 6) if conv else torch.randn(4, 9)).to(device)
    out = layer(x)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    # the same loss through an explicit W_eff: dL/dW_eff by autograd, then the rule by hand
    mask = reference_mask(layer.scores.detach().abs(), layer.kept)
    w_eff = (layer.weight * mask).requires_grad_()
    out2 = F.conv2d(x, w_eff, padding=1) if conv else F.linear(x, w_eff)
    assert torch.allclose(out, out2)
    (out2 * r).sum().backward()
    expected = layer.scores.detach().sign() * w_eff.grad * layer.weight
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)
    assert layer.scores.grad[~mask].abs().sum() > 0  # pruned weights get gradient too


@pytest.mark.parametrize("init", ["sc", "sc-scaled", "kn", "kn-scaled"])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_inits_scale_with_the_fraction_kept(init: str, density: float) -> None:
    layer = EdgePopupLayer((200, 300), density=density, init=init)
    layer.init_values(torch.Generator().manual_seed(0))
    layer.init_scores(torch.Generator().manual_seed(1))
    var = 2.0 / (300 * (density if init.endswith("-scaled") else 1.0))
    if init.startswith("sc"):
        assert torch.all(layer.weight.abs() == torch.tensor(math.sqrt(var)))
        assert abs(float((layer.weight > 0).float().mean()) - 0.5) < 0.01
    else:
        assert float(layer.weight.var()) == pytest.approx(var, rel=0.03)
    bound = 1 / math.sqrt(300)
    peak = float(layer.scores.detach().abs().max())
    assert 0.99 * bound < peak <= bound


def test_same_weight_seed_different_score_seed_same_weights_different_masks() -> None:
    for method in ("edge-popup", "biprop"):
        a = initial_network(RunConfig(method=method, dataset="synthetic", score_seed=0), (1, 28, 28), 10)
        b = initial_network(RunConfig(method=method, dataset="synthetic", score_seed=1), (1, 28, 28), 10)
        c = initial_network(RunConfig(method=method, dataset="synthetic", weight_seed=1), (1, 28, 28), 10)
        for la, lb, lc in zip(masked_layers(a), masked_layers(b), masked_layers(c), strict=True):
            assert isinstance(la, RandomWeightLayer) and isinstance(la, SelectingLayer)
            assert torch.equal(la.weight, lb.weight)
            assert not torch.equal(la.selection(), lb.selection())
            assert torch.equal(la.selection(), lc.selection()) and not torch.equal(la.weight, lc.weight)


def test_only_scores_train_and_edge_popup_learns(tmp_path: Path) -> None:
    config = RunConfig(method="edge-popup", dataset="synthetic", epochs=2, val_size=300, weight_decay=1e-4)
    result = load_or_run(config, root=tmp_path)
    assert result.metrics["test_accuracy"] > 0.9
    init, best = result.model("init").state_dict(), result.model("best").state_dict()
    for key in init:
        assert torch.equal(init[key], best[key]) == key.endswith("weight"), key


def test_random_mask_trains_weights_under_a_fixed_mask(tmp_path: Path) -> None:
    config = RunConfig(method="random-mask", dataset="synthetic", epochs=2, val_size=300, lr=0.05)
    result = load_or_run(config, root=tmp_path)
    init, best = result.model("init"), result.model("best")
    assert result.metrics["test_accuracy"] > 0.9
    for a, b in zip(masked_layers(init), masked_layers(best), strict=True):
        assert torch.equal(a.selection(), b.selection()) and not torch.equal(a.weight, b.weight)
        assert torch.equal(
            a.weight[~a.selection()], b.weight[~b.selection()]
        )  # pruned weights get no gradient


@pytest.mark.parametrize(
    "change, message",
    [
        ({"density": 0}, r"density must be in \(0, 1\]"),
        ({"density": 1.5}, r"density must be in \(0, 1\]"),
        ({"density": -0.1}, r"density must be in \(0, 1\]"),
        ({"density": math.nan}, "density must be a number"),
        ({"density": "half"}, "density must be a number"),
        ({"recycle_rate": 1.5}, r"recycle_rate must be in \[0, 1\]"),
        ({"recycle_rate": -0.1}, r"recycle_rate must be in \[0, 1\]"),
        ({"iterand_rate": 2}, r"iterand_rate must be in \[0, 1\]"),
        ({"recycle_rate": 0.6, "recycle_donor": "next-lowest"}, "recycle_rate must be <= 0.5"),
        ({"recycle_every": 0}, "recycle_every must be >= 1"),
        ({"scope": "model"}, "scope must be one of layer, global"),
        ({"init": "glorot"}, "init 'glorot' is not one of method edge-popup's"),
    ],
)
def test_bad_input_is_one_clear_line(change: dict, message: str) -> None:
    with pytest.raises(SlotlabError, match=message) as info:
        RunConfig(method="edge-popup", **change)
    assert "\n" not in str(info.value)


def test_global_density_annealing_applies_to_learned_masks_only() -> None:
    def annealed(method: str) -> bool:
        config = RunConfig(method=method, scope="global", density=0.1)
        return any(isinstance(cb, DensityAnnealing) for cb in config.method_rule.callbacks(config))

    assert annealed("edge-popup") and annealed("biprop")
    assert not annealed("random-mask")  # its mask stays the one drawn at the start


def test_random_mask_refuses_recycling() -> None:
    with pytest.raises(
        SlotlabError,
        match="recycle_rate is not an option of method random-mask.*belongs to edge-popup, biprop",
    ):
        RunConfig(method="random-mask", recycle_rate=0.1)


def test_a_density_that_empties_a_layer_is_refused_before_anything_is_written(capsys, tmp_path: Path) -> None:
    code = main(
        [
            "train",
            "--method",
            "biprop",
            "--density",
            "0.0001",
            "--dataset",
            "synthetic",
            "--runs",
            str(tmp_path),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "keeps no weight of a layer of shape (10, 100)" in err
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.tmp"))


def test_help_lists_the_mask_methods_and_options() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "slotlab", "train", "--help"], capture_output=True, text=True)
    for text in (
        "edge-popup",
        "biprop",
        "random-mask",
        "--density",
        "--scope",
        "--recycle-rate",
        "--recycle-every",
        "--recycle-donor",
        "--iterand-rate",
        "--binary-activations",
        "--learned-bn",
    ):
        assert text in out.stdout, text
