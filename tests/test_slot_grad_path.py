"""The slot layer's score-gradient strategy (``grad_path``): the three strategies agree with the straight-through
rule, SlotSGD installs its own and gives the previous one back, and DDP switches it with one call."""

import copy
import gc

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from slotlab import distributed
from slotlab.init import initialize
from slotlab.layers.slot import (
    AutogradGrad,
    GradPath,
    HandOverGrad,
    InPlaceGrad,
    SlotConv2d,
    SlotLayer,
    SlotLinear,
    greedy_index,
    sample_index,
    use_autograd_grads,
)
from slotlab.slot_sgd import SlotSGD, fused_update_available
from tests.conftest import on_cuda

needs_compile = pytest.mark.skipif(
    not fused_update_available("cpu"), reason="torch.compile does not work here (no C++ compiler?)"
)
STRATEGIES = {"autograd": AutogradGrad, "in-place": InPlaceGrad, "hand-over": HandOverGrad}


class Net(nn.Module):
    """conv -> linear, both slot layers, on 2x6x6 inputs."""

    def __init__(self, k: int = 3, selection: str = "greedy") -> None:
        super().__init__()
        self.conv = SlotConv2d(2, 3, 3, k, padding=1, selection=selection)
        self.fc = SlotLinear(3 * 6 * 6, 4, k, selection=selection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


def slot_layers(net: nn.Module) -> list[SlotLayer]:
    return [m for m in net.modules() if isinstance(m, SlotLayer)]


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 2, 6, 6, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def straight_through_reference(net: Net, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """dS[k] = dL/dW_eff * W[k] per layer, with dL/dW_eff from an ordinary network on the greedy weights."""
    weights = {}
    for name, layer in (("conv", net.conv), ("fc", net.fc)):
        index = greedy_index(layer.scores.detach())
        weights[name] = layer.values.gather(0, index.unsqueeze(0)).squeeze(0).requires_grad_(True)
    hidden = F.relu(F.conv2d(x, weights["conv"], padding=1)).flatten(1)
    F.cross_entropy(F.linear(hidden, weights["fc"]), y).backward()
    layers = {"conv": net.conv, "fc": net.fc}
    return {name: weights[name].grad.unsqueeze(0) * layers[name].values for name in weights}


def train_step(net: Net, opt: torch.optim.Optimizer, seed: int) -> None:
    x, y = batch(seed)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()


@needs_compile
@pytest.mark.parametrize("how", ["close", "context", "drop"])
def test_plain_sgd_trains_after_slot_sgd(how: str) -> None:
    net = initialize(Net(), 0, 1)
    if how == "context":
        with SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9) as opt:
            train_step(net, opt, 0)
            assert all(isinstance(layer.grad_path, HandOverGrad) for layer in slot_layers(net))
    else:
        opt = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
        train_step(net, opt, 0)
        assert all(isinstance(layer.grad_path, HandOverGrad) for layer in slot_layers(net))
        if how == "close":
            opt.close()
        else:  # dropped without close(): the finaliser gives the layers back
            del opt
            gc.collect()
    assert all(type(layer.grad_path) is InPlaceGrad for layer in slot_layers(net))
    before = {name: layer.scores.detach().clone() for name, layer in (("conv", net.conv), ("fc", net.fc))}
    x, y = batch(1)
    expected_grad = straight_through_reference(copy.deepcopy(net), x, y)
    plain = torch.optim.SGD(net.parameters(), lr=0.5)
    plain.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    plain.step()
    for name, layer in (("conv", net.conv), ("fc", net.fc)):
        assert not torch.equal(layer.scores.detach(), before[name]), name  # it trained
        torch.testing.assert_close(layer.scores.detach(), before[name] - 0.5 * expected_grad[name], msg=name)


@needs_compile
def test_close_restores_the_previous_strategy_unless_switched_since() -> None:
    net = initialize(Net(), 0, 1)
    mine = InPlaceGrad()
    assert isinstance(net.conv.set_grad_path(mine), InPlaceGrad)
    opt = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
    assert all(isinstance(layer.grad_path, HandOverGrad) for layer in slot_layers(net))
    net.fc.set_grad_path(AutogradGrad())  # switched while the optimiser is open: the new choice stays
    opt.close()
    assert net.conv.grad_path is mine
    assert type(net.fc.grad_path) is AutogradGrad
    opt.close()  # idempotent
    assert net.conv.grad_path is mine


@needs_compile
def test_a_second_slot_sgd_is_refused_until_the_first_is_closed() -> None:
    net = initialize(Net(), 0, 1)
    first = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
    path = net.conv.grad_path
    with pytest.raises(ValueError, match="another SlotSGD"):
        SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
    assert net.conv.grad_path is path  # the refused one installed nothing
    first.close()
    second = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
    assert isinstance(net.conv.grad_path, HandOverGrad) and net.conv.grad_path is not path
    before = net.fc.scores.detach().clone()
    train_step(net, second, 2)
    assert not torch.equal(net.fc.scores.detach(), before)


@needs_compile
def test_a_copied_model_is_not_in_the_optimisers_charge() -> None:
    net = initialize(Net(), 0, 1)
    opt = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
    train_step(net, opt, 0)
    twin = copy.deepcopy(net)
    assert all(type(layer.grad_path) is InPlaceGrad for layer in slot_layers(twin))
    assert all(layer.grad_path.buffer is None for layer in slot_layers(twin))  # scratch memory is not copied
    before = twin.fc.scores.detach().clone()
    train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.5), 1)
    assert not torch.equal(twin.fc.scores.detach(), before)
    assert isinstance(net.fc.grad_path, HandOverGrad)  # the original stays in charge
    opt.close()


