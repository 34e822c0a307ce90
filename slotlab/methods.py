"""The method registry: what each method builds, what it trains, and where weight decay goes.

A method is a layer rule (a ``LayerFactory``) plus the choice of trainable parameters; periodic work (recycling,
LaPerm syncs, snapshots) comes in as trainer callbacks, never as a fork of the training loop.

| method   | what is learned                                           | paper                                   |
|----------|-----------------------------------------------------------|-----------------------------------------|
| slots    | which of K fixed random values each connection uses       | Aladago & Torresani 2021 (Slot Machines)|
| dense    | the weights themselves (the usual baseline)               |                                         |
| learned  | the weights, starting from a uniformly random choice among the K slot values (the paper's baseline) |
| finetune | the weights, starting from a slot run's found network     | Slot Machines §4.4                      |
| edge-popup | which connections to keep (top-|score| mask)            | Ramanujan et al. 2020                   |
| biprop   | which connections to keep; kept weights become alpha*sign(W) | Diffenderfer & Kailkhura 2021 (MPT)   |
| random-mask | the weights, under a fixed random mask (random pruning) | sanity baseline                         |
| laperm   | where the initial values sit (rows permuted every k steps)| Qiu & Suda 2020 (LaPerm)                |

Iterative Weight Recycling (Gorbett & Whitley 2023) and IteRand (Chijiwa et al. 2021) are options of edge-popup
and biprop (``recycle_rate``, ``iterand_rate``): callbacks, see ``slotlab.recycle``.

A method may bring its own defaults for fields the user leaves out (laperm: Adam, lr 1e-3, as in its paper);
``method_config`` and the command line apply them, ``RunConfig`` itself does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.init import initialize, random_weight_layers, stream_seed
from slotlab.layers import DenseFactory, LayerFactory, SlotFactory, SlotLayer
from slotlab.layers.dense import DENSE_INITS
from slotlab.layers.edge_popup import MASK_INITS
from slotlab.layers.slot import SLOT_INITS
from slotlab.models import Network, build_model


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    factory: Callable  # (config) -> LayerFactory
    inits: tuple[str, ...]
    build: Callable | None = None  # (config, input_shape, num_classes) -> Network; None: build and initialise
    callbacks: Callable | None = None  # (config) -> list[Callback]: the method's periodic work, if any
    check: Callable | None = None  # (config) -> None: raise SlotlabError on option values the method rejects
    # fields the method sets when the user leaves them out (applied by method_config and the command line)
    defaults: dict[str, Any] = field(default_factory=dict)

    def validate(self, config) -> None:
        if config.init != "default" and config.init not in self.inits:
            raise SlotlabError(
                f"init {config.init!r} is not one of method {self.name}'s: {', '.join(('default',) + self.inits)}"
            )
        if self.name == "finetune" and not config.source:
            raise SlotlabError(
                "method finetune needs --source: the run folder or hash of a slots run to finetune"
            )
        if self.check is not None:
            self.check(config)

    def init_name(self, config) -> str:
        return self.inits[0] if config.init == "default" else config.init


def _slot_factory(config) -> LayerFactory:
    return SlotFactory(
        config.k, config.selection, METHODS["slots"].init_name(config), eval_selection=config.eval_selection
    )


def _dense_factory(config) -> LayerFactory:
    return DenseFactory(METHODS["dense"].init_name(config))


def _build_learned(config, input_shape, num_classes) -> Network:
    """Dense weights, each drawn uniformly from the same K values a slot machine with this weight seed holds."""
    slots = build_model(
        config.model, SlotFactory(config.k, init=METHODS["slots"].init_name(config)), input_shape, num_classes
    )
    initialize(slots, config.weight_seed, config.score_seed)
    choice = torch.Generator().manual_seed(stream_seed("learned-choice", config.score_seed))
    with torch.no_grad():
        for _, layer in random_weight_layers(slots):
            index = torch.randint(0, layer.k, layer.weight_shape, generator=choice)
            layer.scores.zero_().scatter_(0, index.unsqueeze(0), 1.0)  # greedy selection now picks ``index``
    from slotlab.export import to_plain

    return to_plain(slots)


def _build_finetune(config, input_shape, num_classes) -> Network:
    from slotlab.export import to_plain
    from slotlab.runs import open_run

    source = open_run(config.source)
    if (source.config.model, source.config.dataset) != (config.model, config.dataset):
        raise SlotlabError(
            f"source run {source.path.name} is {source.config.model} on {source.config.dataset}; "
            f"finetune it with --model {source.config.model} --dataset {source.config.dataset}"
        )
    return to_plain(source.model("best"))


MASK_METHODS = ("edge-popup", "biprop", "random-mask")


def _mask_factory(config) -> LayerFactory:
    from slotlab.layers.biprop import BipropLayer
    from slotlab.layers.edge_popup import EdgePopupLayer, MaskFactory
    from slotlab.layers.random_mask import RandomMaskLayer

    layer_class = {"edge-popup": EdgePopupLayer, "biprop": BipropLayer, "random-mask": RandomMaskLayer}
    return MaskFactory(
        layer_class[config.method],
        config.density,
        METHODS[config.method].init_name(config),
        bn_affine=config.learned_bn,
        binary_activations=config.binary_activations,
    )


def _build_masked(config, input_shape, num_classes) -> Network:
    model = build_model(config.model, _mask_factory(config), input_shape, num_classes)
    if config.scope == "global":
        from slotlab.global_mask import attach_global_scope

        attach_global_scope(model, config.density)
    return initialize(model, config.weight_seed, config.score_seed)


def _mask_callbacks(config) -> list:
    from slotlab.global_mask import DensityAnnealing
    from slotlab.recycle import IteRand, WeightRecycling

    callbacks: list = []
    # annealing grows the sparsity of a learned mask; random-mask's mask is fixed from the start
    annealed = config.method != "random-mask" and config.density <= 0.5 and config.anneal_epochs > 0
    if config.scope == "global" and annealed:
        callbacks.append(DensityAnnealing(config.anneal_epochs))
    schedule = dict(every=config.recycle_every, unit=config.recycle_unit, warmup=config.recycle_warmup)
    if config.recycle_rate > 0:
        callbacks.append(WeightRecycling(config.recycle_rate, donor=config.recycle_donor, **schedule))
    if config.iterand_rate > 0:
        callbacks.append(IteRand(config.iterand_rate, seed=config.weight_seed, **schedule))
    return callbacks


def _check_masks(config) -> None:
    if not 0 < config.density <= 1:
        raise SlotlabError(f"density must be in (0, 1] (the fraction of weights kept), got {config.density}")
    for name in ("recycle_rate", "iterand_rate"):
        value = getattr(config, name)
        if not 0 <= value <= 1:
            raise SlotlabError(f"{name} must be in [0, 1] (0 turns it off), got {value}")
    if config.recycle_donor == "next-lowest" and config.recycle_rate > 0.5:
        raise SlotlabError(
            f"recycle_donor next-lowest takes the 2n lowest-score weights, so recycle_rate must be <= 0.5, "
            f"got {config.recycle_rate}"
        )
    if config.recycle_every < 1:
        raise SlotlabError(f"recycle_every must be >= 1, got {config.recycle_every}")
    for name in ("recycle_warmup", "anneal_epochs"):
        if getattr(config, name) < 0:
            raise SlotlabError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.method == "random-mask" and (config.recycle_rate > 0 or config.iterand_rate > 0):
        raise SlotlabError(
            "random-mask trains its weights under a fixed mask; recycling and IteRand apply to edge-popup "
            "and biprop"
        )


def _laperm_factory(config) -> LayerFactory:
    return DenseFactory(METHODS["laperm"].init_name(config))


def _build_laperm(config, input_shape, num_classes) -> Network:
    """Dense seeded weights, then the paper's initial variants: one shared value, random zeros."""
    from slotlab.laperm import agnosticize, parse_densities, sparsify

    model = build_model(config.model, _laperm_factory(config), input_shape, num_classes)
    initialize(model, config.weight_seed, config.score_seed)
    if config.shared_value != 0:
        agnosticize(model, config.shared_value)
    densities = parse_densities(config.init_density)
    if densities and densities != [1.0]:
        sparsify(model, densities, config.weight_seed)
    return model


