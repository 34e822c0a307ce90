"""Global-scope masks: one threshold on |scores| across all masked layers, and the annealed density for it.

Layer scope keeps the top d fraction of every layer; global scope keeps the top d fraction of all masked weights
together (Biprop's ``GlobalSubnetConv``, REFERENCE §3.1), so layers end with different densities. Exactly
floor(d * N + 1/2) weights are kept in all; ties at the threshold go to the earlier layer (module order), then to
the lower flat index, as in ``top_mask``.

Annealing (released biprop ``main.py``): for a target density d <= 1/2, the training density of epoch e (from 0)
falls from 1/2 to d over the first E epochs on a cubic,

    d_e = d + (1/2 - d) * (1 - e / E)^3    for e < E,   d afterwards,

to avoid layer collapse at high sparsity. The evaluation rule always uses the target d, so that every validation
score (and so the choice of the best epoch) is a score of the network at the density asked for.
"""

from __future__ import annotations

import torch
from torch import nn

from slotlab.layers.edge_popup import MaskedLayer, kept_count, top_mask
from slotlab.train import Callback, Trainer


def annealed_density(target: float, epoch: int, anneal_epochs: int) -> float:
    """Training density of ``epoch`` (0-based) under the cubic schedule; ``target`` when not annealed."""
    if target > 0.5 or epoch >= anneal_epochs:
        return target
    return target + (0.5 - target) * (1 - epoch / anneal_epochs) ** 3


class GlobalScope:
    """Computes the masks of a set of layers with one threshold; layers ask it through ``mask_of``.

    Masks are recomputed when any layer's scores change (tracked by their version counters, which every in-place
    torch operation bumps, optimiser steps and ``load_state_dict`` included) or when the density or mode changes;
    so one training forward computes them once, not once per layer.
    """

    def __init__(self, layers: list[MaskedLayer], density: float) -> None:
        self.layers = list(layers)
        self.density = density  # the target, used in evaluation
        self.train_density = density  # set by DensityAnnealing
        self.total = sum(layer.scores.numel() for layer in self.layers)
        self._key: tuple | None = None
        self._masks: list[torch.Tensor] = []

    def kept(self, training: bool) -> int:
        return kept_count(self.train_density if training else self.density, self.total)

    @torch.no_grad()
    def masks(self, training: bool) -> list[torch.Tensor]:
        key = (
            training,
            self.train_density,
            tuple((layer.scores._version, layer.scores.data_ptr()) for layer in self.layers),
        )
        if key != self._key:
            magnitude = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in self.layers])
            flat = top_mask(magnitude, self.kept(training))
            self._masks = [
                m.view(layer.weight_shape)
                for m, layer in zip(
                    flat.split([layer.scores.numel() for layer in self.layers]), self.layers, strict=True
                )
            ]
            self._key = key
        return self._masks

    def mask_of(self, layer: MaskedLayer) -> torch.Tensor:
        index = next(i for i, other in enumerate(self.layers) if other is layer)
        return self.masks(layer.training)[index]


def attach_global_scope(model: nn.Module, density: float) -> GlobalScope:
    """Make every masked layer of ``model`` take its mask from one shared global threshold."""
    layers = [m for m in model.modules() if isinstance(m, MaskedLayer)]
    scope = GlobalScope(layers, density)
    for layer in layers:
        layer.global_scope = scope
    return scope


def global_scope_of(model: nn.Module) -> GlobalScope | None:
    for m in model.modules():
        if isinstance(m, MaskedLayer) and m.global_scope is not None:
            return m.global_scope
    return None


class DensityAnnealing(Callback):
    """Sets the global scope's training density for each epoch (stateless: a function of the epoch)."""

    def __init__(self, anneal_epochs: int) -> None:
        self.anneal_epochs = anneal_epochs

    def _set(self, trainer: Trainer) -> None:
        scope = global_scope_of(trainer.model)
        if scope is not None:
            scope.train_density = annealed_density(scope.density, trainer.epoch, self.anneal_epochs)

    def on_train_start(self, trainer: Trainer) -> None:
        self._set(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        self._set(trainer)  # trainer.epoch now counts the finished epoch: the next one's density