def reference_score_grads(layer: SlotLayer, x: torch.Tensor, target: torch.Tensor, index: torch.Tensor):
    """torch.autograd on an explicit gather: W_eff = W[index], plus a zero-valued term sum_k S[k] W[k] - (same,
    detached) whose gradient is the straight-through rule."""
    scores = layer.scores.detach().clone().requires_grad_(True)
    through = (scores * layer.values).sum(0)
    weight = layer.values.gather(0, index.unsqueeze(0)).squeeze(0) + (
        through - through.detach()
    )  # exactly + 0
    out = F.conv2d(x, weight, padding=1) if layer.is_conv else F.linear(x, weight)
    (grad,) = torch.autograd.grad(((out - target) ** 2).sum(), scores)
    return grad


@pytest.mark.parametrize("selection", ["greedy", "sampled"])
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_three_strategies_give_the_straight_through_gradient(
    seed: int, conv: bool, selection: str, device: torch.device
) -> None:
    gen = torch.Generator().manual_seed(100 + seed)  # the inputs: drawn on the CPU, then moved
    k = 2 + seed
    layer = SlotConv2d(3, 4, 3, k, padding=1, selection=selection) if conv else SlotLinear(7, 5, k, selection)
    initialize(layer, seed, seed + 7)
    with torch.no_grad():  # fresh random scores and values, not only the initialiser's ranges
        layer.scores.copy_(torch.randn(layer.scores.shape, generator=gen))
        layer.values.copy_(torch.randn(layer.values.shape, generator=gen))
    layer.to(device)
    x = torch.randn((2, 3, 5, 5) if conv else (3, 7), generator=gen).to(device)
    target = torch.randn((2, 4, 5, 5) if conv else (3, 5), generator=gen).to(device)
    grads = {}
    for name, strategy in STRATEGIES.items():
        copied = copy.deepcopy(layer)
        copied.set_grad_path(strategy())
        # the device's own stream: the reference below re-draws the same indices from it, on the same device
        copied.generator = torch.Generator(device).manual_seed(seed)
        indices = []
        for _ in range(2):  # two backward passes: each strategy must sum them
            state = copied.generator.get_state()
            out = copied(x)
            copied.generator.set_state(state)
            if selection == "sampled":
                indices.append(sample_index(copied.scores.detach(), copied.generator))
            else:
                indices.append(greedy_index(copied.scores.detach()))
            ((out - target) ** 2).sum().backward()
        reference = sum(reference_score_grads(copied, x, target, index) for index in indices)
        grads[name] = copied.score_grad()
        assert grads[name] is not None, name
        torch.testing.assert_close(grads[name], reference, rtol=1e-5, atol=1e-5)
        if name == "hand-over":
            assert copied.scores.grad is None and copied.grad_path.pending.shape == layer.weight_shape
    assert (grads["autograd"] != 0).float().mean() > 0.9  # every slot learns, not only the selected one


