"""The found network as a first-class object: a plain PyTorch model, and a compact file.

``slotlab.layers.plain.to_plain`` gives the plain model (ordinary bias-free layers holding the weights the found
network uses at evaluation). ``save_compact`` stores what the method learned in a few bits per connection, plus
the config, whose weight seed regenerates every random value, and the few tensors that are neither (BatchNorm
running statistics); ``load_compact`` rebuilds the identical network from it. What a method stores per layer is
its own (``Method.encode_layer``): ceil(log2 K) bits of slot index for Slot Machines (Aladago & Torresani 2021,
Sec. 5), one bit of keep-mask for the mask methods.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slotlab.checkpoint import atomic_save, safe_load
from slotlab.config import RunConfig
from slotlab.data import dataset_info
from slotlab.errors import SlotlabError
from slotlab.layers.plain import to_plain
from slotlab.methods.base import entry_bytes

COMPACT_FORMAT = "slotlab-compact-1"


def save_compact(model: nn.Module, config: RunConfig, path: Path) -> int:
    """Write the compact form of a found network; returns the bytes of its stored selections (and, for masks,
    of the kept weights the seed does not regenerate)."""
    method = config.method_rule
    info = dataset_info(config.dataset)
    initial: dict[str, nn.Module] = {}

    def initial_layer(name: str) -> nn.Module:
        """The seeded layer ``name``, built only for a method whose entries need it (masks: the start weights)."""
        if not initial:
            initial.update(method.architecture(config, info.input_shape, info.num_classes).named_modules())
        return initial[name]

    layers = {}
    for name, module in model.named_modules():
        entry = method.encode_layer(module, lambda name=name: initial_layer(name))
        if entry is not None:
            layers[name] = entry
    if not layers:
        raise SlotlabError(
            f"the compact export stores what a method selects (slots, masks); a {config.method} network has no "
            f"selection: use the plain export"
        )
    rest = {
        key: value.cpu() for key, value in model.state_dict().items() if key.rpartition(".")[0] not in layers
    }
    atomic_save({"format": COMPACT_FORMAT, "config": config.to_dict(), "layers": layers, "state": rest}, path)
    return sum(entry_bytes(entry) for entry in layers.values())


def load_compact(path: Path) -> nn.Module:
    """Rebuild the found network (as a plain model) from a compact file."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != COMPACT_FORMAT:
        raise SlotlabError(
            f"{path} is not a slotlab compact file; make one with `python -m slotlab export RUN`"
        )
    config = RunConfig.from_dict(payload["config"])
    info = dataset_info(config.dataset)
    method = config.method_rule
    model = method.architecture(
        config, info.input_shape, info.num_classes
    )  # every random value, from the seed
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, entry in payload["layers"].items():
            method.decode_layer(modules[name], entry)
    unexpected = model.load_state_dict(payload["state"], strict=False).unexpected_keys
    if unexpected:
        raise SlotlabError(f"{path} holds tensors this model does not have ({unexpected[:3]}); wrong config?")
    return to_plain(model.eval())


def export_run(model: nn.Module, config: RunConfig, folder: Path) -> list[str]:
    """Write ``folder/plain.pt`` (a plain state dict) and, where the method selects, ``folder/compact.pt``;
    returns one line per file written."""
    plain = to_plain(model)
    atomic_save({"config": config.to_dict(), "state_dict": plain.state_dict()}, folder / "plain.pt")
    lines = [
        f"wrote {folder / 'plain.pt'} (a plain PyTorch state dict; build the model with method dense to load it)"
    ]
    method = config.method_rule
    if method.compact_export:
        stored = save_compact(model, config, folder / "compact.pt")
        connections = sum(p.numel() for p in plain.parameters() if p.dim() > 1)
        lines.append(f"wrote {folder / 'compact.pt'}: {method.describe_compact(config, stored, connections)}")
    return lines
