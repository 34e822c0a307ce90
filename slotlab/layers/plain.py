"""The found network as a plain PyTorch model (the export of every method, and the start of finetuning).

``to_plain`` replaces every random-weight layer by an ordinary bias-free ``nn.Linear``/``nn.Conv2d`` holding the
weight the layer uses at evaluation (for slots: the greedy selection; for masks: the masked or alpha-scaled
weight), so its outputs equal the found network's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slotlab.layers.dense import DenseConv2d, DenseLinear
from slotlab.layers.edge_popup import MaskedLayer
from slotlab.layers.slot import SlotLayer


def _plain_layer(layer: nn.Module) -> nn.Module | None:
    """The ordinary layer of one slot or masked layer, holding the weight it uses at evaluation; None otherwise."""
    if not isinstance(layer, (MaskedLayer, SlotLayer)):
        return None
    shape = layer.weight_shape  # (out, in) or (out, in, k, k)
    if layer.is_conv:
        plain = DenseConv2d(shape[1], shape[0], shape[-1], layer.stride, layer.padding, "glorot")
    else:
        plain = DenseLinear(shape[1], shape[0])
    with torch.no_grad():
        was_training = layer.training
        layer.eval()  # the evaluation rule: greedy selection, the target density of a global scope
        plain.weight.copy_(layer.effective_weight().detach())
        layer.train(was_training)
    return plain.to(layer.scores.device)


def to_plain(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose random-weight layers are ordinary layers with the found weights."""
    plain = copy.deepcopy(model)
    for name, module in list(plain.named_modules()):
        replacement = _plain_layer(module)
        if replacement is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        setattr(parent, child, replacement)
    return plain
