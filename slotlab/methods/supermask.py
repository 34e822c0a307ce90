"""Zhou et al.'s supermask (NeurIPS 2019, "Deconstructing Lottery Tickets", Sec. 5), Edge-Popup's baseline.

| method    | what is learned                                                        | paper                    |
|-----------|------------------------------------------------------------------------|--------------------------|
| supermask | scores s whose sigmoid is each weight's keep-probability; masks sampled | Zhou et al. 2019, Sec. 5 |

The rule is ``slotlab.layers.supermask`` (a Bernoulli(sigmoid(s)) mask per forward pass, straight-through
gradient); the density is learned, not set. Ramanujan et al. (CVPR 2020, Sec. 4) compare Edge-Popup with it on
the same random weights, through ``SampleSubnetConv`` of their released code, which this method reproduces.

Evaluation: ``--eval-mask sampled`` (the default: a fresh sample per forward pass, as the released code and Zhou
et al. evaluate) or ``threshold`` (keep sigmoid(s) > 1/2: a deterministic network, the only one the compact
export can store).

Recipe: Edge-Popup's (SGD lr 0.1, momentum 0.9, weight decay 1e-4 on the scores, cosine, 100 epochs), the recipe
of the released code under which the two are compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.edge_popup import FAN_MODES
from slotlab.layers.supermask import EVAL_MASKS, SupermaskLayer
from slotlab.methods.base import Options, RunSpec, Toggle, option
from slotlab.methods.masks import MaskMethod
from slotlab.models import Network
from slotlab.scales import Scale

SUPERMASK_INITS = ("kn", "sc", "uc", "ku", "xn", "xc")  # unscaled: there is no density to scale by


@dataclass(frozen=True)
class SupermaskOptions(Options):
    eval_mask: str = option(
        "sampled",
        "evaluation: sampled (a fresh Bernoulli mask, as the paper) or threshold (keep sigmoid(s) > 1/2)",
        EVAL_MASKS,
        Toggle(),
    )
    binary_activations: bool = option(
        False, "BatchNorm + sign activations with the Bi-Real surrogate (MPT-1/1)"
    )
    learned_bn: bool = option(False, "learn BatchNorm scale and shift")
    fan_mode: str = option(
        "fan_in", "the fan of the Kaiming and constant inits: fan_in or fan_out (not for Xavier)", FAN_MODES
    )


class Supermask(MaskMethod):
    name = "supermask"
    description = "Zhou et al.'s supermask: masks sampled from sigmoid(scores) (inits kn|sc|uc|ku|xn|xc)"
    options_type = SupermaskOptions
    inits = SUPERMASK_INITS
    layer_class = SupermaskLayer

    def layer_options(self, config: RunSpec) -> dict[str, Any]:
        o = config.options
        return {"fan_mode": o.fan_mode, "eval_mask": o.eval_mask}

    def kept_density(self, config: RunSpec) -> float:
        return 1.0  # the mask is sampled from sigmoid(scores), no fraction is fixed

    def shape_network(self, model: Network, config: RunSpec) -> None:
        pass  # no kept fraction, so no global scope

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return super().recipe(scale, {k: v for k, v in chosen.items() if k == "binary_activations"})

    def callbacks(self, config: RunSpec) -> list:
        return []  # nothing to anneal, recycle or redraw

    def encode_layer(self, layer: nn.Module, initial: Callable[[], nn.Module]) -> dict[str, Any] | None:
        if isinstance(layer, SupermaskLayer) and layer.eval_mask != "threshold":
            raise SlotlabError(
                "this supermask evaluates with sampled masks; the compact export needs --eval-mask threshold"
            )
        return super().encode_layer(layer, initial)

    def describe_compact(self, config: RunSpec, stored_bytes: int, connections: int) -> str:
        return super().describe_compact(config, stored_bytes, connections) + " (the threshold mask)"
