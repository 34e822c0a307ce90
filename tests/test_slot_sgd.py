"""SlotSGD: the straight-through score gradient fused into SGD must give SGD's own result.

The CPU copies test SlotSGD itself against torch's SGD on the CPU. The CUDA copies test what ``make_optimizer``
picks on CUDA (SlotSGD where its fused update exists there, ``fused_update_available``; else torch's SGD on the
layers' ordinary gradient) against the same CPU reference, within float tolerance (two devices sum in different
orders).
"""

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
from tests.conftest import devices

needs_fused = pytest.mark.skipif(
    not fused_update_available("cpu"), reason="torch.compile does not work here (no C++ compiler?)"
)
# the CPU copy tests SlotSGD itself, which needs the compiler; the CUDA copy tests make_optimizer's choice there
DEVICES = devices(cpu_marks=[needs_fused])
CUDA_TOLERANCE = dict(rtol=1e-4, atol=1e-6)  # CUDA against the CPU reference: float32 summation orders differ


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


def optimizer_under_test(net: Net, device: torch.device, **hp) -> torch.optim.Optimizer:
    """SlotSGD on the CPU; on CUDA, what make_optimizer picks for the slots method there."""
    if device.type == "cpu":
        return SlotSGD(net.parameters(), slot_layers(net), **hp)
    config = RunConfig(method="slots", optimizer="sgd", **{"weight_decay": 0.0, **hp})
    opt = make_optimizer(config, list(net.parameters()), net)
    # SlotSGD exactly where its fused update exists on the device, torch's SGD elsewhere
    assert type(opt) is (SlotSGD if fused_update_available(device) else torch.optim.SGD)
    return opt


def on(batches, device: torch.device):
    return [(x.to(device), y.to(device)) for x, y in batches]


def assert_close_to_reference(
    p: torch.Tensor, q: torch.Tensor, device: torch.device, msg: str | None = None, **tolerance
) -> None:
    """``p`` (on ``device``) against the CPU reference ``q``: the test's own tolerance on the CPU, float
    tolerance across devices."""
    tolerance = tolerance if device.type == "cpu" else CUDA_TOLERANCE
    torch.testing.assert_close(p.cpu(), q, msg=msg, **tolerance)


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


