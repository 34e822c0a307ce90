"""Training cost of a run: FLOPs per training step and per run, seconds, and the bits that store the found network.

The Slot Machines paper (Aladago & Torresani 2021, Sec. 4.3, "accuracy vs. cost" against learned weights) compares
methods by what a step costs and by what must be stored; this module counts both for every method.

    cost = training_cost(RunConfig(method="slots", k=8))
    cost.step.total, cost.run_flops, cost.stored_bits

FLOPs of the network's forward and backward are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one
training step of the run's network at its batch size (2 per multiply-add of every matmul and convolution; the
backward counts the gradients of the inputs and of whatever weight requires a gradient, so a frozen weight costs
no weight-gradient FLOPs). Elementwise work is not counted there; a method's own work is added by hand, one FLOP
per element and operation, per step:

| layer              | forward extra                                   | backward extra                          |
|--------------------|-------------------------------------------------|-----------------------------------------|
| slots (K values)   | K per connection (choose among K, then gather)  | K per connection (straight-through grad)|
| masks (n weights)  | 3 per weight (top-k threshold by a linear-time  | 1 per weight (straight-through grad)    |
|                    | selection, compare, W * M)                      |                                         |
| LaPerm (rows of r) | r log2 r per weight / sync period (row sort)    |                                         |
| optimiser update   | SGD: 2 per trained value, +2 momentum, +2 decay; Adam: 10                 |                |

Per run: steps per epoch x epochs x step FLOPs (periodic work such as recycling, a few passes per epoch, is left
out). Stored bits: the compact export (``slotlab.export``: ceil(log2 K) bits per connection for slots, 1 for a mask,
plus what the seed does not regenerate) where the method has one, else 32 bits per parameter.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slotlab.config import RunConfig
from slotlab.data import dataset_info
from slotlab.errors import SlotlabError
from slotlab.export import save_compact
from slotlab.layers.edge_popup import MaskedLayer
from slotlab.layers.slot import SlotLayer

# training examples of the official training sets (before the validation split is taken out)
TRAIN_EXAMPLES = {
    "mnist": 60_000,
    "fashion-mnist": 60_000,
    "cifar10": 50_000,
    "synthetic": 2_000,
    "synthetic-cifar": 2_000,
    "imagenet": 1_281_167,
}


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step, by part."""

    forward: int  # the network's matmuls and convolutions (FlopCounterMode)
    backward: int  # their gradients (FlopCounterMode)
    method: int  # the method's own elementwise work (selection, top-k, straight-through, syncs)
    update: int  # the optimiser's update

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.method + self.update


@dataclass(frozen=True)
class TrainingCost:
    """What a run costs: FLOPs per step and per run, stored bits, and the seconds it took (when measured)."""

    step: StepFlops
    steps_per_epoch: int
    epochs: int
    stored_bits: int
    seconds: float | None = None

    @property
    def run_flops(self) -> int:
        return self.step.total * self.steps_per_epoch * self.epochs

    def as_row(self) -> dict[str, float | int | None]:
        return {
            "forward_flops": self.step.forward,
            "backward_flops": self.step.backward,
            "method_flops": self.step.method,
            "update_flops": self.step.update,
            "step_flops": self.step.total,
            "run_flops": self.run_flops,
            "stored_bits": self.stored_bits,
            "seconds": self.seconds,
        }


def network_flops(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(forward, backward) FLOPs of one cross-entropy training step of ``model`` on ``inputs`` (B, C, H, W), as
    ``FlopCounterMode`` counts them. Gradients are left in ``model``; zero them before training on."""
    model.train()
    with FlopCounterMode(display=False) as forward:
        loss = F.cross_entropy(model(inputs), labels)
    if not loss.requires_grad:  # nothing to train (a fixed baseline such as random-permutation): no backward
        return forward.get_total_flops(), 0
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return forward.get_total_flops(), backward.get_total_flops()


def method_flops(model: nn.Module, sync_period: int = 0) -> int:
    """The method's own elementwise work per step (table in the module docstring); ``sync_period`` > 0: LaPerm's
    row sort every that many steps, over every weight tensor of two or more dimensions."""
    total = 0
    for module in model.modules():
        if isinstance(module, SlotLayer):
            total += 2 * module.k * math.prod(module.weight_shape)
        elif isinstance(module, MaskedLayer):
            total += 4 * math.prod(module.weight_shape)
    if sync_period > 0:
        for param in model.parameters():
            if param.dim() > 1:
                row = math.prod(param.shape[1:])
                total += math.ceil(param.numel() * math.log2(max(row, 2)) / sync_period)
    return total


def update_flops(model: nn.Module, optimizer: str, momentum: float, weight_decay: float) -> int:
    """FLOPs of one optimiser update over the trained values: SGD 2 per value (+2 with momentum, +2 with weight
    decay), Adam 10."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if optimizer == "adam":
        return 10 * trained
    return trained * (2 + 2 * (momentum > 0) + 2 * (weight_decay > 0))


def stored_bits(model: nn.Module, config: RunConfig) -> int:
    """Bits that store the found network: the compact export's bytes where the method has one, else 32 bits per
    parameter of the plain network."""
    if config.method_rule.compact_export:
        with tempfile.TemporaryDirectory() as folder:
            return 8 * save_compact(model, config, Path(folder) / "compact.pt")
    return 32 * sum(p.numel() for p in model.parameters())


def steps_per_epoch(config: RunConfig) -> int:
    """Optimiser steps of one epoch of ``config``: its training examples over its batch size (the last, partial
    batch counts)."""
    if config.train_size:
        examples = config.train_size
    else:
        if config.dataset not in TRAIN_EXAMPLES:
            raise SlotlabError(f"no training-set size known for {config.dataset}; give the run a train_size")
        info = dataset_info(config.dataset)
        examples = TRAIN_EXAMPLES[config.dataset] - (
            info.val_size if config.val_size < 0 else config.val_size
        )
    return math.ceil(examples / config.batch_size)


def _initial_network(config: RunConfig) -> nn.Module:
    if config.method_rule.source_methods:
        raise SlotlabError(
            f"method {config.method} starts from another run; count the cost of the same architecture with "
            f"method dense (training the weights is what it does)"
        )
    info = dataset_info(config.dataset)
    return config.method_rule.initial_network(config, info.input_shape, info.num_classes)


def step_flops(config: RunConfig, model: nn.Module | None = None) -> StepFlops:
    """FLOPs of one training step of ``config``, counted on its initial network (or ``model``) at its batch
    size."""
    model = _initial_network(config) if model is None else model
    info = dataset_info(config.dataset)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.rand((config.batch_size, *info.input_shape), generator=gen)
    labels = torch.randint(0, info.num_classes, (config.batch_size,), generator=gen)
    forward, backward = network_flops(model, inputs, labels)
    model.zero_grad(set_to_none=True)
    sync = int(getattr(config.options, "sync_period", 0) or 0) if config.method == "laperm" else 0
    return StepFlops(
        forward,
        backward,
        method_flops(model, sync),
        update_flops(model, config.optimizer, config.momentum, config.weight_decay),
    )


def training_cost(config: RunConfig, seconds: float | None = None) -> TrainingCost:
    """The cost of a run of ``config``, counted on its initial network at its batch size (``seconds``: the measured
    training time, e.g. a finished run's ``train_seconds``). A finetune needs its source run; count its source's
    method with ``method="dense"`` instead."""
    model = _initial_network(config)
    step = step_flops(config, model)
    return TrainingCost(
        step, steps_per_epoch(config), config.epochs, stored_bits(model.eval(), config), seconds
    )
