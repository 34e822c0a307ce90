"""Supermasks over random weights: Edge-Popup, Biprop, and the random-mask baseline, with their periodic edits.

| method      | what is learned                                               | paper                               |
|-------------|---------------------------------------------------------------|-------------------------------------|
| edge-popup  | which connections to keep: the top ``density`` of |scores|    | Ramanujan et al., CVPR 2020, Eq. 3  |
| biprop      | the same mask; kept weights become alpha * sign(W)            | Diffenderfer & Kailkhura, ICLR 2021 |
| random-mask | the weights, under a fixed random mask (random pruning)       | the mask papers' sanity baseline    |

Options of edge-popup and biprop also turn on, as callbacks of the one training loop:
- Iterative Weight Recycling (Gorbett & Whitley 2023): every ``recycle_every`` epochs, the
  ``recycle_rate`` lowest-score weights of each layer take the values of its highest-score weights;
- IteRand (Chijiwa et al., NeurIPS 2021): pruned weights are redrawn with probability ``iterand_rate``;
- global scope (one threshold across layers) with the density annealed from 0.5 to the target over
  ``anneal_epochs`` (cubic), as Edge-Popup's global variant trains.

Recipes (both papers' released configs): SGD lr 0.1, momentum 0.9, weight
decay 1e-4 on the scores, cosine, 100 epochs (250 with recycling, as Gorbett & Whitley train); binary activations
use Adam at lr 0.1 without weight decay (the released Biprop code passes none to Adam). The random-mask baseline
trains its weights as dense networks do: lr 0.01, cosine, 100 epochs (lr 0.05 at the CPU scales).

Switches to the released code's rules (each defaults to the paper's; each refused where it would change nothing):
``kept_rule released`` keeps n - int((1 - d) n) weights per layer instead of floor(d n + 1/2); ``scale_rule
released`` scales the scaled inits' fan by 1 - d instead of d; Biprop's ``gain_divisor released`` divides alpha's
sum by int(d n) instead of the number kept; ``fan_mode fan_out`` takes the init's fan from the outputs. Biprop's
``bn_bias_only`` (with ``learned_bn``) learns BatchNorm's shift only. Inits: those of Edge-Popup's comparison of
weight distributions (``slotlab.layers.edge_popup``). The supermask baseline and finetuning under a found mask
are ``slotlab.methods.supermask`` and ``slotlab.methods.mask_finetune``.

The compact export stores 1 bit per connection (the keep-mask) plus, for the kept positions only, the weights that
no longer equal what the seed regenerates: a recycled value as the index of the initial weight it copies (IWR's
"no new random values"), any other value as a float. Biprop networks export as what they compute, a ternary
network with weights in {-alpha, 0, +alpha}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from slotlab.bitpack import pack_indices, unpack_indices
from slotlab.callback import Callback
from slotlab.errors import SlotlabError
from slotlab.global_mask import DensityAnnealing, attach_global_scope
from slotlab.init import initialize
from slotlab.layers.biprop import GAIN_DIVISORS, BipropLayer
from slotlab.layers.edge_popup import (
    FAN_MODES,
    KEPT_RULES,
    MASK_INITS,
    SCALE_RULES,
    XAVIER_INITS,
    EdgePopupLayer,
    MaskedLayer,
    MaskFactory,
)
from slotlab.layers.factory import LayerFactory
from slotlab.layers.random_mask import RandomMaskLayer
from slotlab.methods.base import Method, Options, Range, RunSpec, Shape, Source, option
from slotlab.models import Network, build_model
from slotlab.recycle import IteRand, WeightRecycling
from slotlab.scales import Scale

SCOPES = ("layer", "global")


def _check_density(density: float) -> None:
    if not 0 < density <= 1:
        raise SlotlabError(f"density must be in (0, 1] (the fraction of weights kept), got {density}")


@dataclass(frozen=True)
class FixedMaskOptions(Options):
    """The options every mask method has."""

    density: float = option(0.5, "fraction of weights kept, in (0, 1]", control=Range(0.05, 1.0, 0.05))
    scope: str = option(
        "layer", "layer (top density of each layer) or global (one threshold across layers)", SCOPES
    )
    binary_activations: bool = option(
        False, "BatchNorm + sign activations with the Bi-Real surrogate (MPT-1/1)"
    )
    learned_bn: bool = option(False, "learn BatchNorm scale and shift (the '+BN' variants)")
    fan_mode: str = option(
        "fan_in", "the fan of the Kaiming and constant inits: fan_in or fan_out (not for Xavier)", FAN_MODES
    )
    kept_rule: str = option(
        "round",
        "weights kept per layer: round (floor(d n + 1/2), the paper) or released (n - int((1 - d) n), the "
        "released code)",
        KEPT_RULES,
    )
    scale_rule: str = option(
        "kept",
        "scaled inits: fan times d (the paper) or released (fan times 1 - d, the released scale_fan)",
        SCALE_RULES,
    )

    def check(self) -> None:
        _check_density(self.density)
        changed = self.changed()
        if "kept_rule" in changed and self.scope == "global":
            raise SlotlabError(
                "kept_rule applies to layer scope (a global mask keeps floor(d N + 1/2) in all); leave it out "
                "with --scope global"
            )


@dataclass(frozen=True)
class MaskOptions(FixedMaskOptions):
    """Edge-Popup's and Biprop's options: a learned mask, and the periodic edits that act on it."""

    anneal_epochs: int = option(
        10,
        "global scope, density <= 0.5: epochs over which the training density falls from 0.5 to the target (cubic)",
    )
    recycle_rate: float = option(
        0.0, "Iterative Weight Recycling: fraction of each layer's weights recycled per round (0: off)"
    )
    recycle_every: int = option(
        3, "recycling and IteRand: rounds every this many epochs (or steps, see --recycle-unit)"
    )
    recycle_unit: str = option("epoch", "recycling and IteRand: epoch or step", ("epoch", "step"))
    recycle_donor: str = option(
        "top",
        "recycling: top (copy the highest-score values) or next-lowest (the ablation)",
        ("top", "next-lowest"),
    )
    recycle_warmup: int = option(0, "recycling and IteRand: no round before this many epochs (or steps)")
    recycle_timing: str = option(
        "paper",
        "recycling and IteRand rounds by epoch: paper (after epochs F, 2F, ...) or released (the authors' code: "
        "after 0-based epochs F, 2F, ..., one epoch later)",
        ("paper", "released"),
    )
    iterand_rate: float = option(
        0.0, "IteRand: probability that a pruned weight is redrawn per round (0: off)"
    )

    def check(self) -> None:
        super().check()
        for name in ("recycle_rate", "iterand_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise SlotlabError(f"{name} must be in [0, 1] (0 turns it off), got {value}")
        if self.recycle_donor == "next-lowest" and self.recycle_rate > 0.5:
            raise SlotlabError(
                f"recycle_donor next-lowest takes the 2n lowest-score weights, so recycle_rate must be <= 0.5, "
                f"got {self.recycle_rate}"
            )
        if self.recycle_every < 1:
            raise SlotlabError(f"recycle_every must be >= 1, got {self.recycle_every}")
        for name in ("recycle_warmup", "anneal_epochs"):
            if getattr(self, name) < 0:
                raise SlotlabError(f"{name} must be >= 0, got {getattr(self, name)}")
        # options that would change the run's hash and nothing else
        changed = self.changed()
        if self.recycle_rate == 0 and self.iterand_rate == 0:
            idle = [
                n
                for n in ("recycle_every", "recycle_unit", "recycle_warmup", "recycle_timing")
                if n in changed
            ]
            if idle:
                raise SlotlabError(
                    f"{', '.join(idle)} set while recycling and IteRand are off; give --recycle-rate or "
                    f"--iterand-rate, or leave {idle[0]} out"
                )
        if "recycle_donor" in changed and self.recycle_rate == 0:
            raise SlotlabError(
                "recycle_donor set while recycling is off; give --recycle-rate or leave it out"
            )
        if "recycle_timing" in changed and self.recycle_unit != "epoch":
            raise SlotlabError(
                "recycle_timing applies to rounds by epoch; leave it out with --recycle-unit step"
            )
        if "anneal_epochs" in changed and self.scope != "global":
            raise SlotlabError(
                "anneal_epochs applies to the global scope; give --scope global or leave it out"
            )


def check_init_options(method: str, init: str, options: Options) -> None:
    """Refuse an init option that would do nothing for ``init`` (one line)."""
    changed = options.changed()
    if "fan_mode" in changed and init in XAVIER_INITS:
        raise SlotlabError(
            f"fan_mode does not apply to the Xavier init {init} (it uses fan_in + fan_out); leave it out"
        )
    if "scale_rule" in changed and not init.endswith("-scaled"):
        raise SlotlabError(
            f"scale_rule applies to the scaled inits; {method} uses {init}: give --init {init}-scaled or leave "
            f"scale_rule out"
        )


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def check_learned_bn(config: RunSpec, model: nn.Module) -> None:
    """Refuse learned BatchNorm on a model that has none (it would change the hash and nothing else)."""
    if config.options.learned_bn and not batchnorms(model):
        raise SlotlabError(
            f"model {config.model} has no BatchNorm here, so learned_bn changes nothing; give "
            f"--binary-activations true (BatchNorm before each sign) or leave learned_bn out"
        )


def freeze_bn_scale(model: nn.Module) -> None:
    """Train BatchNorm's shift only (``bn_bias_only`` of the released Biprop code): its scale stays at 1."""
    for bn in batchnorms(model):
        if bn.weight is not None:
            bn.weight.requires_grad_(False)


