"""The warm-started top-k (``TopKSelector``) and the single-pass mask kernels against full sorts and eager rules.

Every selection is checked against a stable descending sort of fresh random |scores| (ties to the lowest flat
index; over several tensors, to the earlier tensor), for one tensor (layer scope) and several (global scope),
over many calls where the scores drift a little (the warm path), jump (the hint far off), tie, or where the kept
count changes, and with hints set to nonsense: the hint may only change the cost, never the mask.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from slotlab.config import RunConfig
from slotlab.layers import edge_popup
from slotlab.layers.biprop import BipropLayer
from slotlab.layers.edge_popup import EdgePopupLayer, Selection, TopKSelector, top_mask
from slotlab.runs import initial_network
from slotlab.train import trainable_parameters
from tests.test_edge_popup import masked_layers, reference_mask


def check(selector: TopKSelector, parts: list[torch.Tensor], kept: int) -> list[Selection]:
    """Select, and assert the masks are the reference top-k of the concatenation, exactly ``kept`` in all."""
    selections = selector.select(parts, kept)
    assert len(selections) == len(parts)
    got = torch.cat([s.keep(p).reshape(-1) for s, p in zip(selections, parts, strict=True)])
    expected = reference_mask(torch.cat([p.abs().reshape(-1) for p in parts]), kept)
    assert got.dtype == torch.bool and int(got.sum()) == kept
    assert torch.equal(got, expected)
    for selection, part in zip(selections, parts, strict=True):
        assert selection.keep(part).shape == part.shape
        if selection.mask is None:  # a plain threshold: it alone is the selection
            assert torch.equal(selection.keep(part), part.abs() >= selection.threshold)
    return selections


def drift(parts: list[torch.Tensor], generator: torch.Generator, size: float) -> list[torch.Tensor]:
    return [p + size * torch.randn(p.shape, generator=generator) for p in parts]


SHAPES = {"layer": [(300, 78)], "global": [(50, 40), (7, 3, 3, 3), (13,), (64, 30)]}


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("move", [1e-5, 1e-3, 3e-2])
def test_warm_selection_equals_a_full_sort_over_many_steps(scope: str, move: float) -> None:
    generator = torch.Generator().manual_seed(int(move * 1e5) + len(scope))
    parts = [torch.randn(shape, generator=generator) for shape in SHAPES[scope]]
    n = sum(p.numel() for p in parts)
    selector = TopKSelector()
    for density in (0.5, 0.1, 0.9):
        kept = math.floor(density * n + 0.5)
        for _ in range(25):
            parts = drift(parts, generator, move)
            check(selector, parts, kept)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_jumps_and_scale_changes_between_steps(scope: str) -> None:
    generator = torch.Generator().manual_seed(7)
    parts = [torch.randn(shape, generator=generator) for shape in SHAPES[scope]]
    kept = sum(p.numel() for p in parts) // 3
    selector = TopKSelector()
    check(selector, parts, kept)
    for step in range(12):
        if step % 3 == 0:  # a fresh draw: every entry moves
            parts = [torch.randn(p.shape, generator=generator) for p in parts]
        elif step % 3 == 1:  # all scores grow or shrink by orders of magnitude (the threshold with them)
            parts = [p * 10.0 ** float(torch.randint(-6, 7, (1,), generator=generator)) for p in parts]
        else:  # one tensor alone shifts far up
            parts = [p + 100.0 * (i == 0) for i, p in enumerate(parts)]
        check(selector, parts, kept)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_ties_at_the_threshold_go_to_the_lowest_index_on_every_path(scope: str) -> None:
    generator = torch.Generator().manual_seed(11)
    shapes = SHAPES[scope]
    selector = TopKSelector()
    n = sum(math.prod(s) for s in shapes)
    for trial in range(30):
        # few distinct values: ties at the threshold nearly always, warm hints that sit on a tied value
        parts = [torch.randint(-4, 5, shape, generator=generator).float() / 8 for shape in shapes]
        kept = int(torch.randint(1, n, (1,), generator=generator))
        selections = check(selector, parts, kept)
        if trial % 2:  # the same kept count again: the warm path on tied scores
            check(selector, parts, kept)
    assert any(s.mask is not None for s in selections)  # the explicit tie path was exercised


def test_nonsense_hints_change_nothing() -> None:
    generator = torch.Generator().manual_seed(5)
    parts = [torch.randn(shape, generator=generator) for shape in SHAPES["global"]]
    kept = sum(p.numel() for p in parts) // 2
    magnitude = torch.cat([p.abs().reshape(-1) for p in parts])
    true = float(magnitude.kthvalue(magnitude.numel() - kept + 1).values)
    hints = [(true, 0.0), (true, 1e-30), (-5.0, 1.0), (1e9, 1e-9), (true * 1.01, 1e-6), (0.0, 1e30)]
    hints += [(true, float(w)) for w in torch.rand(10, generator=generator)]
    for hint in hints:
        selector = TopKSelector()
        selector._hints[kept] = hint
        check(selector, parts, kept)


def test_all_or_nothing_kept() -> None:
    scores = torch.randn(5, 4)
    selector = TopKSelector()
    assert bool(selector.select([scores], 20)[0].keep(scores).all())
    assert not bool(selector.select([scores], 0)[0].keep(scores).any())


def test_the_warm_path_needs_no_full_selection(monkeypatch) -> None:
    """After the first call, small moves are resolved without a kthvalue over all the scores."""
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(200, 100, generator=generator)
    selector = TopKSelector()
    kept = scores.numel() // 2
    check(selector, [scores], kept)
    sizes: list[int] = []
    real = torch.Tensor.kthvalue
    monkeypatch.setattr(
        torch.Tensor, "kthvalue", lambda self, *a, **k: sizes.append(self.numel()) or real(self, *a, **k)
    )
    for _ in range(20):
        scores = scores + 1e-4 * torch.randn(scores.shape, generator=generator)
        check(selector, [scores], kept)
    assert not sizes, sizes  # counting passes only


# --- the layers on the fast path --------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("method", ["edge-popup", "biprop"])
def test_training_masks_and_weights_equal_the_reference_every_step(method: str, scope: str) -> None:
    config = RunConfig(method=method, scope=scope, density=0.3, dataset="synthetic")
    model = initial_network(config, (1, 28, 28), 10).train()
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=0.5, momentum=0.9, fused=True)
    generator = torch.Generator().manual_seed(0)
    layers = masked_layers(model)
    total = sum(layer.scores.numel() for layer in layers)
    for _ in range(8):
        x, y = (
            torch.randn(16, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (16,), generator=generator),
        )
        if scope == "global":
            magnitude = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in layers])
            flat = reference_mask(magnitude, math.floor(0.3 * total + 0.5))
            expected = [
                m.view(layer.weight_shape)
                for m, layer in zip(
                    flat.split([layer.scores.numel() for layer in layers]), layers, strict=True
                )
            ]
        else:
            expected = [reference_mask(layer.scores.detach().abs(), layer.kept) for layer in layers]
        for layer, mask in zip(layers, expected, strict=True):
            assert torch.equal(layer.mask(), mask)
            w_eff = layer.effective_weight().detach()
            if method == "biprop":
                alpha = (layer.weight.abs() * mask).sum() / mask.sum().clamp_min(1)
                assert float(layer.alpha()) == pytest.approx(float(alpha), rel=1e-6)
                assert torch.equal(w_eff, torch.where(mask, torch.sign(layer.weight) * layer.alpha(), 0.0))
            else:
                assert torch.equal(w_eff, layer.weight * mask)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("layer_class", [EdgePopupLayer, BipropLayer])
def test_straight_through_gradient_of_the_fast_path(layer_class) -> None:
    torch.manual_seed(4)
    layer = layer_class((12, 30), density=0.4, init="kn")
    layer.init_values(torch.Generator().manual_seed(0))
    layer.init_scores(torch.Generator().manual_seed(1))
    x = torch.randn(5, 30)
    out = layer(x)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    grad_w_eff = r.T @ x  # dL/dW_eff of L = sum(r * x W_eff^T)
    expected = grad_w_eff * layer.weight * layer.scores.detach().sign()
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)


# --- the kernels ------------------------------------------------------------------------------------------------
def kernel_inputs(fn, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    def f() -> torch.Tensor:
        return torch.randn(n, generator=generator)

    scalar = torch.rand((), generator=generator)
    mask = torch.rand(n, generator=generator) < 0.4
    return {
        edge_popup._counts: lambda: (f(), torch.sort(torch.rand(7, generator=generator)).values),
        edge_popup._in_range: lambda: (f(), scalar, scalar + 0.5),
        edge_popup._masked: lambda: (f(), f(), scalar),
        edge_popup._kept_magnitude: lambda: (f(), mask),
        edge_popup._ternary: lambda: (f(), mask, scalar),
        edge_popup._kept_magnitude_above: lambda: (f(), f(), scalar),
        edge_popup._ternary_above: lambda: (f(), f(), scalar, scalar + 0.5),
        edge_popup._straight_through: lambda: (f(), f(), f()),
    }[fn]()


@pytest.mark.parametrize("fn", list(edge_popup._KERNELS), ids=lambda fn: fn.__name__)
def test_every_kernel_equals_its_eager_rule_on_fresh_sizes(fn) -> None:
    kernel = edge_popup._KERNELS[fn]("cpu") or fn  # the compiled kernel where this machine has one
    generator = torch.Generator().manual_seed(3)
    for n in (1, 17, 4099, 100_003):
        args = kernel_inputs(fn, n, generator)
        got, expected = kernel(*args), fn(*args)
        got, expected = (got, expected) if isinstance(got, tuple) else ((got,), (expected,))
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == e.dtype and g.shape == e.shape
            if e.is_floating_point() and e.dim() == 0:  # a sum: the reduction order may differ
                assert torch.allclose(g, e, rtol=1e-5)
            else:
                assert torch.equal(g, e)


def test_top_mask_is_the_cold_path() -> None:
    generator = torch.Generator().manual_seed(9)
    scores = torch.randn(40, 25, generator=generator)
    for kept in (1, 333, 999, 1000):
        assert torch.equal(
            TopKSelector().select([scores], kept)[0].keep(scores), top_mask(scores.abs(), kept)
        )
