"""The found network as a first-class object: a plain PyTorch model, and a compact file.

``to_plain`` replaces every random-weight layer by an ordinary bias-free ``nn.Linear``/``nn.Conv2d`` holding the
weight the layer uses at evaluation (for slots: the greedy selection), so its outputs equal the found network's.

``save_compact`` stores a slot network in ceil(log2 K) bits per connection (the selected slot index, packed),
plus the config (whose weight seed regenerates all K random values) and the few non-random tensors (BatchNorm
running statistics). ``load_compact`` rebuilds the identical network from it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from slotlab.checkpoint import atomic_save, safe_load
from slotlab.errors import SlotlabError
from slotlab.layers.dense import DenseConv2d, DenseLinear
from slotlab.layers.slot import SlotConv2d, SlotLayer, SlotLinear, greedy_index

COMPACT_FORMAT = "slotlab-compact-1"


def _plain_layer(layer: nn.Module) -> nn.Module | None:
    if isinstance(layer, SlotLinear):
        plain = DenseLinear(layer.in_features, layer.out_features)
    elif isinstance(layer, SlotConv2d):
        plain = DenseConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.weight_shape[-1],
            layer.stride,
            layer.padding,
            "glorot",
        )
    else:
        return None
    with torch.no_grad():
        was_training = layer.training
        layer.eval()  # the evaluation rule: greedy unless the layer was told otherwise
        plain.weight.copy_(layer.effective_weight().detach())
        layer.train(was_training)
    return plain.to(layer.values.device)


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


def bits_per_connection(k: int) -> int:
    return math.ceil(math.log2(k)) if k > 1 else 0


def pack_indices(index: torch.Tensor, bits: int) -> torch.Tensor:
    """Flattened int indices < 2**bits -> uint8 bitstream of ceil(n * bits / 8) bytes (little-endian bits)."""
    flat = index.reshape(-1).to(torch.int64).cpu()
    if bits == 0:
        return torch.zeros(0, dtype=torch.uint8)
    stream = ((flat.unsqueeze(1) >> torch.arange(bits)) & 1).reshape(-1).to(torch.uint8)
    stream = torch.cat([stream, stream.new_zeros((-len(stream)) % 8)])
    return (stream.view(-1, 8) << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def unpack_indices(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of ``pack_indices``: the first ``count`` indices as int64."""
    if bits == 0:
        return torch.zeros(count, dtype=torch.int64)
    stream = ((packed.to(torch.int64).unsqueeze(1) >> torch.arange(8)) & 1).reshape(-1)[: count * bits]
    return (stream.view(count, bits) << torch.arange(bits)).sum(1)


def save_compact(model: nn.Module, config, path: Path) -> int:
    """Write the compact form of a slots network; returns the number of bytes of packed selections."""
    layers, packed_bytes = {}, 0
    slot_names = set()
    for name, module in model.named_modules():
        if isinstance(module, SlotLayer):
            if module.eval_selection != "greedy":
                raise SlotlabError(
                    f"layer {name} evaluates with sampled selection; the compact export needs greedy"
                )
            bits = bits_per_connection(module.k)
            index = greedy_index(module.scores.detach())
            packed = pack_indices(index, bits)
            layers[name] = {"bits": bits, "count": index.numel(), "packed": packed}
            packed_bytes += packed.numel()
            slot_names.add(name)
    if not layers:
        raise SlotlabError("the compact export stores slot selections; this model has no slot layers")
    rest = {
        key: value.cpu()
        for key, value in model.state_dict().items()
        if key.rpartition(".")[0] not in slot_names
    }
    atomic_save({"format": COMPACT_FORMAT, "config": config.to_dict(), "layers": layers, "state": rest}, path)
    return packed_bytes


def load_compact(path: Path) -> nn.Module:
    """Rebuild the found network (as a plain model) from a compact file."""
    from slotlab.config import RunConfig
    from slotlab.data import dataset_info
    from slotlab.methods import build

    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != COMPACT_FORMAT:
        raise SlotlabError(
            f"{path} is not a slotlab compact file; make one with `python -m slotlab export RUN`"
        )
    config = RunConfig.from_dict(payload["config"])
    info = dataset_info(config.dataset)
    model = build(
        config, info.input_shape, info.num_classes
    )  # regenerates every K random value from the seed
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, entry in payload["layers"].items():
            layer = modules[name]
            index = unpack_indices(entry["packed"], entry["bits"], entry["count"]).view(layer.weight_shape)
            layer.scores.zero_().scatter_(0, index.unsqueeze(0), 1.0)
    unexpected = model.load_state_dict(payload["state"], strict=False).unexpected_keys
    if unexpected:
        raise SlotlabError(f"{path} holds tensors this model does not have ({unexpected[:3]}); wrong config?")
    return to_plain(model.eval())