class MaskMethod(Method):
    compact_export = True
    layer_class: ClassVar[type[MaskedLayer]]

    def check(self, config: RunSpec) -> None:
        super().check(config)
        check_init_options(self.name, self.init_name(config), config.options)

    def layer_options(self, config: RunSpec) -> dict[str, Any]:
        """The keyword options of ``layer_class`` that the run's options set."""
        o = config.options
        return {"kept_rule": o.kept_rule, "scale_rule": o.scale_rule, "fan_mode": o.fan_mode}

    def kept_density(self, config: RunSpec) -> float:
        """The fraction of each layer the mask keeps (a supermask samples its own: 1)."""
        return config.options.density

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        o = config.options
        return MaskFactory(
            self.layer_class,
            self.kept_density(config),
            self.init_name(config),
            bn_affine=o.learned_bn,
            binary_activations=o.binary_activations,
            **self.layer_options(config),
        )

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        model = build_model(config.model, self.layer_factory(config), shape, classes, config.width)
        check_learned_bn(config, model)
        self.shape_network(model, config)
        return initialize(model, config.weight_seed, config.score_seed)

    def shape_network(self, model: Network, config: RunSpec) -> None:
        """What the method changes in a built network before its values are drawn: the global scope."""
        if config.options.scope == "global":
            attach_global_scope(model, config.options.density)

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        common: dict[str, Any] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
        if chosen.get("binary_activations"):
            common = {"lr": 0.1, "weight_decay": 0.0, "optimizer": "adam"}
        if scale.is_paper:
            edited = chosen.get("recycle_rate", 0) or chosen.get("iterand_rate", 0)
            return {**common, "schedule": "cosine", "milestones": (), "epochs": 250 if edited else 100}
        return {**common, **scale.short_schedule()}

    def callbacks(self, config: RunSpec) -> list[Callback]:
        o = config.options
        callbacks: list[Callback] = []
        if o.scope == "global" and o.density <= 0.5 and o.anneal_epochs > 0:
            callbacks.append(DensityAnnealing(o.anneal_epochs))
        schedule = dict(
            every=o.recycle_every, unit=o.recycle_unit, warmup=o.recycle_warmup, timing=o.recycle_timing
        )
        if o.recycle_rate > 0:
            callbacks.append(WeightRecycling(o.recycle_rate, donor=o.recycle_donor, **schedule))
        if o.iterand_rate > 0:
            callbacks.append(IteRand(o.iterand_rate, seed=config.weight_seed, **schedule))
        return callbacks

    # --- compact export: a bitset of the mask, and the kept weights the seed does not regenerate ---------------
    def encode_layer(self, layer: nn.Module, initial: Callable[[], nn.Module]) -> dict[str, Any] | None:
        if not isinstance(layer, MaskedLayer):
            return None
        mask = layer.selection().reshape(-1).cpu()
        weight = layer.weight.detach().reshape(-1).cpu()
        start = initial().weight.detach().reshape(-1).cpu()
        changed = torch.nonzero(mask & (weight != start)).reshape(-1)
        values = weight[changed]
        ordered, order = torch.sort(start)
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

    def decode_layer(self, layer: nn.Module, entry: Mapping[str, Any]) -> None:
        keep = unpack_indices(entry["packed"], entry["bits"], entry["count"]).view(layer.weight_shape)
        flat = layer.weight.view(-1)
        copies = flat[entry["copied_from"].long()].clone()  # sources index the *initial* weights
        flat[entry["new_at"].long()] = entry["new_values"].to(flat.dtype)
        flat[entry["copied_at"].long()] = copies
        layer.scores.copy_(keep.to(layer.scores.dtype))  # |score| 1 where kept: the rule picks the mask

    def describe_compact(self, config: RunSpec, stored_bytes: int, connections: int) -> str:
        return (
            f"{stored_bytes} bytes of masks (1 bit x {connections} connections) and kept weights the seed does "
            f"not regenerate, plus seeds and config"
        )


