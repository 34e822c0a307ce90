"""SGD for Slot Machines with the straight-through score gradient fused into the update (Aladago & Torresani,
ICML 2021, arXiv 2101.06475, Eq. 3).

The straight-through gradient of a slot layer's scores S (K, n) is an outer product of the effective weight's
gradient G = dL/dW_eff (n,) with the frozen values W (K, n): dL/dS[k] = G * W[k]. SGD with momentum mu, weight
decay wd and learning rate lr (``torch.optim.SGD``'s rule: dampening 0, no Nesterov) then does, per score,

    M <- mu * M + (G * W + wd * S)          (M: the momentum buffer, (K, n), starting at zero)
    S <- S - lr * M

Materialising the gradient costs 2K floats of memory traffic per connection and step (the backward writes
G * W, the optimiser reads it back) on top of the 5K the update itself must move (read W, S, M; write S, M). The
Lenet-300-100 slot step is bound by that traffic on the CPU, so ``SlotSGD`` keeps only G (the layer's backward
hands it over instead of the K-sized gradient) and applies the two lines above in one compiled loop
(``torch.compile``: inductor's C++ backend on the CPU, a Triton kernel on CUDA), reading each K-sized tensor once.
The kernel is compiled and checked against the eager rule once per device type (``slotlab.compiled.per_device``).

From zero, the first step gives mu * 0 + g = g exactly, as SGD's first step (which copies the gradient). The
momentum buffer lives in the optimiser state under SGD's own key, so checkpoints are interchangeable with plain
SGD. Parameters that are not slot scores, and slot scores that received an ordinary gradient (a DDP run gives its
layers ``AutogradGrad``, before or after SlotSGD is built, and SlotSGD leaves it), take plain SGD's step.
Where the compiler is not available on the scores' device, ``make_optimizer`` keeps plain SGD.

Ownership of the gradient path: ``SlotSGD`` installs a ``HandOverGrad`` on each of its layers and puts the
strategy it replaced back in ``close()`` (also on leaving a ``with`` block, and when the optimiser is garbage
collected), so that any other optimiser on the same model afterwards sees ordinary gradients again. A layer
already in the charge of another, still open SlotSGD is refused with a ``ValueError``: close that one first.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import nn

from slotlab.compiled import per_device
from slotlab.layers.slot import AutogradGrad, HandOverGrad, SlotLayer


def fused_kernels(parameters: Iterable[torch.Tensor]) -> bool | None:
    """``fused=`` for torch's SGD/Adam: the fused kernels update parameter, gradient and state in one pass (they
    matter for K-sized slot tensors) and exist for float32 on the CPU and CUDA; None lets torch choose."""
    return all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in parameters) or None


def _update(
    scores: torch.Tensor,
    values: torch.Tensor,
    momentum: torch.Tensor,
    grad_weight: torch.Tensor,
    hyper: torch.Tensor,
) -> None:
    """In place: momentum <- mu * momentum + (grad_weight * values + wd * scores); scores -= lr * momentum.

    scores, values, momentum: (K, n) contiguous; grad_weight: (n,); hyper: (3,) = lr, mu, wd (a tensor, so that
    a new learning rate every step does not recompile the kernel).
    """
    lr, mu, weight_decay = hyper[0], hyper[1], hyper[2]
    buffer = momentum * mu + (values * grad_weight + scores * weight_decay)
    momentum.copy_(buffer)
    scores.copy_(scores - buffer * lr)


def _update_probe() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.rand((2, 37), generator=gen) for _ in range(3)]  # K = 2: not duck-sized with hyper
    hyper = torch.tensor([0.1, 0.9, 1e-4])
    return (*tensors, torch.randn(37, generator=gen), hyper)


# device type -> the update compiled for any n and checked on that device, or None
_update_kernels = per_device(_update, _update_probe)


def _compiled_update(device_type: str = "cpu"):
    """The update compiled once per process and device type (inductor C++ on "cpu", Triton on "cuda"), for any
    n; None where compiling fails there (no C++ compiler, no Triton, a kernel that disagrees with ``_update``)."""
    return _update_kernels(device_type)


def fused_update_available(device: torch.device | str) -> bool:
    """Whether ``SlotSGD`` can run on ``device``: a device type (the CPU, CUDA) where ``torch.compile`` works."""
    return _compiled_update(torch.device(device).type) is not None


def _give_back(held: dict[int, tuple[SlotLayer, HandOverGrad]]) -> None:
    """Put back the strategy each ``HandOverGrad`` replaced, where it is still installed (a layer switched since,
    say to ``AutogradGrad`` for DDP, keeps its new strategy), and forget the layers."""
    for layer, path in held.values():
        if layer.grad_path is path:
            layer.set_grad_path(path.previous)
        path.clear()
    held.clear()


class SlotSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose slot-layer scores are updated from dL/dW_eff without the K-sized gradient.

    ``layers`` are the model's slot layers; their scores must be among ``params``. While this optimiser is in
    charge, a slot layer's strategy is a ``HandOverGrad``: its backward leaves ``scores.grad`` unset and sums
    dL/dW_eff (*weight_shape) in the strategy instead; ``layer.score_grad()`` materialises the K-sized gradient for
    inspection. Layers on ``AutogradGrad`` (DDP) keep it and take SGD's step on their ordinary gradient.

    ``close()`` (or ``with SlotSGD(...) as opt:``, or dropping the optimiser) gives the layers their previous
    strategy back; a closed SlotSGD steps like plain SGD. A layer held by another open SlotSGD: ``ValueError``.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        layers: Iterable[SlotLayer],
        lr: float,
        momentum: float,
        weight_decay: float = 0.0,
    ) -> None:
        if momentum <= 0:
            raise ValueError("SlotSGD needs momentum > 0 (plain SGD covers momentum 0)")
        params = list(params)
        super().__init__(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused_kernels(params)
        )
        owned = {id(p) for group in self.param_groups for p in group["params"]}
        chosen = list({id(layer.scores): layer for layer in layers if id(layer.scores) in owned}.values())
        devices = {layer.scores.device.type for layer in chosen} or {"cpu"}
        missing = sorted(d for d in devices if _compiled_update(d) is None)
        if missing:
            raise RuntimeError(
                f"SlotSGD needs torch.compile on {', '.join(missing)}; check fused_update_available() first"
            )
        taken = [layer for layer in chosen if isinstance(layer.grad_path, HandOverGrad)]
        if taken:
            raise ValueError(
                f"{len(taken)} slot layer(s) already hand their gradient over to another SlotSGD; close() that "
                "optimiser (or build it in a with block) before handing its layers to a new one"
            )
        # scores id -> (layer, the HandOverGrad installed on it)
        self._held: dict[int, tuple[SlotLayer, HandOverGrad]] = {}
        for layer in chosen:
            if isinstance(layer.grad_path, AutogradGrad):
                continue  # asked for on purpose (DDP, torch.autograd.grad): SGD's step on the ordinary gradient
            path = HandOverGrad(layer.grad_path)
            layer.set_grad_path(path)
            self._held[id(layer.scores)] = (layer, path)
        # the finaliser holds the layers, not the optimiser: a dropped SlotSGD gives them back too
        self._finalizer = weakref.finalize(self, _give_back, self._held)
        self._finalizer.atexit = False

    def close(self) -> None:
        """Give every layer the strategy this optimiser replaced (idempotent)."""
        self._finalizer()

    def __enter__(self) -> SlotSGD:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = super().step(closure)  # every parameter with an ordinary gradient
        for group in self.param_groups:
            numbers = [float(group[key]) for key in ("lr", "momentum", "weight_decay")]
            hypers: dict[torch.device, torch.Tensor] = {}  # per device of the group's scores
            for scores in group["params"]:
                entry = self._held.get(id(scores))
                if entry is None or entry[1].pending is None:
                    continue
                layer, path = entry
                state = self.state[scores]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(scores)
                # a tensor, so that a new learning rate every step does not recompile the kernel; on the scores'
                # device, which the kernel (a Triton one on CUDA) reads it from
                hyper = hypers.get(scores.device)
                if hyper is None:
                    hyper = hypers[scores.device] = torch.tensor(numbers, device=scores.device)
                # the same rule eagerly, should the layer have moved to a device without a kernel since __init__
                update = _compiled_update(scores.device.type) or _update
                k = layer.k
                update(
                    scores.detach().view(k, -1),
                    layer.values.view(k, -1),
                    state["momentum_buffer"].view(k, -1),
                    path.pending.reshape(-1),
                    hyper,
                )
                path.clear()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        for _, path in self._held.values():
            path.clear()
