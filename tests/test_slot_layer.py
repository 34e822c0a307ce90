import math

import pytest
import torch
import torch.nn.functional as F

from slotlab.init import initialize
from slotlab.layers import SlotConv2d, SlotLinear
from slotlab.layers.slot import AutogradGrad, InPlaceGrad, greedy_index, greedy_weight, sample_index


def reference_greedy(scores: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit loop: for each connection, the first slot with the largest score (on the CPU, whatever the device)."""
    k = scores.shape[0]
    flat_s, flat_v = scores.detach().cpu().reshape(k, -1), values.cpu().reshape(k, -1)
    index = torch.empty(flat_s.shape[1], dtype=torch.long)
    weight = torch.empty(flat_s.shape[1])
    for c in range(flat_s.shape[1]):
        best = 0
        for slot in range(1, k):
            if flat_s[slot, c] > flat_s[best, c]:
                best = slot
        index[c], weight[c] = best, flat_v[best, c]
    return index.view(scores.shape[1:]), weight.view(scores.shape[1:])


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_greedy_selection_matches_explicit_loop_including_ties(
    k: int, compiled: bool, device: torch.device, monkeypatch
) -> None:
    # "compiled": the kernel greedy_weight uses where torch.compile works on the device (else the eager rule too)
    if not compiled:  # the path of devices without a working torch.compile (no C++ compiler, no Triton)
        monkeypatch.setattr("slotlab.layers.slot._compiled_greedy", lambda: None)
    gen = torch.Generator().manual_seed(k)  # drawn on the CPU: the same inputs on every device
    scores = torch.rand((k, 7, 11), generator=gen)
    scores[:, :3] = torch.randint(0, 2, (k, 3, 11), generator=gen).float()  # many exact ties
    values = torch.randn((k, 7, 11), generator=gen)
    index, weight = reference_greedy(scores, values)
    scores, values = scores.to(device), values.to(device)
    assert torch.equal(greedy_index(scores).cpu(), index)
    assert torch.equal(greedy_weight(scores, values).cpu(), weight)


def test_layer_forward_uses_selected_values(device: torch.device) -> None:
    layer = SlotLinear(13, 5, k=4)
    initialize(layer, 1, 2)
    layer.to(device)
    x = torch.randn(6, 13).to(device)
    _, weight = reference_greedy(layer.scores.detach(), layer.values)
    assert torch.allclose(layer(x), x @ weight.to(device).T, atol=1e-6)


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("conv", [False, True])
def test_straight_through_gradient_reaches_every_slot(
    in_place: bool, conv: bool, device: torch.device
) -> None:
    torch.manual_seed(3)
    layer = SlotConv2d(3, 4, 3, k=5, padding=1) if conv else SlotLinear(9, 4, k=5)
    initialize(layer, 3, 4)
    layer.to(device)
    layer.set_grad_path(InPlaceGrad() if in_place else AutogradGrad())
    x = (torch.randn(2, 3, 6, 6) if conv else torch.randn(2, 9)).to(device)
    target = torch.randn_like(layer(x))
    # dL/dW_eff from an ordinary layer holding the selected weight
    weight = layer.effective_weight().detach().requires_grad_(True)
    out = F.conv2d(x, weight, padding=1) if conv else F.linear(x, weight)
    ((out - target) ** 2).sum().backward()
    ((layer(x) - target) ** 2).sum().backward()
    expected = weight.grad.unsqueeze(0) * layer.values  # dL/dS[k] = dL/dW_eff * W[k], for all k
    assert torch.allclose(layer.scores.grad, expected, atol=1e-5)
    assert (layer.scores.grad != 0).float().mean() > 0.9  # not only the selected slot


def test_gradient_accumulates_across_backward_calls(device: torch.device) -> None:
    layer = SlotLinear(5, 3, k=3)
    initialize(layer, 0, 0)
    layer.to(device)
    x = torch.randn(4, 5).to(device)
    layer(x).sum().backward()
    once = layer.scores.grad.clone()
    layer(x).sum().backward()
    assert torch.allclose(layer.scores.grad, 2 * once)


def test_sampling_frequencies_follow_softmax(device: torch.device) -> None:
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5])
    n = 200_000
    scores = logits[:, None].expand(5, n).contiguous().to(device)
    index = sample_index(scores, torch.Generator(device).manual_seed(0))  # each device's own stream
    assert index.device == scores.device
    freq = torch.bincount(index.cpu(), minlength=5).float() / n
    expected = torch.softmax(logits, 0)
    assert torch.allclose(freq, expected, atol=4 * math.sqrt(0.25 / n))


def test_sampling_is_seeded_and_greedy_at_evaluation(device: torch.device) -> None:
    layer = SlotLinear(20, 10, k=6, selection="sampled")
    initialize(layer, 0, 0)
    layer.to(device)
    layer.generator = torch.Generator(device).manual_seed(5)
    a = layer.effective_weight().detach()
    layer.generator.manual_seed(5)
    assert torch.equal(a, layer.effective_weight().detach())
    assert not torch.equal(a, layer.effective_weight().detach())  # fresh draw every forward
    layer.eval()
    assert torch.equal(layer.effective_weight(), greedy_weight(layer.scores.detach(), layer.values))


def test_eval_selection_of_the_config_reaches_every_slot_layer(device: torch.device) -> None:
    from slotlab.config import RunConfig
    from slotlab.runs import initial_network

    config = RunConfig(model="conv2", dataset="synthetic-cifar", k=4, eval_selection="sampled")
    net = initial_network(config, (3, 32, 32), 10).to(device).eval()
    layers = [m for m in net.modules() if isinstance(m, (SlotLinear, SlotConv2d))]
    assert layers and all(layer.eval_selection == "sampled" for layer in layers)
    layer = layers[0]
    layer.generator = torch.Generator(device).manual_seed(3)
    drawn = layer.effective_weight().detach()
    assert torch.equal(drawn, sample_index_weight(layer, seed=3))  # evaluation samples, as asked
    greedy = initial_network(config.replace(eval_selection="greedy"), (3, 32, 32), 10).eval()
    assert all(
        m.eval_selection == "greedy" for m in greedy.modules() if isinstance(m, (SlotLinear, SlotConv2d))
    )


def sample_index_weight(layer, seed: int) -> torch.Tensor:
    index = sample_index(layer.scores.detach(), torch.Generator(layer.scores.device).manual_seed(seed))
    return layer.values.gather(0, index.unsqueeze(0)).squeeze(0)


@pytest.mark.parametrize("init,bound_num,fc_scale", [("paper", 2.0, 0.1), ("code", 6.0, 1.0)])
def test_init_bounds(init: str, bound_num: float, fc_scale: float) -> None:
    linear, conv = SlotLinear(300, 100, k=8, init=init), SlotConv2d(16, 32, 3, k=8, init=init)
    initialize(torch.nn.ModuleList([linear, conv]), 0, 1)
    for layer, fan_in, fan_out, scale in ((linear, 300, 100, fc_scale), (conv, 16 * 9, 32 * 9, 1.0)):
        sigma = math.sqrt(bound_num / (fan_in + fan_out))
        assert layer.values.abs().max() <= sigma
        assert layer.values.abs().max() > 0.99 * sigma  # the whole range is used
        assert layer.scores.min() >= 0 and layer.scores.max() <= scale * sigma
        assert layer.scores.max() > 0.99 * scale * sigma


def test_same_weight_seed_gives_same_values_whatever_the_score_seed() -> None:
    a, b = SlotLinear(50, 20, k=4), SlotLinear(50, 20, k=4)
    initialize(a, 7, 1)
    initialize(b, 7, 2)
    assert torch.equal(a.values, b.values)
    assert not torch.equal(a.scores, b.scores)
    assert not torch.equal(greedy_index(a.scores), greedy_index(b.scores))


def test_equal_seeds_do_not_correlate_values_and_scores() -> None:
    layer = SlotLinear(200, 100, k=8)
    initialize(layer, 0, 0)
    selected = greedy_weight(layer.scores.detach(), layer.values)
    # with correlated streams greedy would pick each connection's largest value (all positive)
    assert 0.4 < (selected > 0).float().mean() < 0.6