@dataclass(frozen=True)
class BipropOptions(MaskOptions):
    """Biprop's own options: the gain's divisor and BatchNorm's shift-only training."""

    gain_divisor: str = option(
        "kept",
        "alpha = sum |W * M| / divisor: kept (the number kept, the paper) or released (int(d n), the released "
        "code)",
        GAIN_DIVISORS,
    )
    bn_bias_only: bool = option(
        False,
        "with learned_bn: learn BatchNorm's shift only, its scale stays 1 (the released --bn_bias_only)",
    )

    def check(self) -> None:
        super().check()
        changed = self.changed()
        if "gain_divisor" in changed and self.scope == "global":
            raise SlotlabError(
                "gain_divisor released divides by int(d n) of each layer, which a global mask does not keep; "
                "leave it out with --scope global"
            )
        if self.bn_bias_only and not self.learned_bn:
            raise SlotlabError("bn_bias_only trains BatchNorm's shift; give --learned-bn true with it")


class EdgePopup(MaskMethod):
    name = "edge-popup"
    description = (
        "Edge-Popup: keep the top --density of |scores| (inits sc-scaled|sc|kn-scaled|kn|uc...|ku|xn|xc)"
    )
    options_type = MaskOptions
    inits = MASK_INITS
    layer_class = EdgePopupLayer