@pytest.mark.parametrize("device", DEVICES, indirect=True)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sgd_on_the_autograd_gradient(seed: int, device: torch.device) -> None:
    k = (2, 5, 8)[seed]
    fused_net, plain_net = twins(k, seed)
    fused_net.to(device)
    hp = dict(lr=0.3, momentum=0.9, weight_decay=1e-3)
    fused = optimizer_under_test(fused_net, device, **hp)
    plain = torch.optim.SGD(plain_net.parameters(), **hp)
    use_autograd_grads(plain_net)  # the textbook path: autograd's K-sized gradient, SGD's own step (CPU)
    schedules = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (fused, plain)]
    batches = random_batches(seed)
    train(fused_net, fused, on(batches, device), schedules[0])
    train(plain_net, plain, batches, schedules[1])
    start = initialize(Net(k), seed, seed + 1).state_dict()
    for (name, p), q in zip(fused_net.named_parameters(), plain_net.parameters(), strict=True):
        assert not torch.equal(p.cpu(), start[name]), name  # it trained
        assert_close_to_reference(p, q, device, rtol=1e-5, atol=1e-7, msg=name)
    for p, q in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        assert_close_to_reference(
            fused.state[p]["momentum_buffer"], plain.state[q]["momentum_buffer"], device, rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_scores_grad_is_handed_over_and_score_grad_rebuilds_it(device: torch.device) -> None:
    if not fused_update_available(device):  # the CPU copy is skipped by its mark instead
        pytest.skip(f"no fused SlotSGD update on {device.type} here: make_optimizer keeps torch's SGD")
    fused_net, plain_net = twins(4, 3)
    fused_net.to(device)
    fused = SlotSGD(fused_net.parameters(), slot_layers(fused_net), lr=0.1, momentum=0.9)
    use_autograd_grads(plain_net)
    x, y = random_batches(3, 1)[0]
    for net in (fused_net, plain_net):
        F.cross_entropy(net(x.to(net.shift.device)), y.to(net.shift.device)).backward()
    for fused_layer, plain_layer in zip(slot_layers(fused_net), slot_layers(plain_net), strict=True):
        assert isinstance(fused_layer.grad_path, HandOverGrad)
        assert fused_layer.scores.grad is None and fused_layer.grad_path.pending is not None
        assert_close_to_reference(fused_layer.score_grad(), plain_layer.scores.grad, device)
    fused.close()


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_accumulated_backward_passes_sum(device: torch.device) -> None:
    fused_net, plain_net = twins(3, 4)
    fused_net.to(device)
    fused = optimizer_under_test(fused_net, device, lr=0.2, momentum=0.5)
    plain = torch.optim.SGD(plain_net.parameters(), lr=0.2, momentum=0.5)
    use_autograd_grads(plain_net)
    batches = random_batches(4, 2)
    train(fused_net, fused, on(batches, device), accumulate=2)
    train(plain_net, plain, batches, accumulate=2)
    for p, q in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        assert_close_to_reference(p, q, device, rtol=1e-5, atol=1e-7)


@needs_fused  # both copies: the checkpoint and the reference come from SlotSGD on the CPU
@pytest.mark.parametrize("device", devices(), indirect=True)
def test_state_is_interchangeable_with_sgd(device: torch.device) -> None:
    """A checkpoint of SlotSGD continues in plain SGD (and back) as if nothing had changed; on CUDA, it continues
    in what make_optimizer picks there (a CPU checkpoint resumed on a GPU)."""
    a, b = twins(4, 5)
    hp = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    first = SlotSGD(a.parameters(), slot_layers(a), **hp)
    train(a, first, random_batches(5, 2))
    b.load_state_dict(a.state_dict())
    b.to(device)
    if device.type == "cpu":
        use_autograd_grads(b)
        second = torch.optim.SGD(b.parameters(), **hp)
    else:
        second = optimizer_under_test(b, device, **hp)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # load_state_dict would share the buffers
    later = random_batches(6, 2)
    train(a, first, later)
    train(b, second, on(later, device))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        if device.type == "cpu":
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
        else:  # b on CUDA against the CPU reference a
            torch.testing.assert_close(q.cpu(), p, **CUDA_TOLERANCE)


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_ordinary_score_gradients_take_sgd_step(device: torch.device) -> None:
    """With the hand-over off (what a DDP run does), SlotSGD is plain SGD (on CUDA: make_optimizer's pick)."""
    a, b = twins(2, 6)
    a.to(device)
    use_autograd_grads(a)
    use_autograd_grads(b)
    fused = optimizer_under_test(a, device, lr=0.1, momentum=0.9)
    plain = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    batches = random_batches(6, 3)
    train(a, fused, on(batches, device))
    train(b, plain, batches)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert_close_to_reference(p, q, device, rtol=1e-6, atol=1e-8)
    assert all(type(layer.grad_path) is AutogradGrad for layer in slot_layers(a))  # SlotSGD left it alone


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_make_optimizer_picks_slot_sgd_only_where_it_applies(device: torch.device) -> None:
    net = initialize(build_model("lenet300", SlotFactory(2), (1, 28, 28), 10), 0, 0).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    chosen = make_optimizer(RunConfig(method="slots"), params, net)
    if device.type == "cpu":
        assert isinstance(chosen, SlotSGD)
    elif fused_update_available(device):
        assert type(chosen) is SlotSGD
    else:  # no fused update on this device: torch's own SGD, with its fused kernels
        assert type(chosen) is torch.optim.SGD and chosen.defaults["fused"]
    assert type(make_optimizer(RunConfig(method="slots"), params)) is torch.optim.SGD  # no model given
    assert type(make_optimizer(RunConfig(method="slots", momentum=0.0), params, net)) is torch.optim.SGD
    assert type(make_optimizer(RunConfig(method="slots", optimizer="adam"), params, net)) is torch.optim.Adam
