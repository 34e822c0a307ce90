"""What a method is: its options, its layer rule, its initial network, its periodic work, its recipes, its export.

A method lives in one file of ``slotlab/methods/`` as a subclass of ``Method`` with an ``Options`` dataclass; the
registry (``slotlab.methods.METHODS``) only lists them. The command line, the Explorer, the config and the export
are generated from what a method declares here, so adding a method touches no other module (README, "Adding a
method").

An option is a dataclass field made with ``option(default, help, ...)``: its help text, choices and Explorer
control travel with it. Options of one method are refused by another (``--density`` is not an option of slots),
so that an option a method ignores can never change a run's hash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from slotlab.callback import Callback
from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers.factory import LayerFactory
from slotlab.models import Network, build_model
from slotlab.scales import Scale

# --- Explorer controls, declared without importing ipywidgets -------------------------------------------------


@dataclass(frozen=True)
class Steps:
    """A slider over these values (K = 1, 2, 4, ...)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A slider over [low, high] in steps of ``step``."""

    low: float
    high: float
    step: float


@dataclass(frozen=True)
class Toggle:
    """Buttons over the option's choices."""


@dataclass(frozen=True)
class SourceRun:
    """A menu of finished runs of ``method`` (a finetune's source)."""

    method: str


Control = Steps | Range | Toggle | SourceRun


def option(
    default: Any,
    help: str,
    choices: Sequence[str] | None = None,
    control: Control | None = None,
    label: str | None = None,
) -> Any:
    """A method option: a dataclass field whose help text, choices, Explorer control and label travel with it."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "control": control,
        "label": label,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: str  # "int", "float", "bool", "str", "tuple"
    default: Any
    help: str
    choices: tuple[str, ...] | None
    control: Control | None
    label: str  # the Explorer's name for it


@dataclass(frozen=True)
class Options:
    """A method's own options; subclasses add fields made with ``option(...)`` and may override ``check``."""

    def check(self) -> None:
        """Raise ``SlotlabError`` (one line) on a value the method cannot train with."""

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        return [
            OptionSpec(
                f.name,
                str(f.type),
                f.default,
                f.metadata.get("help", ""),
                f.metadata.get("choices"),
                f.metadata.get("control"),
                f.metadata.get("label") or f.name.replace("_", " "),
            )
            for f in fields(cls)
        ]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    def replace(self, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)


Shape = tuple[int, int, int]  # (channels, height, width) of one input


class RunSpec(Protocol):
    """What a method reads of a run's config (``slotlab.config.RunConfig`` has these and more)."""

    @property
    def method(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def init(self) -> str: ...
    @property
    def width(self) -> float: ...  # the width multiplier of the model (1: the paper's)
    @property
    def weight_seed(self) -> int: ...
    @property
    def score_seed(self) -> int: ...
    @property
    def options(self) -> Any: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class SourceNetwork:
    """The found network of a finished run that another method starts from (finetuning)."""

    name: str  # the source's run folder name
    method: str
    model: str
    dataset: str
    network: nn.Module  # its best checkpoint, loaded
    path: Path | None = None  # its run folder, for what a method reads beyond the network (kept epochs)


Source = SourceNetwork | None  # the network a run starts from, for methods that start from another run


def matching_source(method: str, config: RunSpec, source: Source) -> SourceNetwork:
    """``source``, checked to be there and to be the run's model on its dataset (methods that start from a run)."""
    if source is None:
        raise SlotlabError(
            f"{method} run {config.hash} starts from its source run's network; train it through "
            f"slotlab.runs.load_or_run, which finds the source under the runs root"
        )
    if (source.model, source.dataset) != (config.model, config.dataset):
        raise SlotlabError(
            f"source run {source.name} is {source.model} on {source.dataset}; finetune it with --model "
            f"{source.model} --dataset {source.dataset}"
        )
    return source


class Method:
    """One method of the papers. Subclasses set the class attributes and override the hooks they need.

    Hooks receive the run's config (``RunSpec``); the options are ``config.options``, an instance of
    ``options_type``.
    """

    name: ClassVar[str]
    description: ClassVar[str]  # one line for the command line's method list
    options_type: ClassVar[type[Options]] = Options
    inits: ClassVar[tuple[str, ...]]  # the first is the default
    # The init a run's hash leaves out: the one "default" meant when run hashes were fixed (None: inits[0]). A
    # method whose default init changes names its old default here, so every cached run keeps its meaning under
    # its old hash, and a run of the new default is hashed with its init named.
    unhashed_init: ClassVar[str | None] = None
    # common config fields the method sets when the user leaves them out (LaPerm: Adam at lr 1e-3)
    defaults: ClassVar[Mapping[str, Any]] = {}
    # a run of this method is the starting point (finetune: "slots"); None for methods that start from seeds
    source_methods: ClassVar[tuple[str, ...]] = ()
    compact_export: ClassVar[bool] = False  # whether ``encode_layer`` stores a selection (slots, masks)

    def init_name(self, config: RunSpec) -> str:
        return self.inits[0] if config.init == "default" else config.init

    @property
    def hash_neutral_init(self) -> str:
        """The init that run hashes (and stored configs saying "default") stand for when they name none."""
        return self.unhashed_init or self.inits[0]

    def check(self, config: RunSpec) -> None:
        """Raise ``SlotlabError`` on a combination of common fields and options the method rejects."""
        if config.init != "default" and config.init not in self.inits:
            raise SlotlabError(
                f"init {config.init!r} is not one of method {self.name}'s: {', '.join(('default',) + self.inits)}"
            )

    def source_of(self, config: RunSpec) -> str | None:
        """The hash of the run this one starts from, if any."""
        return None

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        raise NotImplementedError

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        """The network at step 0: architecture, layer rule and seeded values (or the source's found network)."""
        model = build_model(config.model, self.layer_factory(config), shape, classes, config.width)
        return initialize(model, config.weight_seed, config.score_seed)

    def architecture(self, config: RunSpec, shape: Shape, classes: int) -> Network:
        """A network of the run's shape to load a checkpoint into (no source needed)."""
        return self.initial_network(config, shape, classes)

    def memory_model(self, config: RunSpec, shape: Shape, classes: int) -> Network:
        """The run's architecture for estimating its memory (built under ``torch.device("meta")``: no values)."""
        return build_model(config.model, self.layer_factory(config), shape, classes, config.width)

    def callbacks(self, config: RunSpec) -> list[Callback]:
        """The method's periodic work (recycling, syncs), run before the caller's callbacks."""
        return []

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """The fields (learning rate, schedule, epochs...) the method trains with at ``scale``."""
        return {} if scale.is_paper else scale.short_schedule()

    # --- the compact export of the found network --------------------------------------------------------------
    def encode_layer(self, layer: nn.Module, initial: Callable[[], nn.Module]) -> dict[str, Any] | None:
        """The compact entry of one layer (its selection, packed), or None where the layer holds none; ``initial()``
        gives the same layer as the seeds made it (built on first call: only a method that needs it pays)."""
        return None

    def decode_layer(self, layer: nn.Module, entry: Mapping[str, Any]) -> None:
        """Put ``entry``'s selection back into ``layer`` of a freshly seeded network."""
        raise SlotlabError(f"method {self.name} has no compact export")

    def describe_compact(self, config: RunSpec, stored_bytes: int, connections: int) -> str:
        """One line for the command line: what the compact file holds."""
        return f"{stored_bytes} bytes"


def entry_bytes(entry: Mapping[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in entry.values() if isinstance(v, torch.Tensor))
