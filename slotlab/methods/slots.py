"""Slot Machines (Aladago & Torresani, ICML 2021, arXiv 2101.06475) and its two learned-weight baselines.

| method   | what is learned                                                                  | paper          |
|----------|----------------------------------------------------------------------------------|----------------|
| slots    | which of K fixed random values each connection uses (Eq. 1-3)                    | the method     |
| learned  | the weights, started from a uniformly random choice among the same K values      | its baseline   |
| finetune | the weights, started from a finished slots run's found network                   | Sec. 4.4       |

Recipes (the paper and its code): SGD with momentum 0.9 and weight decay 1e-4 on the scores; greedy
selection lr 0.2 for K <= 8 and 0.1 above, sampled selection lr 25; cosine warm restarts at epochs 25 and 75 over
200 epochs (220 for VGG-19). The learned baselines train 200 epochs on Lenet-300-100, 330 on Conv-2/4/6 and 320 on
VGG-19 at lr 0.01; finetuning trains half that. The CPU scales keep the slots' learning rates on one cosine decay,
and the baselines use lr 0.05, which converges within a few epochs.

The compact export stores ceil(log2 K) bits per connection (the greedy slot index), since the weight seed
regenerates all K values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slotlab.bitpack import bits_per_connection, pack_indices, unpack_indices
from slotlab.callback import Callback
from slotlab.checkpoint import safe_load
from slotlab.errors import SlotlabError
from slotlab.init import initialize, random_weight_layers, stream_seed
from slotlab.layers.dense import DENSE_INITS, DenseFactory
from slotlab.layers.factory import LayerFactory
from slotlab.layers.plain import to_plain
from slotlab.layers.slot import SELECTIONS, SHARINGS, SlotFactory, SlotLayer, greedy_index
from slotlab.methods.base import (
    Method,
    Options,
    RunSpec,
    Shape,
    Source,
    SourceRun,
    Steps,
    Toggle,
    matching_source,
    option,
)
from slotlab.methods.dense import RESTARTS, SGD, dense_recipe, paper_epochs
from slotlab.models import Network, build_model
from slotlab.scales import Scale

K_STEPS = (1, 2, 4, 8, 16, 32, 64)


def _check_k(k: int) -> None:
    if k < 1:
        raise SlotlabError(f"k (values per connection) must be a whole number >= 1, got {k}")


@dataclass(frozen=True)
class SlotOptions(Options):
    k: int = option(8, "random values per connection (K)", control=Steps(K_STEPS), label="K values")
    selection: str = option(
        "greedy",
        "greedy (argmax of scores) or sampled (softmax of scores) during training",
        SELECTIONS,
        Toggle(),
    )
    eval_selection: str = option(
        "greedy", "selection at evaluation (greedy unless asked otherwise)", SELECTIONS
    )
    sharing: str = option(
        "none",
        "weight sharing (Sec. 4): none (K values per connection), layer (one set of K values per layer) or "
        "global (one set for the whole network); values then cost K floats per layer",
        SHARINGS,
        Toggle(),
    )

    keep_epochs: str = option(
        "",
        "keep the selection found at these epochs (e.g. 10,20), for finetune --source-epoch (Sec. 4.4)",
        label="keep epochs",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_epochs", ",".join(map(str, parse_epochs(self.keep_epochs))))

    def check(self) -> None:
        _check_k(self.k)
        if self.sharing not in SHARINGS:
            raise SlotlabError(f"sharing must be one of {', '.join(SHARINGS)}, got {self.sharing!r}")


def parse_epochs(text: str) -> list[int]:
    """``"20,10"`` -> ``[10, 20]``: distinct epochs >= 1 (counted from 1), sorted."""
    try:
        epochs = sorted({int(part) for part in str(text).replace(" ", "").split(",") if part})
    except ValueError:
        raise SlotlabError(
            f"keep_epochs takes whole epochs separated by commas, e.g. 10,20; got {text!r}"
        ) from None
    if any(e < 1 for e in epochs):
        raise SlotlabError(f"keep_epochs are epochs counted from 1, got {text!r}")
    return epochs


class KeepSelections(Callback):
    """Keeps each slot layer's greedy choice at the end of the chosen epochs, in the run's checkpoint state
    (one byte per connection for K <= 256), so that a finetune can start from the network found at epoch E
    (Aladago & Torresani 2021, Sec. 4.4: finetuning from the selection at epoch E at a fixed total budget)."""

    def __init__(self, epochs: list[int]) -> None:
        self.epochs = epochs
        self.kept: dict[int, list[torch.Tensor]] = {}

    def on_epoch_end(self, trainer: Any) -> None:
        epoch = trainer.epoch  # epochs completed, this one included
        if epoch in self.epochs:
            layers = [m for m in trainer.model.modules() if isinstance(m, SlotLayer)]
            dtype = torch.uint8 if all(m.k <= 256 for m in layers) else torch.int16
            self.kept[epoch] = [greedy_index(m.scores.detach()).to("cpu", dtype) for m in layers]

    def state_dict(self) -> dict[str, Any]:
        return {"kept": dict(self.kept)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = dict(state["kept"])


def kept_selection(run_path: Path, epoch: int) -> list[torch.Tensor]:
    """The greedy choice per slot layer that ``KeepSelections`` kept at ``epoch`` in the run at ``run_path``."""
    saved = safe_load(run_path / "last.pt").get("callbacks", {})
    kept: dict[int, list[torch.Tensor]] = {}
    for key, state in saved.items():
        if key.split("#")[0] == "KeepSelections":
            kept.update(state["kept"])
    if epoch not in kept:
        have = ",".join(map(str, sorted(kept))) or "none"
        raise SlotlabError(
            f"source run {run_path.name} kept the selections of epochs {have}, not {epoch}; train it with "
            f"--keep-epochs {epoch}, or leave --source-epoch out to start from its best network"
        )
    return kept[epoch]


class Slots(Method):
    compact_export = True
    name = "slots"
    description = "Slot Machines: pick one of K random values per connection"
    options_type = SlotOptions
    # the released code's init, the one that reaches the paper's Lenet-300-100 numbers (slot-machines/init); the
    # paper's stated init was the default until runs were hashed with their init
    inits = ("code", "paper")
    unhashed_init = "paper"

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        o: SlotOptions = config.options
        return SlotFactory(
            o.k, o.selection, self.init_name(config), eval_selection=o.eval_selection, sharing=o.sharing
        )

    def memory_model(self, config: RunSpec, shape: Shape, classes: int) -> Network:
        """As the default, and so with sharing the values' buffers hold K floats per layer, not per connection
        (``SlotLayer.shared_values``); the scores stay K per connection."""
        return super().memory_model(config, shape, classes)

    def callbacks(self, config: RunSpec) -> list[Callback]:
        epochs = parse_epochs(config.options.keep_epochs)
        return [KeepSelections(epochs)] if epochs else []

    def check(self, config: RunSpec) -> None:
        super().check(config)
        late = [e for e in parse_epochs(config.options.keep_epochs) if e > config.epochs]
        if late:
            raise SlotlabError(f"keep_epochs {late} lie beyond the run's {config.epochs} epochs")

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        k = int(chosen.get("k", SlotOptions.k))
        lr = 25.0 if chosen.get("selection") == "sampled" else (0.2 if k <= 8 else 0.1)
        if scale.is_paper:
            return {**SGD, "lr": lr, **RESTARTS, "epochs": paper_epochs(chosen["model"], slots=True)}
        return {**SGD, "lr": lr, **scale.short_schedule()}

    def encode_layer(self, layer: nn.Module, initial: Callable[[], nn.Module]) -> dict[str, Any] | None:
        if not isinstance(layer, SlotLayer):
            return None
        if layer.eval_selection != "greedy":
            raise SlotlabError(
                "this network evaluates with sampled selection; the compact export needs greedy"
            )
        bits = bits_per_connection(layer.k)
        index = greedy_index(layer.scores.detach())
        return {"bits": bits, "count": index.numel(), "packed": pack_indices(index, bits)}

    def decode_layer(self, layer: nn.Module, entry: Mapping[str, Any]) -> None:
        index = unpack_indices(entry["packed"], entry["bits"], entry["count"]).view(layer.weight_shape)
        layer.scores.zero_().scatter_(0, index.unsqueeze(0), 1.0)  # greedy selection now picks ``index``

    def describe_compact(self, config: RunSpec, stored_bytes: int, connections: int) -> str:
        bits = bits_per_connection(config.options.k)
        return f"{stored_bytes} bytes of selections ({bits} bits x {connections} connections) plus seeds and config"


@dataclass(frozen=True)
class LearnedOptions(Options):
    k: int = option(
        8, "the K slot values the random start chooses among", control=Steps(K_STEPS[1:]), label="K values"
    )

    def check(self) -> None:
        _check_k(self.k)


class Learned(Method):
    name = "learned"
    description = "trained weights started from a random choice among K slot values"
    options_type = LearnedOptions
    # the released code's init, the one that reaches the paper's Lenet-300-100 numbers (slot-machines/init); the
    # paper's stated init was the default until runs were hashed with their init
    inits = ("code", "paper")
    unhashed_init = "paper"

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        # the network is plain; its BatchNorm is the slot network's (not affine), of which it is made
        return DenseFactory(DENSE_INITS[0], bn_affine=False)

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        """Dense weights, each drawn uniformly from the K values a slot machine with this weight seed holds."""
        factory = SlotFactory(config.options.k, init=self.init_name(config))
        slots = initialize(
            build_model(config.model, factory, shape, classes, config.width),
            config.weight_seed,
            config.score_seed,
        )
        choice = torch.Generator().manual_seed(stream_seed("learned-choice", config.score_seed))
        with torch.no_grad():
            for _, layer in random_weight_layers(slots):
                index = torch.randint(0, layer.k, layer.weight_shape, generator=choice)
                layer.scores.zero_().scatter_(
                    0, index.unsqueeze(0), 1.0
                )  # greedy selection now picks ``index``
        return to_plain(slots)

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return dense_recipe(scale, chosen)


_HASH = re.compile(r"[0-9a-f]{12}")


def source_hash(source: str | Path) -> str:
    """The 12-digit hash of a run given as its folder (path or name) or as the hash itself."""
    text = str(source).strip()
    if _HASH.fullmatch(text):
        return text
    path = Path(text)
    if (path / "config.json").is_file():
        try:
            recorded = json.loads((path / "config.json").read_text()).get("hash", "")
        except (OSError, ValueError, AttributeError):
            recorded = ""
        if _HASH.fullmatch(str(recorded)):
            return str(recorded)
    tail = path.name.rpartition("-")[2]
    if _HASH.fullmatch(tail):
        return tail
    raise SlotlabError(
        f"source {text!r} is neither a run folder nor a run's 12-digit hash; pass the folder (or hash) of a "
        f"finished slots run"
    )


@dataclass(frozen=True)
class FinetuneOptions(Options):
    source: str = option(
        "",
        "the slots run (its folder or 12-digit hash) whose found network is finetuned",
        control=SourceRun("slots"),
        label="finetune source",
    )

    def __post_init__(self) -> None:
        if self.source:  # one hash for one source, whether given as a folder or as the hash
            object.__setattr__(self, "source", source_hash(self.source))

    source_epoch: int = option(
        0,
        "start from the selection the source kept at this epoch (its --keep-epochs); 0: its best network",
        label="source epoch",
    )

    def check(self) -> None:
        if not self.source:
            raise SlotlabError(
                "method finetune needs --source: the run folder or hash of a slots run to finetune"
            )
        if self.source_epoch < 0:
            raise SlotlabError(
                f"source_epoch is an epoch counted from 1 (0: the best network), got {self.source_epoch}"
            )


class Finetune(Method):
    name = "finetune"
    description = "trained weights started from a slots run's found network (--source)"
    options_type = FinetuneOptions
    inits = DENSE_INITS
    source_methods = ("slots",)

    def source_of(self, config: RunSpec) -> str | None:
        return config.options.source

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        # a slot network's BatchNorm is not affine, and neither is the plain network made of it
        return DenseFactory(self.init_name(config), bn_affine=False)

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        source = matching_source(self.name, config, source)
        network = source.network
        epoch = config.options.source_epoch
        if epoch:
            if source.path is None:
                raise SlotlabError(f"source run {source.name} has no run folder to read epoch {epoch} from")
            layers = [m for m in network.modules() if isinstance(m, SlotLayer)]
            for layer, index in zip(layers, kept_selection(source.path, epoch), strict=True):
                # scores one-hot at the kept choice: greedy selection now picks what it picked at that epoch
                layer.scores.data.zero_().scatter_(0, index.long().unsqueeze(0), 1.0)
        return to_plain(network)

    def architecture(self, config: RunSpec, shape: Shape, classes: int) -> Network:
        return build_model(config.model, self.layer_factory(config), shape, classes, config.width)

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        common = {**SGD, "lr": 0.01}
        if scale.is_paper:
            return {**common, **RESTARTS, "epochs": paper_epochs(chosen["model"], slots=False) // 2}
        return {**common, **scale.short_schedule(max(1, scale.epochs // 2))}
