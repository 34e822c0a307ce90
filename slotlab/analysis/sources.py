"""What an analysis reads: a run folder, a model, or plain tensors, turned into per-layer tensors.

Every analysis accepts any of

* a run: a ``RunResult`` (``slotlab.runs``), or the path of a run folder (opened with ``open_run``);
* a model (``nn.Module``) whose layers follow the ``SelectingLayer`` protocol (``selection()``);
* plain tensors: a ``{layer name: tensor}`` mapping, or one tensor (named ``"layer"``).

A *selection* is what a layer learned, shaped like its weight: the slot index per connection (a small integer
tensor, Slot Machines) or the keep-mask (a bool tensor, Edge-Popup, Biprop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.runs import open_run

Selections = dict[str, torch.Tensor]  # layer name -> selection, shaped like the layer's weight

WHOLE_NETWORK = "all"  # the layer name of rows that sum over every layer


def is_run(source: Any) -> bool:
    """A ``RunResult``, duck-typed: anything with a ``model``, a ``path`` and a ``config``."""
    return hasattr(source, "model") and hasattr(source, "path") and hasattr(source, "config")


def as_run(source: Any) -> Any:
    """A ``RunResult`` from a ``RunResult`` or the path of a run folder; anything else is returned as is."""
    if isinstance(source, (str, Path)):
        return open_run(source)
    return source


def as_model(source: Any, which: str = "best") -> nn.Module:
    """The network of a run (checkpoint ``which``: init, best or last) or the model itself."""
    source = as_run(source)
    if is_run(source):
        return source.model(which)
    if isinstance(source, nn.Module):
        return source
    raise SlotlabError(
        f"expected a run (RunResult or run folder) or a model, got {type(source).__name__}; "
        f"pass tensors through the functions that take them"
    )


def selecting_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, layer) pairs of ``model`` that expose a ``selection()`` method, in module order."""
    return [(name, m) for name, m in model.named_modules() if callable(getattr(m, "selection", None))]


def _layer_shape(module: nn.Module) -> tuple[str, int, int] | None:
    """("conv" | "fc", inputs, outputs) of a convolution or a fully connected layer (plain, slot or masked)."""
    if hasattr(module, "in_channels") and hasattr(module, "out_channels"):
        return "conv", int(module.in_channels), int(module.out_channels)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return "fc", int(module.in_features), int(module.out_features)
    shape = getattr(module, "weight_shape", None)  # masked layers keep the weight's shape, (out, in, ...)
    if shape is None and isinstance(getattr(module, "weight", None), torch.Tensor):
        shape = module.weight.shape
    return _shape_kind(tuple(shape)) if shape is not None else None


def _shape_kind(shape: tuple[int, ...]) -> tuple[str, int, int] | None:
    if len(shape) == 2:
        return "fc", shape[1], shape[0]
    if len(shape) == 4:
        return "conv", shape[1], shape[0]
    return None


def _numbered(shapes: Mapping[str, tuple[str, int, int] | None]) -> dict[str, str]:
    names, counts = {}, {"conv": 0, "fc": 0}
    for path, shape in shapes.items():
        if shape is None:
            names[path] = path
            continue
        kind, inputs, outputs = shape
        counts[kind] += 1
        names[path] = f"{kind}{counts[kind]} {inputs}->{outputs}"
    return names


