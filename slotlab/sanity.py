"""Sanity controls for a found mask, at matched density (Zhou et al. 2019, "Deconstructing Lottery Tickets").

Each takes a masked network (Edge-Popup, Biprop, with or without recycling) and returns a modified copy:

    random_mask       same weights, a uniformly random mask with the same number of kept weights per layer
                      (a random subnetwork: what the learned mask is worth)
    shuffled_weights  same mask, each layer's weight values permuted among all its positions
                      (is the mask tuned to the values it found, or only to its density?)
    signs_only        same mask, kept weights replaced by sign(W) * mean |W| over the kept weights
                      (do the magnitudes matter? for Biprop this changes nothing)

All randomness comes from generators seeded with ``stream_seed``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.init import stream_seed
from slotlab.layers.edge_popup import MaskedLayer


def _layers(model: nn.Module) -> list[MaskedLayer]:
    layers = [m for m in model.modules() if isinstance(m, MaskedLayer)]
    if not layers:
        raise SlotlabError("sanity controls need a masked network (edge-popup, biprop, random-mask)")
    return layers


@torch.no_grad()
def set_mask(layer: MaskedLayer, mask: torch.Tensor) -> None:
    """Make ``layer``'s evaluation rule select ``mask``: |score| 1 where kept, 0 elsewhere.

    Exact for layer scope when ``mask`` keeps ``layer.kept`` weights, and for global scope when the masks of all
    layers together keep the global count (ties at 1 are all kept).
    """
    layer.scores.copy_(mask.to(layer.scores.dtype))


@torch.no_grad()
def random_mask(model: nn.Module, seed: int = 0) -> nn.Module:
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(stream_seed("sanity-random-mask", seed))
    layers = _layers(copied)
    counts = [int(layer.selection().sum()) for layer in layers]
    for layer, kept in zip(layers, counts, strict=True):
        order = torch.randperm(layer.scores.numel(), generator=generator)
        mask = torch.zeros(layer.scores.numel(), dtype=torch.bool)
        mask[order[:kept]] = True
        set_mask(layer, mask.view(layer.weight_shape).to(layer.scores.device))
    return copied


@torch.no_grad()
def shuffled_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(stream_seed("sanity-shuffle", seed))
    for layer in _layers(copied):
        flat = layer.weight.view(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        flat.copy_(flat[order].clone())
    return copied


@torch.no_grad()
def signs_only(model: nn.Module) -> nn.Module:
    copied = copy.deepcopy(model)
    for layer in _layers(copied):
        mask = layer.selection()
        magnitude = layer.weight.abs()[mask].mean() if mask.any() else layer.weight.new_zeros(())
        layer.weight.copy_(torch.where(layer.weight >= 0, magnitude, -magnitude))
    return copied


def controls(model: nn.Module, seed: int = 0) -> dict[str, nn.Module]:
    """The found network and its three controls, by name."""
    return {
        "found": model,
        "random mask": random_mask(model, seed),
        "shuffled weights": shuffled_weights(model, seed),
        "signs only": signs_only(model),
    }
