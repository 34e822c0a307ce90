"""SlotSGD: the straight-through score gradient fused into SGD must give SGD's own result."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slotlab.config import RunConfig
from slotlab.init import initialize
from slotlab.layers import SlotFactory
from slotlab.layers.slot import (
    AutogradGrad,
    HandOverGrad,
    SlotConv2d,
    SlotLayer,
    SlotLinear,
    use_autograd_grads,
)
from slotlab.models import build_model
from slotlab.optim import make_optimizer
from slotlab.slot_sgd import SlotSGD, fused_update_available

pytestmark = pytest.mark.skipif(
    not fused_update_available("cpu"), reason="torch.compile does not work here (no C++ compiler?)"
)


class Net(nn.Module):
    """A conv and a linear slot layer on 1x8x8 inputs, with an ordinary trained bias-like parameter."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = SlotConv2d(1, 3, 3, k, padding=1)
        self.fc = SlotLinear(3 * 8 * 8, 5, k)
        self.shift = nn.Parameter(torch.zeros(5))  # not a slot score: takes plain SGD's step inside SlotSGD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1)) + self.shift


def twins(k: int, seed: int) -> tuple[Net, Net]:
    a = initialize(Net(k), seed, seed + 1)
    b = initialize(Net(k), seed, seed + 1)
    return a, b


def slot_layers(net: nn.Module) -> list[SlotLayer]:
    return [m for m in net.modules() if isinstance(m, SlotLayer)]


def train(net: Net, opt: torch.optim.Optimizer, batches, scheduler=None, accumulate: int = 1) -> None:
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        for part in range(accumulate):
            F.cross_entropy(net(x[part::accumulate]), y[part::accumulate]).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def random_batches(seed: int, n: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 5, (16,), generator=gen)) for _ in range(n)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sgd_on_the_autograd_gradient(seed: int) -> None:
    k = (2, 5, 8)[seed]
    fused_net, plain_net = twins(k, seed)
    hp = dict(lr=0.3, momentum=0.9, weight_decay=1e-3)
    fused = SlotSGD(fused_net.parameters(), slot_layers(fused_net), **hp)
    plain = torch.optim.SGD(plain_net.parameters(), **hp)
    use_autograd_grads(plain_net)  # the textbook path: autograd's K-sized gradient, SGD's own step
    schedules = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (fused, plain)]
    batches = random_batches(seed)
    train(fused_net, fused, batches, schedules[0])
    train(plain_net, plain, batches, schedules[1])
    start = initialize(Net(k), seed, seed + 1).state_dict()
    for (name, p), q in zip(fused_net.named_parameters(), plain_net.parameters(), strict=True):
        assert not torch.equal(p, start[name]), name  # it trained
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
    for p, q in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        torch.testing.assert_close(
            fused.state[p]["momentum_buffer"], plain.state[q]["momentum_buffer"], rtol=1e-5, atol=1e-7
        )


def test_scores_grad_is_handed_over_and_score_grad_rebuilds_it() -> None:
    fused_net, plain_net = twins(4, 3)
    fused = SlotSGD(fused_net.parameters(), slot_layers(fused_net), lr=0.1, momentum=0.9)
    use_autograd_grads(plain_net)
    x, y = random_batches(3, 1)[0]
    for net in (fused_net, plain_net):
        F.cross_entropy(net(x), y).backward()
    for fused_layer, plain_layer in zip(slot_layers(fused_net), slot_layers(plain_net), strict=True):
        assert isinstance(fused_layer.grad_path, HandOverGrad)
        assert fused_layer.scores.grad is None and fused_layer.grad_path.pending is not None
        torch.testing.assert_close(fused_layer.score_grad(), plain_layer.scores.grad)
    fused.close()


def test_accumulated_backward_passes_sum() -> None:
    fused_net, plain_net = twins(3, 4)
    fused = SlotSGD(fused_net.parameters(), slot_layers(fused_net), lr=0.2, momentum=0.5)
    plain = torch.optim.SGD(plain_net.parameters(), lr=0.2, momentum=0.5)
    use_autograd_grads(plain_net)
    batches = random_batches(4, 2)
    train(fused_net, fused, batches, accumulate=2)
    train(plain_net, plain, batches, accumulate=2)
    for p, q in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_state_is_interchangeable_with_sgd() -> None:
    """A checkpoint of SlotSGD continues in plain SGD (and back) as if nothing had changed."""
    a, b = twins(4, 5)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    first = SlotSGD(a.parameters(), slot_layers(a), **hp)
    train(a, first, random_batches(5, 2))
    b.load_state_dict(a.state_dict())
    use_autograd_grads(b)
    second = torch.optim.SGD(b.parameters(), **hp)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # load_state_dict would share the buffers
    later = random_batches(6, 2)
    train(a, first, later)
    train(b, second, later)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_ordinary_score_gradients_take_sgd_step() -> None:
    """With the hand-over off (what a DDP run does), SlotSGD is plain SGD."""
    a, b = twins(2, 6)
    use_autograd_grads(a)
    use_autograd_grads(b)
    fused = SlotSGD(a.parameters(), slot_layers(a), lr=0.1, momentum=0.9)
    plain = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    batches = random_batches(6, 3)
    train(a, fused, batches)
    train(b, plain, batches)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-8)
    assert all(type(layer.grad_path) is AutogradGrad for layer in slot_layers(a))  # SlotSGD left it alone


def test_make_optimizer_picks_slot_sgd_only_where_it_applies() -> None:
    net = initialize(build_model("lenet300", SlotFactory(2), (1, 28, 28), 10), 0, 0)
    params = [p for p in net.parameters() if p.requires_grad]
    assert isinstance(make_optimizer(RunConfig(method="slots"), params, net), SlotSGD)
    assert type(make_optimizer(RunConfig(method="slots"), params)) is torch.optim.SGD  # no model given
    assert type(make_optimizer(RunConfig(method="slots", momentum=0.0), params, net)) is torch.optim.SGD
    assert type(make_optimizer(RunConfig(method="slots", optimizer="adam"), params, net)) is torch.optim.Adam
