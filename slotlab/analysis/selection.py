"""Which values a Slot Machine selects (Aladago & Torresani 2021, their analysis of the selected weights).

For each connection the K random values W[k, ...] are fixed and the learned choice is k* (greedy: the argmax of
the scores). Three views of that choice, per layer:

* ``value_histograms``: the distribution of the selected values W[k*] against the initial value distribution
  (all K values); the paper reports the selected ones shifting to large magnitudes.
* ``magnitude_ranks``: the rank of |W[k*]| among the connection's K magnitudes, 0 = smallest, K - 1 = largest;
  a choice blind to magnitude puts 1/K in every rank.
* ``slot_usage``: how the choices spread over the K slots; the slots are exchangeable, so 1/K each is expected.

Sources: a run (checkpoint ``which``), a slot model, or plain tensors: a ``(values, index)`` pair with values
(K, *shape) and index (*shape), or a ``{layer: (values, index)}`` mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from slotlab.analysis.sources import as_model, layer_names
from slotlab.errors import SlotlabError

SlotPairs = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (values (K, *shape), index (*shape))


def _checked(name: str, values: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, index = torch.as_tensor(values).detach().cpu(), torch.as_tensor(index).detach().cpu()
    if values.dim() < 1 or tuple(values.shape[1:]) != tuple(index.shape):
        raise SlotlabError(
            f"layer {name!r}: values must be (K, *shape) for an index of shape (*shape), got values "
            f"{tuple(values.shape)} and index {tuple(index.shape)}"
        )
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise SlotlabError(f"layer {name!r}: the slot index must be an integer tensor, got {index.dtype}")
    index = index.long()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= values.shape[0]):
        raise SlotlabError(f"layer {name!r}: slot indices must lie in 0..{values.shape[0] - 1}")
    return values, index


def slot_pairs(source: Any, which: str = "best") -> SlotPairs:
    """Each slot layer's (values, selected index), from a run, a model or plain tensors."""
    if isinstance(source, tuple) and len(source) == 2:
        return {"layer": _checked("layer", *source)}
    if isinstance(source, Mapping):
        return {str(name): _checked(str(name), *pair) for name, pair in source.items()}
    model = as_model(source, which)
    names = layer_names(model)
    pairs = {
        names.get(name, name): _checked(names.get(name, name), m.values, m.selection())
        for name, m in model.named_modules()
        if callable(getattr(m, "selection", None)) and isinstance(getattr(m, "values", None), torch.Tensor)
    }
    if not pairs:
        raise SlotlabError(
            f"{type(model).__name__} has no slot layer (K values and a selected index per connection); "
            f"selection histograms are a Slot Machines analysis"
        )
    return pairs


def selected_values(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """W[index] per connection: values (K, *shape), index (*shape) -> (*shape)."""
    return values.gather(0, index.long().unsqueeze(0)).squeeze(0)


def value_histograms(source: Any, which: str = "best", bins: int = 40) -> pd.DataFrame:
    """Per layer, histograms of the selected values and of all K initial values on common bins.

    Columns: layer, kind ("selected" or "initial"), bin_left, bin_right, count, density (integrates to 1).
    """
    rows = []
    for name, (values, index) in slot_pairs(source, which).items():
        values = values.float()
        low, high = float(values.min()), float(values.max())
        edges = np.linspace(low, high, bins + 1)
        for kind, data in (("selected", selected_values(values, index)), ("initial", values)):
            counts = (
                torch.histc(data, bins=bins, min=low, max=high).double().numpy()
            )  # no copy of K x n values
            density = counts / (counts.sum() * np.diff(edges))
            for i in range(bins):
                rows.append((name, kind, edges[i], edges[i + 1], int(counts[i]), float(density[i])))
    return pd.DataFrame(rows, columns=["layer", "kind", "bin_left", "bin_right", "count", "density"])


def magnitude_rank(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rank of |W[index]| among each connection's K magnitudes (0 = smallest), (*shape) int64.

    Ties (equal magnitudes) count as below, so a tie takes the lowest rank it shares.
    """
    chosen = selected_values(values, index).abs()
    return (values.abs() < chosen.unsqueeze(0)).sum(0)


def magnitude_ranks(source: Any, which: str = "best") -> pd.DataFrame:
    """Per layer, how often the selected value has each magnitude rank among its K.

    Columns: layer, rank (0 = smallest |w|, K - 1 = largest), count, fraction, chance (1 / K).
    """
    rows = []
    for name, (values, index) in slot_pairs(source, which).items():
        k = values.shape[0]
        counts = torch.bincount(magnitude_rank(values, index).reshape(-1), minlength=k)
        total = max(int(counts.sum()), 1)
        rows += [(name, r, int(counts[r]), int(counts[r]) / total, 1.0 / k) for r in range(k)]
    return pd.DataFrame(rows, columns=["layer", "rank", "count", "fraction", "chance"])


def slot_usage(source: Any, which: str = "best", k: int | None = None) -> pd.DataFrame:
    """Per layer, how the choices spread over the K slots.

    ``source`` may also be index tensors alone (a tensor or ``{layer: index}``); then K is ``k``, or the
    largest index + 1. Columns: layer, slot, count, fraction, chance (1 / K).
    """
    if isinstance(source, torch.Tensor):
        source = {"layer": source}
    if isinstance(source, Mapping) and all(isinstance(v, torch.Tensor) for v in source.values()):
        masks = [str(n) for n, i in source.items() if i.dtype == torch.bool]
        if masks:
            raise SlotlabError(
                f"layer {masks[0]!r} holds a mask, not slot indices; slot usage is for slot runs"
            )
        indices = {str(n): i.detach().cpu().long() for n, i in source.items()}
        ks = {n: k or int(i.max()) + 1 for n, i in indices.items()}
    else:
        pairs = slot_pairs(source, which)
        indices = {n: i for n, (_, i) in pairs.items()}
        ks = {n: v.shape[0] for n, (v, _) in pairs.items()}
    rows = []
    for name, index in indices.items():
        counts = torch.bincount(index.reshape(-1), minlength=ks[name])
        total = max(int(counts.sum()), 1)
        rows += [(name, s, int(counts[s]), int(counts[s]) / total, 1.0 / ks[name]) for s in range(ks[name])]
    return pd.DataFrame(rows, columns=["layer", "slot", "count", "fraction", "chance"])