class Biprop(MaskMethod):
    name = "biprop"
    description = "Biprop: Edge-Popup mask, kept weights alpha*sign(W) (inits kn-scaled|kn|sc-scaled|sc...)"
    options_type = BipropOptions
    inits = ("kn-scaled", "kn", "sc-scaled", "sc", "uc-scaled", "uc", "ku", "xn", "xc")
    layer_class = BipropLayer

    def layer_options(self, config: RunSpec) -> dict[str, Any]:
        return {**super().layer_options(config), "gain_divisor": config.options.gain_divisor}

    def shape_network(self, model: Network, config: RunSpec) -> None:
        super().shape_network(model, config)
        if config.options.bn_bias_only:
            freeze_bn_scale(model)

    def describe_compact(self, config: RunSpec, stored_bytes: int, connections: int) -> str:
        return (
            super().describe_compact(config, stored_bytes, connections)
            + " (a ternary network, weights in {-alpha, 0, +alpha})"
        )


class RandomMask(MaskMethod):
    name = "random-mask"
    description = (
        "baseline: weights trained under a fixed random mask of --density (inits kn|kn-scaled|sc|sc-scaled)"
    )
    options_type = FixedMaskOptions
    inits = ("kn", "kn-scaled", "sc", "sc-scaled", "uc-scaled", "uc", "ku", "xn", "xc")
    layer_class = RandomMaskLayer

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        common = {"momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
        if scale.is_paper:
            return {**common, "lr": 0.01, "schedule": "cosine", "milestones": (), "epochs": 100}
        return {**common, **scale.short_schedule(), "lr": 0.05}

    def callbacks(self, config: RunSpec) -> list[Callback]:
        return []  # the mask is fixed from the start: nothing to anneal, recycle or redraw