def _laperm_callbacks(config) -> list:
    from slotlab.laperm import LaPermSync

    return [LaPermSync(config.sync_period, config.permute_bias, config.permute_norm)]


def _check_laperm(config) -> None:
    from slotlab.laperm import check_sync_period, parse_densities

    check_sync_period(config.sync_period)
    parse_densities(config.init_density)
    if not math.isfinite(config.shared_value):
        raise SlotlabError(f"shared_value must be a finite number (0: off), got {config.shared_value}")


METHODS: dict[str, Method] = {
    "slots": Method(
        "slots", "Slot Machines: pick one of K random values per connection", _slot_factory, SLOT_INITS
    ),
    "dense": Method("dense", "ordinary trained weights (the baseline)", _dense_factory, DENSE_INITS),
    "learned": Method(
        "learned",
        "trained weights started from a random choice among K slot values",
        _dense_factory,
        SLOT_INITS,
        _build_learned,
    ),
    "finetune": Method(
        "finetune",
        "trained weights started from a slots run's found network (--source)",
        _dense_factory,
        DENSE_INITS,
        _build_finetune,
    ),
    "edge-popup": Method(
        "edge-popup",
        "Edge-Popup: keep the top --density of |scores| (inits sc-scaled|sc|kn-scaled|kn)",
        _mask_factory,
        MASK_INITS,
        _build_masked,
        _mask_callbacks,
        _check_masks,
    ),
    "biprop": Method(
        "biprop",
        "Biprop: Edge-Popup mask, kept weights alpha*sign(W) (inits kn-scaled|kn|sc-scaled|sc)",
        _mask_factory,
        ("kn-scaled", "kn", "sc-scaled", "sc"),
        _build_masked,
        _mask_callbacks,
        _check_masks,
    ),
    "random-mask": Method(
        "random-mask",
        "baseline: weights trained under a fixed random mask of --density (inits kn|kn-scaled|sc|sc-scaled)",
        _mask_factory,
        ("kn", "kn-scaled", "sc", "sc-scaled"),
        _build_masked,
        _mask_callbacks,
        _check_masks,
    ),
    "laperm": Method(
        "laperm",
        "LaPerm: trained weights synced every --sync-period steps to permutations of the initial rows "
        "(Adam, lr 1e-3 unless given)",
        _laperm_factory,
        DENSE_INITS,
        _build_laperm,
        _laperm_callbacks,
        _check_laperm,
        {"optimizer": "adam", "lr": 1e-3},
    ),
}


