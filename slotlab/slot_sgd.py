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
(``torch.compile``, inductor's C++ backend), reading each K-sized tensor once.

From zero, the first step gives mu * 0 + g = g exactly, as SGD's first step (which copies the gradient). The
momentum buffer lives in the optimiser state under SGD's own key, so checkpoints are interchangeable with plain
SGD. Parameters that are not slot scores, and slot scores that received an ordinary gradient (a DDP run turns the
hand-over off), take plain SGD's step. Where the compiler is not available, ``make_optimizer`` keeps plain SGD.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn

from slotlab.compiled import checked_compile
from slotlab.layers.slot import SlotLayer
from slotlab.optim import fused_kernels


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


@functools.cache
def _compiled_update():
    """The update compiled once per process, for any n; None where compiling fails (no C++ compiler, say)."""
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.rand((2, 37), generator=gen) for _ in range(3)]  # K = 2: not duck-sized with hyper
    hyper = torch.tensor([0.1, 0.9, 1e-4])
    return checked_compile(_update, *tensors, torch.randn(37, generator=gen), hyper)


def fused_update_available(device: torch.device | str) -> bool:
    """Whether ``SlotSGD`` can run on ``device``: the CPU with a working ``torch.compile``."""
    return torch.device(device).type == "cpu" and _compiled_update() is not None


class SlotSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose slot-layer scores are updated from dL/dW_eff without the K-sized gradient.

    ``layers`` are the model's slot layers; their scores must be among ``params``. While this optimiser is in
    charge, a slot layer's backward leaves ``scores.grad`` unset and accumulates dL/dW_eff in
    ``layer.pending_grad`` instead; ``layer.score_grad()`` materialises the K-sized gradient for inspection.
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
        self.update = _compiled_update()
        if self.update is None:
            raise RuntimeError("SlotSGD needs torch.compile; check fused_update_available() first")
        held = {id(p) for group in self.param_groups for p in group["params"]}
        self.layers: dict[int, SlotLayer] = {}
        for layer in layers:
            if id(layer.scores) in held:
                self.layers[id(layer.scores)] = layer
                layer.hand_over_grad = True

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = super().step(closure)  # every parameter with an ordinary gradient
        for group in self.param_groups:
            # a tensor, so that a new learning rate every step does not recompile the kernel
            hyper = torch.tensor([float(group[key]) for key in ("lr", "momentum", "weight_decay")])
            for scores in group["params"]:
                layer = self.layers.get(id(scores))
                if layer is None or layer.pending_grad is None:
                    continue
                state = self.state[scores]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(scores)
                k = layer.k
                self.update(
                    scores.detach().view(k, -1),
                    layer.values.view(k, -1),
                    state["momentum_buffer"].view(k, -1),
                    layer.pending_grad.reshape(-1),
                    hyper,
                )
                layer.pending_grad = None
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        for layer in self.layers.values():
            layer.pending_grad = None