def layer_names(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Readable names of a network's random-weight layers, ``{module path: name}`` in module order.

    Convolutions and fully connected layers are numbered apart from 1 and carry their inputs and outputs:
    Lenet-300-100's ``body.1``, ``body.3``, ``body.5`` are "fc1 784->300", "fc2 300->100", "fc3 100->10", Conv-4's
    first two are "conv1 3->64", "conv2 64->64". The layers are those with a selection where the model has
    any (slots, Edge-Popup, Biprop), else its linear and conv layers. ``source`` may also be tensors shaped like
    the weights, ``{path: (out, in) or (out, in, kh, kw)}`` (a snapshot's selections); other shapes keep their
    key.
    """
    if isinstance(source, nn.Module):
        selecting = dict(selecting_layers(source))
        modules = selecting or dict(source.named_modules())
        shapes = {path: _layer_shape(m) for path, m in modules.items()}
        return _numbered({p: s for p, s in shapes.items() if s is not None or p in selecting})
    if isinstance(source, Mapping):
        return _numbered({str(p): _shape_kind(tuple(torch.as_tensor(t).shape)) for p, t in source.items()})
    raise SlotlabError(
        f"layer_names takes a model or {{name: weight-shaped tensor}}, got {type(source).__name__}"
    )


@torch.no_grad()
def model_selections(model: nn.Module) -> Selections:
    """Every selecting layer's current selection, on the CPU, by readable layer name (``layer_names``)."""
    layers = selecting_layers(model)
    if not layers:
        raise SlotlabError(
            f"{type(model).__name__} has no layer with a selection (slot indices or a mask); "
            f"analyses of selections need a slots, Edge-Popup or Biprop model"
        )
    names = layer_names(model)
    return {names.get(name, name): layer.selection().detach().cpu() for name, layer in layers}


def selections_of(source: Any, which: str = "best") -> Selections:
    """The selections of a run's checkpoint ``which``, a model, a ``{name: tensor}`` mapping or one tensor."""
    if isinstance(source, torch.Tensor):
        return {"layer": source.detach().cpu()}
    if isinstance(source, Mapping):
        return {str(name): torch.as_tensor(t).detach().cpu() for name, t in source.items()}
    return model_selections(as_model(source, which))


def selection_kind(selection: torch.Tensor) -> str:
    """ "mask" for a bool tensor, "index" for an integer one; anything else is refused."""
    if selection.dtype == torch.bool:
        return "mask"
    if not selection.dtype.is_floating_point and not selection.dtype.is_complex:
        return "index"
    raise SlotlabError(
        f"a selection is a bool mask or an integer slot index, got dtype {selection.dtype}; "
        f"pass layer.selection(), not the weights"
    )


def check_same_layout(a: Selections, b: Selections, names: tuple[str, str] = ("a", "b")) -> None:
    """Refuse to compare selections of different architectures or kinds, with a one-line reason."""
    first, second = names
    if list(a) != list(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise SlotlabError(
            f"{first} and {second} have different architectures (layers only in {first}: {only_a or '-'}, "
            f"only in {second}: {only_b or '-'}); compare runs of the same model"
        )
    for name in a:
        if a[name].shape != b[name].shape:
            raise SlotlabError(
                f"{first} and {second} have different architectures: layer {name!r} is "
                f"{tuple(a[name].shape)} in {first} and {tuple(b[name].shape)} in {second}; "
                f"compare runs of the same model"
            )
        if selection_kind(a[name]) != selection_kind(b[name]):
            raise SlotlabError(
                f"layer {name!r} is a {selection_kind(a[name])} in {first} and a "
                f"{selection_kind(b[name])} in {second}; compare masks with masks and slot indices with indices"
            )


def run_label(source: Any, position: int) -> str:
    """A short name for a source in tables: a run's folder name, else its position."""
    if is_run(source):
        return Path(source.path).name
    if isinstance(source, (str, Path)):
        return Path(source).name
    return str(position)


def named_sources(sources: Mapping[str, Any] | list | tuple) -> dict[str, Any]:
    """``{label: source}`` from a mapping (kept) or a sequence (labelled by run folder or position)."""
    if isinstance(sources, Mapping):
        return {str(k): v for k, v in sources.items()}
    opened = [as_run(s) for s in sources]
    labels = [run_label(s, i) for i, s in enumerate(opened)]
    if len(set(labels)) != len(labels):
        labels = [str(i) for i in range(len(opened))]
    return dict(zip(labels, opened, strict=True))


def per_run(
    analysis: Callable[..., pd.DataFrame], sources: Mapping[str, Any] | list, **options
) -> pd.DataFrame:
    """``analysis`` applied to each source, concatenated with a leading ``run`` column (for hue= in seaborn)."""
    frames = []
    for label, source in named_sources(sources).items():
        frame = analysis(source, **options)
        frames.append(frame.assign(run=label)[["run", *frame.columns]])
    if not frames:
        raise SlotlabError("no runs given; pass a list or a {label: run} mapping")
    return pd.concat(frames, ignore_index=True)
