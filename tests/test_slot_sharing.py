"""Slot Machines weight sharing (Aladago & Torresani 2021, Sec. 4): one set of K values per layer, or one for the
whole network, checked against explicit loops and autograd through an explicit straight-through weight."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.export import load_compact, save_compact
from slotlab.init import initialize, stream_seed
from slotlab.layers import SlotFactory
from slotlab.layers.slot import AutogradGrad, InPlaceGrad, SlotConv2d, SlotLayer, SlotLinear
from slotlab.models import build_model
from slotlab.runs import memory_needed
from slotlab.slot_sgd import SlotSGD, fused_update_available

SHAPE = (1, 28, 28)


def slot_layers(model: torch.nn.Module) -> list[SlotLayer]:
    return [m for m in model.modules() if isinstance(m, SlotLayer)]


def lenet(sharing: str, k: int = 4, weight_seed: int = 0, score_seed: int = 1) -> torch.nn.Module:
    return initialize(
        build_model("lenet300", SlotFactory(k, sharing=sharing), SHAPE, 10), weight_seed, score_seed
    )


def explicit_weight(scores: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per connection, a loop over the K slots: the first slot of the largest score picks its value from the
    layer's K numbers ``table``."""
    k = scores.shape[0]
    flat = scores.detach().reshape(k, -1)
    out = torch.empty(flat.shape[1])
    for c in range(flat.shape[1]):
        best = 0
        for slot in range(1, k):
            if flat[slot, c] > flat[best, c]:
                best = slot
        out[c] = table[best]
    return out.view(scores.shape[1:])


@pytest.mark.parametrize("sharing", ["layer", "global"])
@pytest.mark.parametrize("selection", ["greedy", "sampled"])
def test_every_chosen_value_is_one_of_the_layers_k_values(sharing: str, selection: str) -> None:
    factory = SlotFactory(5, selection=selection, sharing=sharing)
    model = initialize(build_model("conv2", factory, (3, 8, 8), 10), 3, 4).train()
    for layer in slot_layers(model):
        table = layer.shared_values
        assert table.shape == (5,) and torch.unique(table).numel() == 5
        weight = layer.effective_weight().detach()
        # each entry equals one of the K numbers, exactly
        assert (weight.reshape(-1, 1) == table.reshape(1, -1)).any(dim=1).all()
    tables = [layer.shared_values for layer in slot_layers(model)]
    if sharing == "global":
        assert all(torch.equal(t, tables[0]) for t in tables)
    else:
        assert not torch.equal(tables[0], tables[1])


@pytest.mark.parametrize("sharing", ["layer", "global"])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_forward_equals_an_explicit_loop(sharing: str, compiled: bool, monkeypatch) -> None:
    if not compiled:
        monkeypatch.setattr("slotlab.layers.slot._compiled_greedy", lambda: None)
    layer = SlotConv2d(2, 3, 3, k=6, padding=1, sharing=sharing)
    initialize(layer, 5, 6)
    with torch.no_grad():  # many exact ties among the scores
        layer.scores[:, :1] = torch.randint(0, 2, layer.scores[:, :1].shape).float()
    weight = explicit_weight(layer.scores, layer.shared_values)
    x = torch.randn(4, 2, 6, 6)
    assert torch.equal(layer.effective_weight().detach(), weight)
    assert torch.allclose(layer(x), F.conv2d(x, weight, padding=1), atol=1e-6)


@pytest.mark.parametrize("path", [InPlaceGrad, AutogradGrad])
@pytest.mark.parametrize("sharing", ["layer", "global"])
def test_score_gradient_matches_autograd_through_the_explicit_version(path, sharing: str) -> None:
    layer = SlotLinear(9, 4, k=3, sharing=sharing)
    initialize(layer, 7, 8)
    layer.set_grad_path(path())
    x, target = torch.randn(5, 9), torch.randn(5, 4)
    F.mse_loss(layer(x), target).backward()
    # explicit: W_eff = sum_k S[k] * v[k] with the forward value replaced by the selected one (straight-through)
    scores = layer.scores.detach().clone().requires_grad_(True)
    table = layer.shared_values.view(3, 1, 1)
    through = (scores * table).sum(0)
    weight = explicit_weight(scores, layer.shared_values) + (through - through.detach())
    F.mse_loss(x @ weight.T, target).backward()
    torch.testing.assert_close(layer.score_grad(), scores.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.skipif(not fused_update_available("cpu"), reason="torch.compile does not work here")
def test_slot_sgd_on_shared_values_takes_sgd_s_step() -> None:
    a, b = lenet("layer", k=4), lenet("layer", k=4)
    ref = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    fused = SlotSGD(b.parameters(), slot_layers(b), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(8, *SHAPE, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        for net, opt in ((a, ref), (b, fused)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    fused.close()


def test_values_cost_k_floats_per_layer_and_the_memory_model_says_so() -> None:
    k = 8
    connections = 784 * 300 + 300 * 100 + 100 * 10
    layers = 3
    stored = {}
    for sharing in ("none", "layer", "global"):
        model = lenet(sharing, k)
        stored[sharing] = sum(b.numel() for b in model.buffers())
        assert sum(p.numel() for p in model.parameters()) == k * connections  # scores: K per connection
    assert stored == {"none": k * connections, "layer": k * layers, "global": k * layers}
    needed = {
        s: memory_needed(RunConfig(method="slots", k=k, sharing=s)) for s in ("none", "layer", "global")
    }
    # memory_needed holds the network twice (it and its best copy): the values' saving, in float32 bytes, twice
    saved = 2 * 4 * (k * connections - k * layers)
    assert needed["none"] - needed["layer"] == saved
    assert needed["layer"] == needed["global"]


def test_shared_values_come_from_the_weight_seed_alone() -> None:
    for sharing in ("layer", "global"):
        a = lenet(sharing, weight_seed=0, score_seed=1)
        b, c = lenet(sharing, weight_seed=0, score_seed=2), lenet(sharing, weight_seed=3, score_seed=1)
        for la, lb, lc in zip(slot_layers(a), slot_layers(b), slot_layers(c), strict=True):
            assert torch.equal(la.shared_values, lb.shared_values)
            assert not torch.equal(la.shared_values, lc.shared_values)
            assert not torch.equal(la.scores, lb.scores)


def test_the_default_draws_are_unchanged_by_the_sharing_option() -> None:
    """sharing none is the layer as before: K values per connection from the value stream, bit for bit."""
    model = lenet("none", k=3)
    bound = (2.0 / (784 + 300)) ** 0.5
    gen = torch.Generator().manual_seed(stream_seed("values", 0))
    first = torch.rand((3, 300, 784), generator=gen) * (2 * bound) - bound
    assert torch.equal(slot_layers(model)[0].values, first)


@pytest.mark.parametrize("sharing", ["layer", "global"])
def test_compact_export_round_trips_a_sharing_network(sharing: str, tmp_path: Path) -> None:
    config = RunConfig(method="slots", k=4, sharing=sharing, dataset="synthetic", weight_seed=2, score_seed=3)
    model = config.method_rule.initial_network(config, SHAPE, 10).eval()
    save_compact(model, config, tmp_path / "compact.pt")
    x = torch.randn(3, *SHAPE)
    assert torch.equal(load_compact(tmp_path / "compact.pt")(x), model(x))


def test_bad_sharing_is_one_line() -> None:
    with pytest.raises(SlotlabError, match="sharing must be one of none, layer, global"):
        RunConfig(method="slots", sharing="row")
