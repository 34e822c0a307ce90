"""Sanity controls for a found mask, at matched density (Zhou et al. 2019, "Deconstructing Lottery Tickets").

Each takes a masked network (Edge-Popup, Biprop, with or without recycling) and returns a modified copy:

    random_mask       same weights, a uniformly random mask with the same number of kept weights per layer
                      (a random subnetwork: what the learned mask is worth)
    shuffled_weights  same mask, each layer's weight values permuted among all its positions
                      (is the mask tuned to the values it found, or only to its density?)
    signs_only        same mask, kept weights replaced by sign(W) * mean |W| over the kept weights
                      (do the magnitudes matter? for Biprop this changes nothing)

For a Slot Machine (Aladago & Torresani 2021) and a LaPerm network (Qiu & Suda 2020), the same questions:

    random_selection      slots: every connection picks one of its K values uniformly at random (random-slots on
                          the found network's values: what the learned choice is worth)
    shuffled_selection    slots: the selected values permuted among all positions of their layer (a plain
                          network: is the choice tuned to where each value sits?)
    random_row_permutation  LaPerm: every row randomly permuted (each row keeps its values; the learned order
                          against a random one, Qiu & Suda's no-learning baseline)
    shuffled_layer_values   LaPerm: every weight tensor's values permuted across the whole tensor (rows no
                          longer keep their values)

All randomness comes from generators seeded with ``stream_seed``: a control is the same for one seed and differs
across seeds.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.init import stream_seed
from slotlab.laperm import as_rows, permutable_parameters, randomly_permute_rows
from slotlab.layers.edge_popup import MaskedLayer
from slotlab.layers.plain import to_plain
from slotlab.layers.slot import SlotLayer


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


def _slot_layers(model: nn.Module) -> list[SlotLayer]:
    layers = [m for m in model.modules() if isinstance(m, SlotLayer)]
    if not layers:
        raise SlotlabError("slot controls need a slot machine (method slots or random-slots)")
    return layers


@torch.no_grad()
def random_selection(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of the slot machine whose every connection uses a uniformly random one of its K values."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(stream_seed("sanity-random-selection", seed))
    for layer in _slot_layers(copied):
        index = torch.randint(0, layer.k, layer.weight_shape, generator=generator).to(layer.scores.device)
        layer.scores.zero_().scatter_(0, index.unsqueeze(0), 1.0)  # greedy selection now picks ``index``
        layer.eval_selection = "greedy"
    return copied


@torch.no_grad()
def shuffled_selection(model: nn.Module, seed: int = 0) -> nn.Module:
    """A plain copy of the found network with each layer's selected values permuted among its positions."""
    plain = to_plain(copy.deepcopy(model).eval())
    generator = torch.Generator().manual_seed(stream_seed("sanity-shuffled-selection", seed))
    layers = [m for m in plain.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in layers:
        flat = layer.weight.view(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        flat.copy_(flat[order].clone())
    return plain


@torch.no_grad()
def random_row_permutation(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of a (LaPerm) network with every row of every weight tensor randomly permuted."""
    copied = copy.deepcopy(model)
    if not permutable_parameters(copied):
        raise SlotlabError("permutation controls need a network with weight tensors (method laperm)")
    return randomly_permute_rows(copied, stream_seed("sanity-row-permutation", seed))


@torch.no_grad()
def shuffled_layer_values(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of a (LaPerm) network with each weight tensor's values permuted across the whole tensor."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(stream_seed("sanity-layer-shuffle", seed))
    named = permutable_parameters(copied)
    if not named:
        raise SlotlabError("permutation controls need a network with weight tensors (method laperm)")
    for _, param in named:
        flat = as_rows(param).reshape(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        param.copy_(flat[order].view(param.shape))
    return copied


def slot_controls(model: nn.Module, seed: int = 0) -> dict[str, nn.Module]:
    """A slot machine and its controls, by name."""
    return {
        "found": model,
        "random selection": random_selection(model, seed),
        "shuffled selection": shuffled_selection(model, seed),
    }


def permutation_controls(model: nn.Module, seed: int = 0) -> dict[str, nn.Module]:
    """A LaPerm network and its controls, by name."""
    return {
        "found": model,
        "random row permutation": random_row_permutation(model, seed),
        "shuffled layer values": shuffled_layer_values(model, seed),
    }


def controls(model: nn.Module, seed: int = 0) -> dict[str, nn.Module]:
    """The found network and its controls, by name: a masked network's three, a slot machine's two
    (``slot_controls``); for a LaPerm network call ``permutation_controls``."""
    if any(isinstance(m, SlotLayer) for m in model.modules()):
        return slot_controls(model, seed)
    return {
        "found": model,
        "random mask": random_mask(model, seed),
        "shuffled weights": shuffled_weights(model, seed),
        "signs only": signs_only(model),
    }
