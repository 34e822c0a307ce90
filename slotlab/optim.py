"""Optimisers and learning-rate schedules named in configs.

Schedules are per-epoch factors of the base learning rate (epoch e counts from 0):
    constant  1
    cosine    (1 + cos(pi e / E)) / 2                       (Edge-Popup, Biprop, IWR)
    step      gamma ** (number of milestones <= e)           (Slot Machines VGG-19: x0.1 at 80)
    restarts  cosine over each segment between milestones    (Slot Machines paper: restarts at 25 and 75)

A linear warm-up of W epochs comes first where asked: factor (e + 1) / W for e < W, then the schedule; cosine then
decays over the remaining E - W epochs, (1 + cos(pi (e - W) / (E - W))) / 2, as hidden-networks'
``utils/schedulers.py`` ``cosine_lr`` (the ImageNet recipe of Edge-Popup and Biprop: 5 warm-up epochs); the step
and restarts milestones stay absolute epochs.

``norm_decay`` False puts BatchNorm parameters and biases in a parameter group without weight decay (the large-scale
recipe's "no BN decay"); ``nesterov`` is torch's Nesterov momentum.
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
    @property
    def warmup_epochs(self) -> int: ...  # linear warm-up epochs before the schedule (0: none)
    @property
    def nesterov(self) -> bool: ...
    @property
    def norm_decay(self) -> bool: ...  # weight decay on BatchNorm parameters and biases too


def lr_factor(
    schedule: str, epochs: int, milestones: Sequence[int] = (), gamma: float = 0.1, warmup: int = 0
) -> Callable[[int], float]:
    """The factor of the base learning rate in epoch ``epoch`` (from 0), after ``warmup`` linear warm-up epochs."""
    base = _schedule_factor(schedule, epochs, milestones, gamma, warmup)
    if warmup <= 0:
        return base
    return lambda epoch: (epoch + 1) / warmup if epoch < warmup else base(epoch)


def _schedule_factor(
    schedule: str, epochs: int, milestones: Sequence[int], gamma: float, warmup: int
) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda epoch: 1.0
    if schedule == "cosine":
        span = max(epochs - warmup, 1)
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / span))
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


def norm_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the parameters of BatchNorm layers and of biases (1-D parameters named bias)."""
    ids = set()
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        for name, param in module.named_parameters(recurse=False):
            if is_norm or name == "bias":
                ids.add(id(param))
    return ids


def parameter_groups(
    config: OptimConfig, parameters: list[torch.nn.Parameter], model: torch.nn.Module | None
) -> list[torch.nn.Parameter] | list[dict]:
    """``parameters``, or with ``norm_decay`` False two groups: the rest (weight decay) and the BatchNorm
    parameters and biases (none)."""
    if config.norm_decay or config.weight_decay == 0 or model is None:
        return parameters
    norms = norm_parameters(model)
    decayed = [p for p in parameters if id(p) not in norms]
    free = [p for p in parameters if id(p) in norms]
    return [g for g in ({"params": decayed}, {"params": free, "weight_decay": 0.0}) if g["params"]]


def make_optimizer(
    config: OptimConfig, parameters: list[torch.nn.Parameter], model: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over ``parameters``; weight decay applies to exactly these parameters.

    With ``model`` given, SGD with momentum over slot scores is ``SlotSGD``, which fuses the straight-through
    score gradient into the update (same rule, less memory traffic), where torch.compile works on the scores'
    device (the CPU, CUDA: ``fused_update_available``); plain SGD elsewhere. Move the model first.
    """
    fused = fused_kernels(parameters)
    groups = parameter_groups(config, parameters, model)
    # SlotSGD is plain heavy-ball momentum over one group: other updates take torch's SGD
    simple = not config.nesterov and groups is parameters
    if config.optimizer == "sgd" and model is not None and config.momentum > 0 and simple:
        held = {id(p) for p in parameters}
        layers = [m for m in model.modules() if isinstance(m, SlotLayer) and id(m.scores) in held]
        if layers and all(fused_update_available(layer.scores.device) for layer in layers):
            return SlotSGD(
                parameters, layers, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
            fused=fused,
        )
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def make_scheduler(
    config: OptimConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_factor(config.schedule, config.epochs, config.milestones, config.gamma, config.warmup_epochs),
    )
