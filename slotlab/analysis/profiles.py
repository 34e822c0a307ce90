"""Weight profiles (LaPerm) and the norms of kept and pruned weights (Iterative Weight Recycling).

Weight profiles (Qiu & Suda 2020, "Train-by-Reconnect", §2; ``Profiler`` in the released
``train_by_reconnect/viz_utils.py``): take a layer's weight with one row per output neuron (Linear (out, in);
Conv (out, in, kh, kw) flattened to (out, in·kh·kw)), sort every row ascending and draw all rows on one axis,
position against value. In trained networks the sorted profiles of all neurons look alike and like the initial
distribution: the locations of the values carry what was learned.

Kept and pruned norms (Gorbett & Whitley 2023; ``analysis.py`` and ``figures/norms.py`` in the authors' code at
commit 420a2c8): per layer, the Frobenius norm of the random weights a mask keeps and of those it prunes;
recycling raises the norm of the kept ones. The complement is taken with a boolean mask (the authors'
``analysis.py`` negates an integer index, ``flatten()[~idx]``, which does not give the pruned set). For slot
layers "kept" is the selected value of each connection and "pruned" the K - 1 others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from slotlab.analysis.sources import as_model, layer_names
from slotlab.errors import SlotlabError

PROFILE_COLUMNS = ["checkpoint", "layer", "neuron", "position", "quantile", "value"]
NORM_COLUMNS = ["layer", "kept", "pruned", "kept_norm", "pruned_norm", "kept_rms", "pruned_rms"]


def _is_weight_layer(module: nn.Module) -> bool:
    return callable(getattr(module, "effective_weight", None)) or isinstance(module, (nn.Linear, nn.Conv2d))


@torch.no_grad()
def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight each layer computes with (selected values, masked weights, dense weights), on the CPU."""
    weights = {}
    names = layer_names(model)
    for name, module in model.named_modules():
        if not _is_weight_layer(module):
            continue
        effective = getattr(module, "effective_weight", None)
        weights[names.get(name, name)] = (
            (effective() if callable(effective) else module.weight).detach().float().cpu()
        )
    if not weights:
        raise SlotlabError(f"{type(model).__name__} has no linear or conv layer to profile")
    return weights


def sorted_profiles(weight: torch.Tensor) -> torch.Tensor:
    """Each output neuron's incoming weights sorted ascending: (out, *rest) -> (out, prod(rest))."""
    if weight.dim() < 2:
        raise SlotlabError(f"a weight profile needs a (out, in, ...) weight, got shape {tuple(weight.shape)}")
    return weight.reshape(weight.shape[0], -1).sort(dim=1).values


def _neurons(count: int, max_neurons: int | None) -> np.ndarray:
    if max_neurons is None or max_neurons >= count:
        return np.arange(count)
    return np.unique(
        np.linspace(0, count - 1, max_neurons).round().astype(int)
    )  # evenly spread, deterministic


def _profile_rows(
    checkpoint: str, weights: Mapping[str, torch.Tensor], max_neurons: int | None
) -> pd.DataFrame:
    frames = []
    for name, weight in weights.items():
        profiles = sorted_profiles(torch.as_tensor(weight).detach().float().cpu()).numpy()
        chosen = _neurons(profiles.shape[0], max_neurons)
        fan_in = profiles.shape[1]
        position = np.tile(np.arange(fan_in), len(chosen))
        frames.append(
            pd.DataFrame(
                {
                    "checkpoint": checkpoint,
                    "layer": name,
                    "neuron": np.repeat(chosen, fan_in),
                    "position": position,
                    "quantile": position / max(fan_in - 1, 1),
                    "value": profiles[chosen].ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def weight_profiles(
    source: Any, which: str | Sequence[str] = ("init", "best"), max_neurons: int | None = None
) -> pd.DataFrame:
    """Sorted incoming-weight profiles of every neuron of every layer, for each checkpoint in ``which``.

    ``source``: a run (checkpoints ``which``, default before and after training), a model, or tensors (a weight
    or ``{layer: weight}``; checkpoint "tensor"). ``max_neurons`` keeps that many evenly spread neurons per
    layer. Columns: checkpoint, layer, neuron, position (0..fan_in - 1), quantile (position / (fan_in - 1)),
    value.
    """
    if isinstance(source, torch.Tensor):
        return _profile_rows("tensor", {"layer": source}, max_neurons)
    if isinstance(source, Mapping):
        return _profile_rows("tensor", dict(source), max_neurons)
    if isinstance(source, nn.Module):
        return _profile_rows("model", layer_weights(source), max_neurons)
    names = [which] if isinstance(which, str) else list(which)
    frames = [_profile_rows(w, layer_weights(as_model(source, w)), max_neurons) for w in names]
    return pd.concat(frames, ignore_index=True)


def _norm_row(name: str, weight: torch.Tensor, kept: torch.Tensor) -> tuple:
    weight, kept = weight.detach().double().cpu(), kept.detach().cpu()
    if weight.shape != kept.shape or kept.dtype != torch.bool:
        raise SlotlabError(
            f"layer {name!r}: need a weight and a bool keep-mask of the same shape, got {tuple(weight.shape)} "
            f"and {tuple(kept.shape)} {kept.dtype}"
        )
    n_kept, n_pruned = int(kept.sum()), int((~kept).sum())
    kept_norm = float(weight[kept].norm()) if n_kept else 0.0
    pruned_norm = float(weight[~kept].norm()) if n_pruned else 0.0
    return (
        name,
        n_kept,
        n_pruned,
        kept_norm,
        pruned_norm,
        kept_norm / np.sqrt(n_kept) if n_kept else float("nan"),
        pruned_norm / np.sqrt(n_pruned) if n_pruned else float("nan"),
    )


@torch.no_grad()
def _model_kept(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(random weights, keep-mask over them) per selecting layer of a model."""
    pairs = {}
    names = layer_names(model)
    for path, module in model.named_modules():
        if not callable(getattr(module, "selection", None)):
            continue
        name = names.get(path, path)
        selection = module.selection()
        if selection.dtype == torch.bool:  # a mask over the layer's frozen random weights
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor):
                raise SlotlabError(f"mask layer {name!r} has no .weight tensor of random values to measure")
            pairs[name] = (weight, selection)
        else:  # slots: the selected value is kept, the other K - 1 are not
            values = module.values
            kept = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
            kept.scatter_(0, selection.long().unsqueeze(0), True)
            pairs[name] = (values, kept)
    if not pairs:
        raise SlotlabError(
            f"{type(model).__name__} has no masked or slot layer; kept/pruned norms need a selection"
        )
    return pairs


def kept_pruned_norms(source: Any, which: str = "best") -> pd.DataFrame:
    """Per layer, the Frobenius norm (and RMS) of the kept and of the pruned random weights.

    ``source``: a run (checkpoint ``which``), a model with mask or slot layers, a ``(weight, mask)`` pair or a
    ``{layer: (weight, mask)}`` mapping. Columns: layer, kept, pruned (counts), kept_norm, pruned_norm,
    kept_rms, pruned_rms (norm / sqrt(count): comparable across different counts).
    """
    if isinstance(source, tuple) and len(source) == 2:
        pairs = {"layer": source}
    elif isinstance(source, Mapping):
        pairs = dict(source)
    else:
        pairs = _model_kept(as_model(source, which))
    rows = [_norm_row(str(name), torch.as_tensor(w), torch.as_tensor(m)) for name, (w, m) in pairs.items()]
    return pd.DataFrame(rows, columns=NORM_COLUMNS)
