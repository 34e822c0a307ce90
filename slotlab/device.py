"""The one place where slotlab picks a device: CUDA when available, the CPU otherwise."""

from __future__ import annotations

import torch

from slotlab.errors import SlotlabError


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """Return ``requested`` if given, else CUDA when available, else the CPU."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SlotlabError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SlotlabError(
            f"device {requested!r} was asked for but CUDA is not available; use --device cpu or auto"
        )
    return device