def test_autograd_grad_works_with_torch_autograd_grad(device: torch.device) -> None:
    layer = initialize(SlotLinear(6, 3, k=4), 0, 1).to(device)
    x = torch.randn(5, 6).to(device)
    layer.set_grad_path(AutogradGrad())
    (grad,) = torch.autograd.grad(layer(x).square().sum(), layer.scores)
    target = torch.zeros(5, 3, device=device)
    expected = reference_score_grads(layer, x, target, greedy_index(layer.scores.detach()))
    torch.testing.assert_close(grad, expected)
    assert layer.scores.grad is None


def test_a_strategy_serves_one_layer() -> None:
    a, b = SlotLinear(4, 3, k=2), SlotLinear(4, 3, k=2)
    shared = InPlaceGrad()
    a.set_grad_path(shared)
    with pytest.raises(ValueError, match="another slot layer"):
        b.set_grad_path(shared)  # two same-shaped layers would share one gradient buffer
    with pytest.raises(TypeError):
        a.set_grad_path("autograd")  # type: ignore[arg-type]
    assert isinstance(b.grad_path, GradPath) and b.grad_path is not shared


def test_use_autograd_grads_switches_every_slot_layer_in_one_call() -> None:
    net = Net()
    assert use_autograd_grads(net) == 2
    assert all(type(layer.grad_path) is AutogradGrad for layer in slot_layers(net))
    paths = [layer.grad_path for layer in slot_layers(net)]
    assert paths[0] is not paths[1]


@pytest.mark.parametrize(
    "device, order",
    [
        pytest.param(torch.device("cpu"), "ddp-first", id="cpu-ddp-first"),
        pytest.param(torch.device("cpu"), "optimizer-first", id="cpu-optimizer-first"),
        on_cuda(torch.device("cuda", 0), "ddp-first", id="cuda-ddp-first"),
        on_cuda(torch.device("cuda", 0), "optimizer-first", id="cuda-optimizer-first"),
    ],
    indirect=["device"],
)
def test_prepare_model_switches_to_autograd_for_ddp(order: str, device: torch.device, monkeypatch) -> None:
    """Whichever comes first, DDP's wrapper or SlotSGD, the layers end on AutogradGrad and DDP's hooks see it
    (on CUDA, through a one-process NCCL group, as slotlab.distributed sets up on GPUs)."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    if order == "optimizer-first" and not fused_update_available(device):
        # no SlotSGD on this device (make_optimizer picks torch's SGD there): the order does not arise
        pytest.skip(f"torch.compile does not work on {device.type} here (no C++ compiler? no Triton?)")
    if device.type == "cuda" and not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    monkeypatch.setattr(distributed, "use_autograd_grads", _counting(distributed.use_autograd_grads))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{distributed.free_loopback_port()}", rank=0, world_size=1
    )
    try:
        net = initialize(Net(), 0, 1).to(device)
        opt = None
        if order == "optimizer-first":  # what slotlab.runs.make_trainer does: the optimiser, then the Trainer
            opt = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
        # the context says distributed; the one-process group lets DDP run here
        wrapped = distributed.prepare_model(net, device, distributed.Context(0, 2, 0))
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
        assert distributed.use_autograd_grads.calls == [net]
        if opt is None and fused_update_available(device):  # SlotSGD built after keeps the DDP path
            opt = SlotSGD(net.parameters(), slot_layers(net), lr=0.1, momentum=0.9)
        elif opt is None and device.type == "cuda":  # torch's SGD, as make_optimizer picks there without it
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        assert all(type(layer.grad_path) is AutogradGrad for layer in slot_layers(net))
        x, y = (t.to(device) for t in batch(3))
        expected = straight_through_reference(copy.deepcopy(net), x, y)
        F.cross_entropy(wrapped(x), y).backward()  # through DDP's hooks
        torch.testing.assert_close(net.conv.scores.grad, expected["conv"])
        torch.testing.assert_close(net.fc.scores.grad, expected["fc"])
        if opt is not None:  # the ordinary gradient takes SGD's first step: lr * g
            before = net.fc.scores.detach().clone()
            opt.step()
            torch.testing.assert_close(net.fc.scores.detach(), before - 0.1 * expected["fc"])
            if isinstance(opt, SlotSGD):
                opt.close()
            assert all(type(layer.grad_path) is AutogradGrad for layer in slot_layers(net))
    finally:
        dist.destroy_process_group()


def _counting(fn):
    def wrapper(model):
        wrapper.calls.append(model)
        return fn(model)

    wrapper.calls = []
    return wrapper
