"""Finetuning under a found mask: the weights of an Edge-Popup subnetwork trained, its mask frozen.

| method        | what is learned                                                      | paper                   |
|---------------|----------------------------------------------------------------------|-------------------------|
| mask-finetune | the kept weights (or BatchNorm only), under an edge-popup run's mask | Ramanujan et al. 2020   |

The rule is ``slotlab.layers.fixed_mask`` (``FixedSubnetConv`` of the released Edge-Popup code): the source run's
evaluation mask is copied once and never changes; the weights start as the found network's and train under it,
pruned weights exactly 0 throughout. ``--mask-source`` names the edge-popup run as ``finetune --source`` names a
slots run (its folder or 12-digit hash, looked up in the same runs root), and the run keeps its starting network
in its own ``init.pt``. (Its own option name, so that the Explorer lists edge-popup runs for it.)

BatchNorm (the options of the released Biprop code, Diffenderfer & Kailkhura 2021): ``--learned-bn`` makes it
affine (starting at scale 1, shift 0 when the source's was not learned, so the start computes what the source
computes); ``--tune-batchnorm`` freezes the weights too and trains BatchNorm only (``--tune_batchnorm``);
``--bn-bias-only`` trains BatchNorm's shift and leaves its scale at 1 (``--bn_bias_only``). The architecture
options (``--binary-activations``, ``--learned-bn`` where the source learned BatchNorm) must match the source's.

Recipe: the weights train as the hidden-networks dense baselines do (SGD lr 0.01, momentum 0.9, weight decay
1e-4, cosine, 100 epochs at paper scale), lr 0.01 on the CPU scales too: the start is already a good network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.activations import BinaryActivation
from slotlab.layers.edge_popup import MaskedLayer, MaskFactory
from slotlab.layers.factory import LayerFactory
from slotlab.layers.fixed_mask import FixedMaskLayer
from slotlab.methods.base import Method, Options, RunSpec, Shape, Source, SourceRun, matching_source, option
from slotlab.methods.masks import batchnorms, check_learned_bn, freeze_bn_scale
from slotlab.methods.slots import source_hash
from slotlab.models import Network, build_model
from slotlab.scales import Scale


@dataclass(frozen=True)
class MaskFinetuneOptions(Options):
    mask_source: str = option(
        "",
        "the edge-popup run (its folder or 12-digit hash) whose mask is frozen and whose weights are finetuned",
        control=SourceRun("edge-popup"),
        label="mask source",
    )
    binary_activations: bool = option(
        False, "the source's activations are BatchNorm + sign (MPT-1/1); must match the source"
    )
    learned_bn: bool = option(
        False, "learn BatchNorm scale and shift (must be on if the source learned them)"
    )
    tune_batchnorm: bool = option(
        False, "with learned_bn: weights frozen too, only BatchNorm trains (the released --tune_batchnorm)"
    )
    bn_bias_only: bool = option(
        False, "with learned_bn: BatchNorm's shift trains, its scale stays 1 (the released --bn_bias_only)"
    )

    def __post_init__(self) -> None:
        if self.mask_source:  # one hash for one source, whether given as a folder or as the hash
            object.__setattr__(self, "mask_source", source_hash(self.mask_source))

    def check(self) -> None:
        if not self.mask_source:
            raise SlotlabError(
                "method mask-finetune needs --mask-source: the run folder or hash of an edge-popup or biprop run"
            )
        for name in ("tune_batchnorm", "bn_bias_only"):
            if getattr(self, name) and not self.learned_bn:
                raise SlotlabError(f"{name} trains BatchNorm; give --learned-bn true with it")


class MaskFinetune(Method):
    name = "mask-finetune"
    description = "trained weights under an edge-popup or biprop run's frozen mask (--mask-source)"
    options_type = MaskFinetuneOptions
    inits = ("source",)  # the weights start as the source's found network
    source_methods = ("edge-popup", "biprop")

    def source_of(self, config: RunSpec) -> str | None:
        return config.options.mask_source

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        o = config.options
        return MaskFactory(
            FixedMaskLayer,
            1.0,
            "kn",  # never drawn: the values come from the source
            bn_affine=o.learned_bn,
            binary_activations=o.binary_activations,
            train_weights=not o.tune_batchnorm,
        )

    def architecture(self, config: RunSpec, shape: Shape, classes: int) -> Network:
        model = build_model(config.model, self.layer_factory(config), shape, classes, config.width)
        check_learned_bn(config, model)
        if config.options.bn_bias_only:
            freeze_bn_scale(model)
        return model

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        source = matching_source(self.name, config, source)
        found = source.network
        binary = any(isinstance(m, BinaryActivation) for m in found.modules())
        if binary != config.options.binary_activations:
            raise SlotlabError(
                f"source run {source.name} {'has' if binary else 'has no'} binary activations; give "
                f"--binary-activations {str(binary).lower()}"
            )
        model = self.architecture(config, shape, classes)
        for name, module in model.named_modules():
            if isinstance(module, FixedMaskLayer):
                layer = found.get_submodule(name)
                if not isinstance(layer, MaskedLayer):
                    raise SlotlabError(f"source run {source.name} has no masked layer {name!r}")
                module.take(layer)
        _copy_batchnorms(found, model, source.name)
        return model

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        common = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
        if scale.is_paper:
            return {**common, "schedule": "cosine", "milestones": (), "epochs": 100}
        return {**common, **scale.short_schedule()}


def _copy_batchnorms(found: nn.Module, model: nn.Module, source_name: str) -> None:
    """The source's BatchNorm statistics (and scale and shift, where it learned them) into ``model``."""
    found_bns = dict(found.named_modules())
    for name, bn in model.named_modules():
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        old = found_bns.get(name)
        if not isinstance(old, nn.modules.batchnorm._BatchNorm):
            raise SlotlabError(f"source run {source_name} has no BatchNorm {name!r}")
        if old.affine and not bn.affine:
            raise SlotlabError(
                f"source run {source_name} learned its BatchNorm; give --learned-bn true to keep it"
            )
        bn.running_mean.copy_(old.running_mean)
        bn.running_var.copy_(old.running_var)
        bn.num_batches_tracked.copy_(old.num_batches_tracked)
        if old.affine:
            bn.weight.data.copy_(old.weight.data)
            bn.bias.data.copy_(old.bias.data)
    if not batchnorms(model) and batchnorms(found):
        raise SlotlabError(f"source run {source_name} has BatchNorm that this model lacks")
