"""Which kernel runs where: the compiled greedy selection and the fused SlotSGD update, per device type.

``slotlab.compiled.per_device`` compiles and checks a kernel once per device type with the probe on that device;
a device type whose compile fails (or that has no compiler backend, or is absent) gets None, and the callers keep
their eager rule, with the same results. The CUDA copies compare the compiled CUDA kernels with the eager rule and
with the CPU; they skip on a machine without a GPU.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slotlab import compiled, slot_sgd
from slotlab.config import RunConfig
from slotlab.init import initialize
from slotlab.layers import slot
from slotlab.layers.edge_popup import top_mask
from slotlab.layers.slot import (
    AutogradGrad,
    SlotConv2d,
    SlotLayer,
    SlotLinear,
    greedy_weight,
    use_autograd_grads,
)
from slotlab.optim import make_optimizer
from slotlab.runs import load_or_run
from slotlab.slot_sgd import SlotSGD, _compiled_update, fused_update_available

needs_cpu_compile = pytest.mark.skipif(
    slot._greedy_kernels("cpu") is None or _compiled_update("cpu") is None,
    reason="torch.compile does not work here (no C++ compiler?)",
)
SGD = dict(optimizer="sgd", lr=0.3, momentum=0.9, weight_decay=1e-3)


class Net(nn.Module):
    """A conv and a linear slot layer on 1x8x8 inputs."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = SlotConv2d(1, 3, 3, k, padding=1)
        self.fc = SlotLinear(3 * 8 * 8, 5, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


def net(k: int = 4, seed: int = 0, device: str = "cpu") -> Net:
    return initialize(Net(k), seed, seed + 1).to(device)


def batches(device: str = "cpu", n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    out = [
        (torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 5, (16,), generator=gen)) for _ in range(n)
    ]
    return [(x.to(device), y.to(device)) for x, y in out]


def train(model: nn.Module, opt: torch.optim.Optimizer, data) -> None:
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def tied_inputs(k: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand((k, n), generator=gen)
    scores[:, : n // 2] = torch.randint(0, 2, (k, n // 2), generator=gen).float()  # many exact ties
    return scores, torch.randn((k, n), generator=gen)


def eager_greedy(scores: torch.Tensor, values: torch.Tensor, monkeypatch) -> torch.Tensor:
    with monkeypatch.context() as patch:
        patch.setattr(slot, "_compiled_greedy", lambda: None)
        return greedy_weight(scores, values)


def slot_layers(model: nn.Module) -> list[SlotLayer]:
    return [m for m in model.modules() if isinstance(m, SlotLayer)]


class Recorder:
    """A stand-in for ``checked_compile``: records the devices of the probes it was given."""

    def __init__(self, result=None) -> None:
        self.calls: list[set[str]] = []
        self.result = result

    def __call__(self, fn, *probe):
        self.calls.append({a.device.type for a in probe if isinstance(a, torch.Tensor)})
        return self.result


# --- the dispatch, on the CPU --------------------------------------------------------------------------------
def test_per_device_compiles_once_per_device_type_with_the_probe_on_it(monkeypatch) -> None:
    recorder = Recorder(result=lambda *a: None)
    monkeypatch.setattr(compiled, "checked_compile", recorder)
    lookup = compiled.per_device(slot._greedy_planes, slot._greedy_probe)
    assert lookup("cpu") is recorder.result and lookup("cpu") is recorder.result
    assert recorder.calls == [{"cpu"}]
    # no compiler backend tried (meta, mps), or not present in this process: no compile, the eager path
    assert lookup("meta") is None and lookup("mps") is None
    if not torch.cuda.is_available():
        assert lookup("cuda") is None
    assert recorder.calls == [{"cpu"}]


def test_device_available() -> None:
    assert compiled.device_available("cpu")
    assert compiled.device_available("cuda") == torch.cuda.is_available()
    assert not compiled.device_available("no-such-device")


@needs_cpu_compile
def test_the_cpu_runs_the_cpu_kernel(monkeypatch) -> None:
    asked, ran = [], []
    real_lookup = slot._greedy_kernels
    kernel = real_lookup("cpu")

    def spy_lookup(device_type: str):
        asked.append(device_type)
        found = real_lookup(device_type)
        return None if found is None else (lambda *a: ran.append(device_type) or found(*a))

    scores, values = tied_inputs(5, 301)
    expected = eager_greedy(scores, values, monkeypatch)
    monkeypatch.setattr(slot, "_greedy_kernels", spy_lookup)
    assert torch.equal(greedy_weight(scores.view(5, 7, 43), values.view(5, 7, 43)), expected.view(7, 43))
    assert asked == ["cpu"] and ran == ["cpu"] and kernel is not None
    greedy_weight(scores[:1], values[:1])  # K = 1: nothing to select, no kernel
    assert asked == ["cpu"]
    assert fused_update_available("cpu") and fused_update_available(torch.device("cpu"))
    model = net()
    assert isinstance(make_optimizer(RunConfig(**SGD), list(model.parameters()), model), SlotSGD)


def test_a_device_without_a_kernel_asks_for_its_own_and_runs_eagerly(monkeypatch) -> None:
    """The meta device stands in for a device with no compiled kernel: the lookup is by the tensor's device."""
    asked = []
    monkeypatch.setattr(slot, "_greedy_kernels", lambda device_type: asked.append(device_type))
    scores, values = tied_inputs(3, 40)
    weight = greedy_weight(scores.to("meta"), values.to("meta"))
    assert asked == ["meta"] and weight.device.type == "meta" and weight.shape == (40,)
    assert not fused_update_available("meta")
    model = net().to("meta")
    assert not isinstance(make_optimizer(RunConfig(**SGD), list(model.parameters()), model), SlotSGD)


@pytest.mark.parametrize("k", [2, 3, 8])
def test_a_failed_compile_falls_back_to_eager_with_identical_results(k: int, monkeypatch) -> None:
    scores, values = tied_inputs(k, 257, seed=k)
    before = greedy_weight(scores, values)  # the compiled kernel where this machine has one
    model_before = net(k)
    before_opt = make_optimizer(RunConfig(**SGD), list(model_before.parameters()), model_before)
    train(model_before, before_opt, batches())

    recorder = Recorder(result=None)  # every device's compile fails
    monkeypatch.setattr(compiled, "checked_compile", recorder)
    monkeypatch.setattr(slot, "_greedy_kernels", compiled.per_device(slot._greedy_planes, slot._greedy_probe))
    monkeypatch.setattr(
        slot_sgd, "_update_kernels", compiled.per_device(slot_sgd._update, slot_sgd._update_probe)
    )
    assert slot._greedy_kernel(torch.device("cpu")) is None and not fused_update_available("cpu")
    assert torch.equal(greedy_weight(scores, values), before)
    model_after = net(k)
    after_opt = make_optimizer(RunConfig(**SGD), list(model_after.parameters()), model_after)
    assert type(after_opt) is torch.optim.SGD  # plain SGD on the ordinary gradient
    with pytest.raises(RuntimeError, match="torch.compile on cpu"):
        SlotSGD(model_after.parameters(), slot_layers(model_after), lr=0.1, momentum=0.9)
    train(model_after, after_opt, batches())
    assert recorder.calls == [{"cpu"}, {"cpu"}]  # once per kernel and device type
    for p, q in zip(model_before.parameters(), model_after.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


@needs_cpu_compile
def test_slot_sgd_steps_eagerly_where_its_kernel_went_missing(monkeypatch) -> None:
    fused_model, eager_model = net(5, 3), net(5, 3)
    fused = SlotSGD(
        fused_model.parameters(), slot_layers(fused_model), lr=0.2, momentum=0.9, weight_decay=1e-3
    )
    eager = SlotSGD(
        eager_model.parameters(), slot_layers(eager_model), lr=0.2, momentum=0.9, weight_decay=1e-3
    )
    train(fused_model, fused, batches())
    monkeypatch.setattr(slot_sgd, "_update_kernels", lambda device_type: None)
    train(eager_model, eager, batches())  # the same rule, run by eager ops
    for p, q in zip(fused_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    fused.close()
    eager.close()


@needs_cpu_compile
def test_the_compiled_greedy_kernel_runs_under_autocast(monkeypatch) -> None:
    scores, values = tied_inputs(4, 99)
    expected = eager_greedy(scores, values, monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = greedy_weight(scores, values)
    assert weight.dtype == torch.float32 and torch.equal(weight, expected)


# --- the CUDA copies ------------------------------------------------------------------------------------------
@pytest.fixture
def full_fp32(monkeypatch) -> None:
    """float32 matrix products and convolutions without TF32, so that CPU comparisons mean what they say."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_has_compiled_kernels() -> None:
    assert slot._greedy_kernel(torch.device("cuda")) is not None, "the greedy kernel did not compile on CUDA"
    assert _compiled_update("cuda") is not None and fused_update_available("cuda")
    assert fused_update_available(torch.device("cuda", 0))


@pytest.mark.parametrize("k", [2, 3, 8])
@pytest.mark.parametrize("n", [41, 4099, 300 * 784])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_compiled_greedy_equals_eager_and_the_cpu(k: int, n: int, monkeypatch) -> None:
    scores, values = tied_inputs(k, n, seed=k + n)
    on_cpu = eager_greedy(scores, values, monkeypatch)
    scores, values = scores.cuda(), values.cuda()
    compiled_weight = greedy_weight(scores, values)
    assert compiled_weight.device.type == "cuda"
    assert torch.equal(compiled_weight, eager_greedy(scores, values, monkeypatch))
    assert torch.equal(compiled_weight.cpu(), on_cpu)


@pytest.mark.parametrize("k", [2, 5, 8])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_slot_sgd_matches_sgd_on_the_autograd_gradient(k: int, full_fp32) -> None:
    fused_model, plain_model = net(k, k, "cuda"), net(k, k, "cuda")
    fused = make_optimizer(RunConfig(**SGD), list(fused_model.parameters()), fused_model)
    assert isinstance(fused, SlotSGD)
    use_autograd_grads(plain_model)
    plain = torch.optim.SGD(plain_model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    data = batches("cuda", 4)
    train(fused_model, fused, data)
    train(plain_model, plain, data)
    start = net(k, k, "cuda").state_dict()
    for (name, p), q in zip(fused_model.named_parameters(), plain_model.parameters(), strict=True):
        assert not torch.equal(p, start[name]), name
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    fused.close()


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_top_mask_equals_the_cpus(ties: bool) -> None:
    gen = torch.Generator().manual_seed(int(ties))
    for shape in [(13, 11), (64, 32, 3, 3), (300, 784)]:
        numel = torch.Size(shape).numel()
        for kept in (1, numel // 3, numel - 1):
            magnitude = (
                torch.randint(0, 4, shape, generator=gen).float()
                if ties
                else torch.rand(shape, generator=gen)
            )
            mask = top_mask(magnitude.cuda(), kept)
            assert mask.device.type == "cuda" and int(mask.sum()) == kept
            assert torch.equal(mask.cpu(), top_mask(magnitude, kept))


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bf16_autocast_gives_float32_score_gradients(conv: bool) -> None:
    layer = initialize(SlotConv2d(3, 4, 3, k=5, padding=1) if conv else SlotLinear(9, 4, k=5), 1, 2).cuda()
    reference = initialize(
        SlotConv2d(3, 4, 3, k=5, padding=1) if conv else SlotLinear(9, 4, k=5), 1, 2
    ).cuda()
    reference.set_grad_path(AutogradGrad())
    x = (torch.randn(2, 3, 6, 6) if conv else torch.randn(2, 9)).cuda()
    for module, bf16 in ((layer, True), (reference, False)):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = module(x)
        assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
        out.float().square().mean().backward()
    assert layer.scores.grad.dtype == torch.float32
    torch.testing.assert_close(layer.scores.grad, reference.scores.grad, rtol=0.05, atol=0.02)


@pytest.mark.parametrize(
    "method", [dict(method="slots", k=4), dict(method="edge-popup")], ids=["slots", "ep"]
)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bf16_runs_train(method: dict, tmp_path) -> None:
    config = RunConfig(
        dataset="synthetic", epochs=2, train_size=256, val_size=100, batch_size=64, precision="bf16", **method
    )
    run = load_or_run(config, root=tmp_path, device="cuda", progress=False)
    assert run.metrics["test_accuracy"] > 0.3


# --- checked_compile on tuple and exact (bool, integer) outputs; the cache folder -------------------------------
def _count_and_mask(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (x >= t).sum(), x >= t


def test_checked_compile_checks_every_output_of_a_tuple(monkeypatch) -> None:
    probe = (torch.randn(100, generator=torch.Generator().manual_seed(0)), torch.tensor(0.1))
    kernel = compiled.checked_compile(_count_and_mask, *probe)
    if kernel is not None:  # a C++ compiler here: the compiled kernel gives both outputs exactly
        count, mask = kernel(*probe)
        assert int(count) == int((probe[0] >= 0.1).sum()) and torch.equal(mask, probe[0] >= 0.1)

    def wrong(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x >= t).sum(), x > t + 1  # the second output of a "compiled" kernel disagrees

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: wrong)
    assert compiled.checked_compile(_count_and_mask, *probe) is None
    monkeypatch.setattr(
        torch, "compile", lambda fn, **kwargs: lambda x, t: (x >= t).sum()
    )  # one output short
    assert compiled.checked_compile(_count_and_mask, *probe) is None


def test_cache_folder_prefers_the_users_setting(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.cache_folder() == str(tmp_path / "mine")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("SLOTLAB_CACHE", str(tmp_path / "slotlab"))
    assert compiled.cache_folder() == str(tmp_path / "slotlab" / "inductor")
    monkeypatch.delenv("SLOTLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.cache_folder() == str(tmp_path / "xdg" / "slotlab" / "inductor")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compiled.cache_folder() == str(tmp_path / "home" / ".cache" / "slotlab" / "inductor")


def test_a_fresh_process_compiles_into_the_slotlab_cache_folder(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "SLOTLAB_CACHE")}
    env.update(XDG_CACHE_HOME=str(tmp_path))
    code = (
        "import slotlab.compiled\n"
        "from torch._inductor.runtime.cache_dir_utils import cache_dir\n"
        "print(cache_dir())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "slotlab" / "inductor")
