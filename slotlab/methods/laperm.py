"""LaPerm, training by reconnecting (Qiu & Suda, NeurIPS 2020, arXiv 2003.02570, Algorithm 1).

An inner optimiser trains the weights; every ``sync_period`` (the paper's k) steps each weight tensor's rows are
replaced by their initial values, permuted to follow the order of the inner weights (``slotlab.laperm``). The
network is also synced before every evaluation, so each reported number belongs to a permutation of the initial
network; ``--sync-at-evaluation false`` is the released notebooks' rule (syncs at multiples of k only, so where k
does not divide the epoch an evaluation may see the inner weights).

Initial variants (as in the paper): a random sparse start (``init_density``: a fraction of each weight tensor left
non-zero; the zeros then move like any value) and the weight-agnostic start (``shared_value``: every weight one
value before the zeros).

Init: ``--init he-uniform`` is the paper's (its notebooks' Keras ``he_uniform``: U(-b, b), b = sqrt(6 / fan_in));
made from the same seeded uniform draws as ``glorot``, rescaled by b_he / b_glorot per layer, so the two inits of
one weight seed are the same network up to a per-layer scale. The default stays ``glorot``.

Baseline ``random-permutation`` (Qiu & Suda 2020, the no-learning reference): the same initial network with every
row randomly permuted once, from the score seed, and nothing trained; it shows what the learned order adds.

Recipe (the paper and its released notebooks): Adam at lr 1e-3 inside (the method's default whatever the scale); F2
trains 25 epochs at batch 128, Lenet-300-100 and the conv networks 45 epochs at batch 50, with a cosine schedule in
place of the notebooks' 0.95^epoch decay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slotlab.callback import Callback
from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.laperm import (
    LaPermSync,
    agnosticize,
    check_permutable_kinds,
    check_sync_period,
    parse_densities,
    randomly_permute_rows,
    sparsify,
    weight_tensors,
)
from slotlab.layers.dense import DENSE_INITS, DenseFactory
from slotlab.layers.factory import LayerFactory, fans
from slotlab.methods.base import Method, Options, RunSpec, Shape, Source, Steps, option
from slotlab.models import Network, build_model
from slotlab.scales import Scale

ADAM = {"optimizer": "adam", "lr": 1e-3}
HE_UNIFORM = "he-uniform"
LAPERM_INITS = (*DENSE_INITS, HE_UNIFORM)


@torch.no_grad()
def he_uniform_from_glorot(model: nn.Module) -> None:
    """Rescale glorot-uniform weights U(-sqrt(6/(fan_in+fan_out)), ...) to He-uniform U(-sqrt(6/fan_in), ...)."""
    for _, weight in weight_tensors(model):
        fan_in, fan_out = fans(tuple(weight.shape))
        weight.mul_(math.sqrt((fan_in + fan_out) / fan_in))


@dataclass(frozen=True)
class StartOptions(Options):
    """The initial network of LaPerm and of its random-permutation baseline."""

    permute_bias: bool = option(False, "also permute biases (skipped and trained freely by default)")
    permute_norm: bool = option(
        False, "also permute BatchNorm scales and shifts (skipped and trained freely by default)"
    )
    init_density: str = option(
        "",
        "fraction of each weight tensor left non-zero at initialisation (random sparse init); one value, or one "
        "per layer such as 1/15,1/7,1/3; empty: dense",
    )
    shared_value: float = option(
        0.0, "weight-agnostic start: every weight this one value before init_density's zeros (0: off)"
    )

    def check(self) -> None:
        parse_densities(self.init_density)
        if not math.isfinite(self.shared_value):
            raise SlotlabError(f"shared_value must be a finite number (0: off), got {self.shared_value}")


@dataclass(frozen=True)
class LaPermOptions(StartOptions):
    sync_period: int = option(
        20,
        "sync every K optimiser steps (rows become permutations of their initial values)",
        control=Steps((1, 5, 20, 100, 500, 1000)),
    )
    sync_at_evaluation: bool = option(
        True,
        "also sync before every evaluation, so every reported network is a permutation of the initial one; false: "
        "the released notebooks' rule (syncs at multiples of k only; evaluations between them see the inner weights)",
    )

    def check(self) -> None:
        check_sync_period(self.sync_period)
        super().check()


class LaPerm(Method):
    name = "laperm"
    description = (
        "LaPerm: trained weights synced every --sync-period steps to permutations of the initial rows "
        "(Adam, lr 1e-3 unless given)"
    )
    options_type = LaPermOptions
    inits = LAPERM_INITS
    defaults = ADAM

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        init = self.init_name(config)
        return DenseFactory(DENSE_INITS[0] if init == HE_UNIFORM else init)  # He-uniform: rescaled, below

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        """Dense seeded weights, then the paper's initial variants: one shared value, random zeros."""
        o: StartOptions = config.options
        model = build_model(config.model, self.layer_factory(config), shape, classes, config.width)
        check_permutable_kinds(model, o.permute_bias, o.permute_norm)
        initialize(model, config.weight_seed, config.score_seed)
        if self.init_name(config) == HE_UNIFORM:
            he_uniform_from_glorot(model)
        if o.shared_value != 0:
            agnosticize(model, o.shared_value)
        densities = parse_densities(o.init_density)
        if densities and densities != [1.0]:
            sparsify(model, densities, config.weight_seed)
        return model

    def callbacks(self, config: RunSpec) -> list[Callback]:
        o: LaPermOptions = config.options
        return [LaPermSync(o.sync_period, o.permute_bias, o.permute_norm, o.sync_at_evaluation)]

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        if scale.is_paper:
            f2 = chosen.get("model") == "f2"
            return {
                **ADAM,
                "schedule": "cosine",
                "milestones": (),
                "epochs": 25 if f2 else 45,
                "batch_size": 128 if f2 else 50,
            }
        return {**ADAM, **scale.short_schedule()}


class RandomPermutation(LaPerm):
    name = "random-permutation"
    description = "baseline: LaPerm's initial network with every row randomly permuted, nothing learned"
    options_type = StartOptions

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        o: StartOptions = config.options
        model = super().initial_network(config, shape, classes)
        randomly_permute_rows(model, config.score_seed, o.permute_bias, o.permute_norm)
        for parameter in model.parameters():
            parameter.requires_grad_(False)  # the permutation is the network; nothing learns
        return model

    def callbacks(self, config: RunSpec) -> list[Callback]:
        return []

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().recipe(scale, chosen), "epochs": 1}
