"""The found network as a first-class object: a plain PyTorch model, and a compact file.

``to_plain`` replaces every random-weight layer by an ordinary bias-free ``nn.Linear``/``nn.Conv2d`` holding the
weight the layer uses at evaluation (for slots: the greedy selection), so its outputs equal the found network's.

``save_compact`` stores a slot network in ceil(log2 K) bits per connection (the selected slot index, packed),
plus the config (whose weight seed regenerates all K random values) and the few non-random tensors (BatchNorm
running statistics). ``load_compact`` rebuilds the identical network from it.

Masked networks (Edge-Popup, Biprop, random-mask) are stored the same way with 1 bit per connection: the
keep-mask as a bitset. Weights that no longer equal what the weight seed regenerates (recycled or IteRand-redrawn,
or trained for random-mask) are stored for the *kept* positions only: a recycled value as the index of the
initial weight it is a copy of (IWR's "no new random values" argument), any other value as a float.

Biprop networks export as what they compute: a **ternary** network, weights in {-alpha, 0, +alpha} with one alpha
per layer (``BipropLayer.ternary()`` gives alpha and the int8 codes); not a binary one (REFERENCE §3.7).
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
from slotlab.layers.edge_popup import MaskedLayer
from slotlab.layers.slot import SlotConv2d, SlotLayer, SlotLinear, greedy_index

COMPACT_FORMAT = "slotlab-compact-1"


def _plain_layer(layer: nn.Module) -> nn.Module | None:
    if isinstance(layer, MaskedLayer):
        shape = layer.weight_shape
        if layer.is_conv:
            plain = DenseConv2d(shape[1], shape[0], shape[-1], layer.stride, layer.padding, "glorot")
        else:
            plain = DenseLinear(shape[1], shape[0])
        with torch.no_grad():
            was_training = layer.training
            layer.eval()  # the evaluation rule: the target density of a global scope
            plain.weight.copy_(layer.effective_weight().detach())
            layer.train(was_training)
        return plain.to(layer.weight.device)
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


def _masked_entry(name: str, layer: MaskedLayer, initial: torch.Tensor) -> dict:
    """Bitset of the keep-mask, and the kept weights that differ from the seed's (by source index or value)."""
    mask = layer.selection().reshape(-1).cpu()
    weight = layer.weight.detach().reshape(-1).cpu()
    initial = initial.reshape(-1).cpu()
    changed = torch.nonzero(mask & (weight != initial)).reshape(-1)
    values = weight[changed]
    ordered, order = torch.sort(initial)
    at = torch.searchsorted(ordered, values).clamp(max=max(len(ordered) - 1, 0))
    found = ordered[at] == values if len(ordered) else torch.zeros(0, dtype=torch.bool)
    return {
        "bits": 1,
        "count": mask.numel(),
        "packed": pack_indices(mask, 1),
        "copied_at": changed[found].to(torch.int32),
        "copied_from": order[at[found]].to(torch.int32),
        "new_at": changed[~found].to(torch.int32),
        "new_values": values[~found],
    }


def _entry_bytes(entry: dict) -> int:
    return sum(v.numel() * v.element_size() for v in entry.values() if isinstance(v, torch.Tensor))


def save_compact(model: nn.Module, config, path: Path) -> int:
    """Write the compact form of a slots or masked network; returns the bytes of packed selections and
    stored weights (masks: 1 bit per connection, plus the kept weights the seed does not regenerate)."""
    from slotlab.data import dataset_info
    from slotlab.methods import build

    layers, packed_bytes = {}, 0
    stored = set()
    initial_model = None
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            if initial_model is None:
                info = dataset_info(config.dataset)
                initial_model = dict(build(config, info.input_shape, info.num_classes).named_modules())
            layers[name] = _masked_entry(name, module, initial_model[name].weight.detach())
            packed_bytes += _entry_bytes(layers[name])
            stored.add(name)
        elif isinstance(module, SlotLayer):
            if module.eval_selection != "greedy":
                raise SlotlabError(
                    f"layer {name} evaluates with sampled selection; the compact export needs greedy"
                )
            bits = bits_per_connection(module.k)
            index = greedy_index(module.scores.detach())
            packed = pack_indices(index, bits)
            layers[name] = {"bits": bits, "count": index.numel(), "packed": packed}
            packed_bytes += packed.numel()
            stored.add(name)
    if not layers:
        raise SlotlabError(
            "the compact export stores slot selections or masks; this model has neither (a dense model: use "
            "the plain export)"
        )
    rest = {
        key: value.cpu() for key, value in model.state_dict().items() if key.rpartition(".")[0] not in stored
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
            if isinstance(layer, MaskedLayer):
                flat = layer.weight.view(-1)
                copies = flat[entry["copied_from"].long()].clone()  # sources index the *initial* weights
                flat[entry["new_at"].long()] = entry["new_values"].to(flat.dtype)
                flat[entry["copied_at"].long()] = copies
                layer.scores.copy_(
                    index.to(layer.scores.dtype)
                )  # |score| 1 where kept: the rule picks the mask
                continue
            layer.scores.zero_().scatter_(0, index.unsqueeze(0), 1.0)
    unexpected = model.load_state_dict(payload["state"], strict=False).unexpected_keys
    if unexpected:
        raise SlotlabError(f"{path} holds tensors this model does not have ({unexpected[:3]}); wrong config?")
    return to_plain(model.eval())
