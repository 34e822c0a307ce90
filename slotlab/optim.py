"""Optimisers and learning-rate schedules named in configs.

Schedules are per-epoch factors of the base learning rate (epoch e counts from 0):
    constant  1
    cosine    (1 + cos(pi e / E)) / 2                       (Edge-Popup, Biprop, IWR)
    step      gamma ** (number of milestones <= e)           (Slot Machines VGG-19: x0.1 at 80)
    restarts  cosine over each segment between milestones    (Slot Machines paper: restarts at 25 and 75)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from slotlab.layers.slot import SlotLayer
from slotlab.slot_sgd import SlotSGD, fused_kernels, fused_update_available


class OptimConfig(Protocol):
    """The fields ``make_optimizer`` and ``make_scheduler`` read (``slotlab.config.RunConfig`` has them);
    read-only, so that frozen dataclasses qualify."""

    @property
    def optimizer(self) -> str: ...  # "sgd" or "adam"
    @property
    def lr(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def schedule(self) -> str: ...  # constant, cosine, step, restarts
    @property
    def epochs(self) -> int: ...
    @property
    def milestones(self) -> tuple[int, ...]: ...
    @property
    def gamma(self) -> float: ...


def lr_factor(
    schedule: str, epochs: int, milestones: Sequence[int] = (), gamma: float = 0.1
) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda epoch: 1.0
    if schedule == "cosine":
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "step":
        return lambda epoch: gamma ** bisect.bisect_right(list(milestones), epoch)
    if schedule == "restarts":
        bounds = [0, *[m for m in milestones if m < epochs], epochs]

        def restarted(epoch: int) -> float:
            segment = bisect.bisect_right(bounds, epoch) - 1
            start, end = bounds[segment], bounds[min(segment + 1, len(bounds) - 1)]
            return 0.5 * (1 + math.cos(math.pi * (epoch - start) / max(end - start, 1)))

        return restarted
    raise ValueError(f"unknown schedule {schedule!r}")


def make_optimizer(
    config: OptimConfig, parameters: list[torch.nn.Parameter], model: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over ``parameters``; weight decay applies to exactly these parameters.

    With ``model`` given, SGD with momentum over slot scores is ``SlotSGD``, which fuses the straight-through
    score gradient into the update (same rule, less memory traffic), where torch.compile works on the scores'
    device (the CPU, CUDA: ``fused_update_available``); plain SGD elsewhere. Move the model first.
    """
    fused = fused_kernels(parameters)
    if config.optimizer == "sgd" and model is not None and config.momentum > 0:
        held = {id(p) for p in parameters}
        layers = [m for m in model.modules() if isinstance(m, SlotLayer) and id(m.scores) in held]
        if layers and all(fused_update_available(layer.scores.device) for layer in layers):
            return SlotSGD(
                parameters, layers, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
        )
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def make_scheduler(
    config: OptimConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(config.schedule, config.epochs, config.milestones, config.gamma)
    )
