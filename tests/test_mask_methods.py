"""Zhou et al.'s supermask, finetuning under a frozen found mask, the init ablation's inits, and the switches that
reproduce the released code's kept count, Biprop gain and scaled init, each against a slow, obvious reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from slotlab import cli
from slotlab.config import RunConfig
from slotlab.data import dataset_info
from slotlab.errors import SlotlabError
from slotlab.export import load_compact, save_compact
from slotlab.layers.activations import BinaryActivation
from slotlab.layers.biprop import BipropLayer
from slotlab.layers.edge_popup import EdgePopupLayer, kept_count
from slotlab.layers.fixed_mask import FixedMaskLayer
from slotlab.layers.plain import to_plain
from slotlab.layers.supermask import SupermaskLayer, sample_mask
from slotlab.runs import initial_network, load_or_run

TINY = dict(dataset="synthetic", epochs=1, batch_size=64, train_size=256, val_size=100)


# --- Zhou et al.'s supermask -------------------------------------------------------------------------------------
def test_the_sampled_mask_is_u_below_sigmoid_of_the_score_one_weight_at_a_time() -> None:
    scores = torch.randn(7, 9, generator=torch.Generator().manual_seed(1)) * 2
    mask = sample_mask(scores, torch.Generator().manual_seed(3))
    u = torch.rand(7, 9, generator=torch.Generator().manual_seed(3))
    for i in range(7):
        for j in range(9):
            p = 1 / (1 + math.exp(-float(scores[i, j])))
            assert bool(mask[i, j]) == (float(u[i, j]) < p)


def test_sampling_frequencies_match_the_sigmoid_of_fixed_scores() -> None:
    layer = SupermaskLayer((4, 5), init="kn")
    with torch.no_grad():
        layer.scores.copy_(torch.linspace(-3, 3, 20).view(4, 5))
    layer.generator = torch.Generator().manual_seed(0)
    draws = 4000
    frequency = sum(layer.mask().float() for _ in range(draws)) / draws
    p = torch.sigmoid(layer.scores.detach())
    # binomial standard error per weight; 5 of them is a false alarm once in millions
    assert torch.all((frequency - p).abs() <= 5 * torch.sqrt(p * (1 - p) / draws) + 1e-3)
    assert frequency[0, 0] < 0.1 and frequency[-1, -1] > 0.9


def test_the_supermask_gradient_is_straight_through_the_sample() -> None:
    gen = torch.Generator().manual_seed(2)
    layer = SupermaskLayer((3, 6), init="kn")
    layer.init_values(gen)
    layer.init_scores(gen)
    x = torch.randn(5, 6, generator=gen)
    layer.generator = torch.Generator().manual_seed(9)
    out = layer(x)
    upstream = torch.randn(out.shape, generator=gen)
    (out * upstream).sum().backward()
    # the same sample again, and the gradient written out weight by weight: dL/dW_eff = upstream^T x
    mask = sample_mask(layer.scores.detach(), torch.Generator().manual_seed(9))
    assert torch.equal(out, x @ (layer.weight * mask).T)
    for i in range(3):
        for j in range(6):
            g_eff = sum(float(upstream[n, i]) * float(x[n, j]) for n in range(5))
            p = 1 / (1 + math.exp(-float(layer.scores.detach()[i, j])))
            expected = g_eff * float(layer.weight[i, j]) * p * (1 - p)
            assert math.isclose(float(layer.scores.grad[i, j]), expected, rel_tol=1e-4, abs_tol=1e-7)


def test_threshold_evaluation_keeps_scores_above_zero_and_exports_exactly(tmp_path: Path) -> None:
    config = RunConfig(method="supermask", eval_mask="threshold", **TINY)
    info = dataset_info("synthetic")
    model = initial_network(config, info.input_shape, info.num_classes).eval()
    layers = [m for m in model.modules() if isinstance(m, SupermaskLayer)]
    for layer in layers:
        assert torch.equal(layer.mask(), layer.scores.detach() > 0)
        assert torch.equal(layer.selection(), layer.mask())
    x = torch.randn(4, *info.input_shape)
    assert torch.equal(model(x), model(x))  # deterministic
    save_compact(model, config, tmp_path / "c.pt")
    assert torch.allclose(load_compact(tmp_path / "c.pt")(x), to_plain(model)(x), atol=1e-6)


def test_sampled_evaluation_samples_and_refuses_the_compact_export(tmp_path: Path) -> None:
    config = RunConfig(method="supermask", **TINY)
    info = dataset_info("synthetic")
    model = initial_network(config, info.input_shape, info.num_classes).eval()
    x = torch.randn(4, *info.input_shape)
    assert not torch.equal(model(x), model(x))  # a fresh mask per forward pass, as the paper evaluates
    with pytest.raises(SlotlabError, match="needs --eval-mask threshold"):
        save_compact(model, config, tmp_path / "c.pt")


def test_a_supermask_run_trains_its_scores_only(tmp_path: Path) -> None:
    config = RunConfig(method="supermask", **TINY)
    start = initial_network(config, (1, 28, 28), 10)
    end = load_or_run(config, root=tmp_path, progress=False).model("last")
    pairs = [
        (a, b) for a, b in zip(start.modules(), end.modules(), strict=True) if isinstance(a, SupermaskLayer)
    ]
    assert pairs and all(torch.equal(a.weight, b.weight) for a, b in pairs)
    assert any(not torch.equal(a.scores, b.scores) for a, b in pairs)


# --- finetuning under a frozen found mask ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_popup_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ep-source")
    return load_or_run(RunConfig(method="edge-popup", density=0.3, **TINY), root=root, progress=False), root


def _pairs(source_model, finetuned):
    found = dict(source_model.named_modules())
    return [(found[n], m) for n, m in finetuned.named_modules() if isinstance(m, FixedMaskLayer)]


def test_the_mask_stays_the_sources_and_pruned_weights_stay_zero(edge_popup_run) -> None:
    source, root = edge_popup_run
    config = RunConfig(method="mask-finetune", mask_source=source.config.hash, **{**TINY, "epochs": 2})
    result = load_or_run(config, root=root, progress=False)
    found = source.model("best")
    start = torch.load(result.path / "init.pt", weights_only=True)["model"]
    pairs = _pairs(found, result.model("last"))
    assert len(pairs) == 3
    moved = 0
    for name, (old, new) in zip([n for n in start if n.endswith("scores")], pairs, strict=True):
        keep = old.selection()
        assert torch.equal(new.mask(), keep)  # bit-identical to the source's mask
        assert torch.equal(start[name] != 0, keep)
        assert torch.all(new.weight[~keep] == 0)  # pruned weights exactly zero after training
        initial = old.weight * keep
        assert torch.equal(start[name.replace("scores", "weight")], initial)
        moved += int((new.weight[keep] != initial[keep]).sum())
        assert new.weight.requires_grad
    assert moved > 0.5 * sum(int(old.selection().sum()) for old, _ in pairs)  # kept weights trained


def test_the_finetune_starts_from_what_the_found_network_computes(edge_popup_run) -> None:
    source, root = edge_popup_run
    config = RunConfig(method="mask-finetune", mask_source=str(source.path), **TINY)
    assert config.options.mask_source == source.config.hash
    found = source.model("best").eval()
    start = initial_network(config, (1, 28, 28), 10, root).eval()
    x = torch.randn(6, 1, 28, 28)
    assert torch.allclose(start(x), found(x), atol=1e-6)


def test_mask_finetune_refuses_a_source_that_is_not_a_mask_run(tmp_path: Path) -> None:
    dense = load_or_run(RunConfig(method="dense", **TINY), root=tmp_path, progress=False)
    config = RunConfig(method="mask-finetune", mask_source=dense.config.hash, **TINY)
    with pytest.raises(
        SlotlabError, match=r"mask-finetune starts from a edge-popup or biprop run; dense-\S+ is a dense"
    ):
        load_or_run(config, root=tmp_path, progress=False)


def test_a_biprop_source_starts_the_weights_at_its_ternary_network(tmp_path: Path) -> None:
    source = load_or_run(RunConfig(method="biprop", density=0.3, **TINY), root=tmp_path, progress=False)
    config = RunConfig(method="mask-finetune", mask_source=source.config.hash, **TINY)
    start = initial_network(config, (1, 28, 28), 10, tmp_path)
    found = source.model("best").eval()
    pairs = _pairs(found, start)
    assert len(pairs) == 3
    for old, new in pairs:
        keep = old.selection()
        assert torch.equal(new.mask(), keep)
        # what the biprop network computed: alpha * sign(W) on the kept weights, 0 elsewhere
        assert torch.allclose(new.weight, old.effective_weight().detach() * keep)
        assert torch.unique(new.weight[keep].abs()).numel() == 1


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ep-binact")
    config = RunConfig(method="edge-popup", binary_activations=True, learned_bn=True, **TINY)
    return load_or_run(config, root=root, progress=False), root


def test_tune_batchnorm_trains_batchnorm_only(binary_run) -> None:
    source, root = binary_run
    config = RunConfig(
        method="mask-finetune",
        mask_source=source.config.hash,
        binary_activations=True,
        learned_bn=True,
        tune_batchnorm=True,
        **TINY,
    )
    result = load_or_run(config, root=root, progress=False)
    start = initial_network(config, (1, 28, 28), 10, root)
    end = result.model("last")
    for a, b in zip(start.modules(), end.modules(), strict=True):
        if isinstance(a, FixedMaskLayer):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.scores, b.scores)
    bns = [
        (a.bn, b.bn)
        for a, b in zip(start.modules(), end.modules(), strict=True)
        if isinstance(a, BinaryActivation)
    ]
    assert bns and any(not torch.equal(a.weight, b.weight) for a, b in bns)
    assert any(not torch.equal(a.bias, b.bias) for a, b in bns)


def test_bn_bias_only_keeps_the_batchnorm_scale_at_one(tmp_path: Path) -> None:
    config = RunConfig(method="biprop", binary_activations=True, learned_bn=True, bn_bias_only=True, **TINY)
    end = load_or_run(config, root=tmp_path, progress=False).model("last")
    bns = [m.bn for m in end.modules() if isinstance(m, BinaryActivation)]
    assert bns and all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    assert any(bool((bn.bias != 0).any()) for bn in bns)


def test_mask_finetune_refuses_an_architecture_unlike_the_sources(binary_run) -> None:
    source, root = binary_run
    plain = RunConfig(method="mask-finetune", mask_source=source.config.hash, **TINY)
    with pytest.raises(SlotlabError, match="has binary activations; give --binary-activations true"):
        initial_network(plain, (1, 28, 28), 10, root)
    no_bn = RunConfig(method="mask-finetune", mask_source=source.config.hash, binary_activations=True, **TINY)
    with pytest.raises(SlotlabError, match="learned its BatchNorm; give --learned-bn true"):
        initial_network(no_bn, (1, 28, 28), 10, root)


# --- the released code's switches, on small fixed inputs ---------------------------------------------------------
def _released_get_subnet(scores: torch.Tensor, k: float) -> torch.Tensor:
    """``GetSubnet.forward`` of the released Edge-Popup code: a full sort, the lowest int((1 - k) n) set to 0."""
    out = scores.clone()
    _, idx = scores.flatten().sort()
    j = int((1 - k) * scores.numel())
    flat = out.flatten()
    flat[idx[:j]] = 0
    flat[idx[j:]] = 1
    return flat.view(scores.shape)


@pytest.mark.parametrize("density, numel", [(0.9, 10), (0.3, 10), (0.7, 10), (0.5, 7), (0.45, 20)])
def test_the_released_kept_count_matches_the_released_mask(density: float, numel: int) -> None:
    layer = EdgePopupLayer((1, numel), density, "kn", kept_rule="released")
    gen = torch.Generator().manual_seed(numel)
    with torch.no_grad():
        layer.scores.copy_(torch.randperm(numel, generator=gen).float().view(1, numel) + 1)
    assert torch.equal(layer.mask().float(), _released_get_subnet(layer.scores.detach().abs(), density))
    assert layer.kept == numel - int((1 - density) * numel)
    assert kept_count(density, numel) == math.floor(density * numel + 0.5)
    if (density, numel) == (0.9, 10):
        assert (kept_count(0.9, 10, "released"), kept_count(0.9, 10)) == (10, 9)  # (1 - 0.9) * 10 = 0.999...


def _released_biprop_weight(scores: torch.Tensor, weight: torch.Tensor, k: float) -> torch.Tensor:
    """``GetQuantnet_binary`` times sign(W), as ``SubnetConv.forward`` of the released Biprop code computes it."""
    out = _released_get_subnet(scores, k)
    alpha = torch.sum(weight.abs() * out) / int(k * scores.numel())
    return torch.sign(weight) * (alpha * out)


@pytest.mark.parametrize("density", [0.9, 0.3, 0.55])
def test_the_released_gain_divisor_reproduces_the_released_biprop_weight(density: float) -> None:
    layer = BipropLayer((2, 10), density, "kn", kept_rule="released", gain_divisor="released")
    gen = torch.Generator().manual_seed(4)
    layer.init_values(gen)
    layer.init_scores(gen)
    official = _released_biprop_weight(layer.scores.detach().abs(), layer.weight, density)
    assert torch.allclose(layer.effective_weight(), official, rtol=1e-6, atol=0)
    paper = BipropLayer((2, 10), density, "kn")
    paper.load_state_dict(layer.state_dict())
    mask = paper.mask()
    assert torch.allclose(paper.alpha(), (paper.weight.abs() * mask).sum() / mask.sum())
    if density == 0.9:  # keeps 20 - int(0.1 * 20) = 19 (1-d is 0.0999...), divides by int(18.0) = 18
        assert int(layer.mask().sum()) == 19 and int(density * 20) == 18


@pytest.mark.parametrize("density", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("init", ["sc-scaled", "kn-scaled", "uc-scaled"])
def test_the_released_scaled_init_multiplies_the_fan_by_one_minus_density(init: str, density: float) -> None:
    shape = (6, 5, 3, 3)
    layer = EdgePopupLayer(shape, density, init, scale_rule="released")
    values = layer.draw_values(torch.Generator().manual_seed(0))
    # builder._init_conv of the released code, scale_fan True, prune_rate = density (the fraction kept)
    fan = torch.nn.init._calculate_correct_fan(torch.empty(shape), "fan_in") * (1 - density)
    std = torch.nn.init.calculate_gain("relu") / math.sqrt(fan)
    normal = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = {"sc": normal.sign() * std, "kn": normal * std, "uc": torch.ones(shape) * std}[init[:2]]
    assert torch.allclose(values, expected, rtol=1e-6)
    paper = EdgePopupLayer(shape, density, init).draw_values(torch.Generator().manual_seed(0))
    assert torch.allclose(paper * math.sqrt(density), values * math.sqrt(1 - density), rtol=1e-6)


def test_the_released_scaled_init_at_density_one_is_refused() -> None:
    with pytest.raises(SlotlabError, match="1 - density = 0 at density 1"):
        EdgePopupLayer((4, 4), 1.0, "sc-scaled", scale_rule="released")


# --- the init ablation's inits, against torch.nn.init ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3)])
def test_kaiming_uniform_and_xavier_normal_draw_what_torch_draws(shape, mode: str) -> None:
    ku = EdgePopupLayer(shape, 0.5, "ku", fan_mode=mode).draw_values(torch.Generator().manual_seed(7))
    reference = torch.nn.init.kaiming_uniform_(
        torch.empty(shape), mode=mode, nonlinearity="relu", generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(ku, reference)
    xn = EdgePopupLayer(shape, 0.5, "xn").draw_values(torch.Generator().manual_seed(7))
    assert torch.equal(
        xn, torch.nn.init.xavier_normal_(torch.empty(shape), generator=torch.Generator().manual_seed(7))
    )


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_constant_and_normal_inits_have_the_stated_magnitudes(mode: str) -> None:
    shape = (200, 50, 3, 3)
    fan = torch.nn.init._calculate_correct_fan(torch.empty(shape), mode)
    fan_in, fan_out = 50 * 9, 200 * 9
    std = torch.nn.init.calculate_gain("relu") / math.sqrt(fan)
    draw = {
        init: EdgePopupLayer(shape, 0.25, init, fan_mode=mode).draw_values(torch.Generator().manual_seed(1))
        for init in ("kn", "sc", "uc", "uc-scaled", "xc")
    }
    reference = torch.nn.init.kaiming_normal_(
        torch.empty(shape), mode=mode, nonlinearity="relu", generator=torch.Generator().manual_seed(1)
    )
    assert math.isclose(float(draw["kn"].std()), float(reference.std()), rel_tol=0.01)
    assert math.isclose(float(draw["kn"].std()), std, rel_tol=0.01)
    assert torch.allclose(draw["sc"].abs(), torch.full(shape, std))
    assert abs(float((draw["sc"] > 0).float().mean()) - 0.5) < 0.01
    assert torch.allclose(draw["uc"], torch.full(shape, std))
    assert torch.allclose(draw["uc-scaled"], torch.full(shape, std / math.sqrt(0.25)))
    xavier = math.sqrt(2.0 / (fan_in + fan_out))
    assert torch.allclose(draw["xc"].abs(), torch.full(shape, xavier))
    assert abs(float((draw["xc"] > 0).float().mean()) - 0.5) < 0.01


# --- reachable from the command line, and no option that does nothing --------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "edge-popup", "--init", "xn", "--fan-mode", "fan_out"], "fan_mode does not apply"),
        (["--method", "edge-popup", "--init", "sc", "--scale-rule", "released"], "scale_rule applies to"),
        (
            ["--method", "edge-popup", "--scope", "global", "--kept-rule", "released"],
            "kept_rule applies to layer scope",
        ),
        (
            ["--method", "biprop", "--scope", "global", "--gain-divisor", "released"],
            "gain_divisor released divides",
        ),
        (["--method", "biprop", "--bn-bias-only", "true"], "give --learned-bn true"),
        (["--method", "supermask", "--density", "0.3"], "density is not an option of method supermask"),
        (["--method", "mask-finetune"], "mask-finetune needs --mask-source"),
        (["--method", "edge-popup", "--gain-divisor", "released"], "gain_divisor is not an option"),
    ],
)
def test_an_option_that_would_do_nothing_is_refused_in_one_line(
    argv, message, capsys, tmp_path: Path
) -> None:
    assert cli.main(["train", *argv, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_learned_batchnorm_on_a_model_without_batchnorm_is_refused() -> None:
    config = RunConfig(method="edge-popup", learned_bn=True, **TINY)
    with pytest.raises(SlotlabError, match="has no BatchNorm here, so learned_bn changes nothing"):
        initial_network(config, (1, 28, 28), 10)


def test_the_new_options_reach_the_layers() -> None:
    config = RunConfig(
        method="biprop",
        init="kn-scaled",
        kept_rule="released",
        scale_rule="released",
        gain_divisor="released",
        fan_mode="fan_out",
        **TINY,
    )
    model = initial_network(config, (1, 28, 28), 10)
    layers = [m for m in model.modules() if isinstance(m, BipropLayer)]
    assert layers and all(
        (m.kept_rule, m.scale_rule, m.fan_mode, m.gain_divisor)
        == ("released", "released", "fan_out", "released")
        for m in layers
    )


def test_train_help_lists_the_new_methods_and_options(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--eval-mask",
        "--tune-batchnorm",
        "--bn-bias-only",
        "--kept-rule",
        "--gain-divisor",
        "--fan-mode",
    ):
        assert flag in out
    assert "supermask" in out and "mask-finetune" in out