def method_config(**values: Any):
    """A ``RunConfig`` of ``values``, where fields left out take the method's own defaults before the global ones.

    ``method_config(method="laperm")`` trains with Adam at lr 1e-3; ``RunConfig(method="laperm")`` with the
    global SGD defaults. The command line builds its configs this way.
    """
    from slotlab.config import RunConfig

    method = METHODS.get(values.get("method", RunConfig.method))
    return RunConfig(**{**(method.defaults if method else {}), **values})


def build(config, input_shape: tuple[int, int, int], num_classes: int) -> Network:
    """The initial network of ``config``: architecture, layer rule and seeded values."""
    method = METHODS[config.method]
    if method.build is not None:
        return method.build(config, input_shape, num_classes)
    model = build_model(config.model, method.factory(config), input_shape, num_classes)
    return initialize(model, config.weight_seed, config.score_seed)


def method_callbacks(config) -> list:
    """The trainer callbacks ``config``'s method needs (recycling, syncs), in the order they run."""
    make = METHODS[config.method].callbacks
    return list(make(config)) if make is not None else []


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the optimiser updates (and weight decay applies to): for slots the scores, for dense the weights."""
    return [p for p in model.parameters() if p.requires_grad]


def slot_layers(model: nn.Module) -> list[tuple[str, SlotLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SlotLayer)]
