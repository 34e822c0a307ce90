"""Seeded drawing of every layer's random values and scores, from two separate generators.

Values come from the weight-value seed, scores from the score seed, each from its own CPU generator walked over
the layers in module order. So the same weight seed gives bit-identical values whatever the score seed, device
or method options (the mask-landscape experiments rest on this), and a compact export can regenerate the values
from the seed alone.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from slotlab.layers.factory import RandomWeightLayer


def random_weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, layer) pairs whose values slotlab draws, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RandomWeightLayer)]


def stream_seed(stream: str, seed: int) -> int:
    """A generator seed for one named stream: equal user seeds must not give equal (correlated) draws.

    Without this, weight_seed = score_seed = 0 would draw values and scores from the same uniform sequence, and
    greedy selection would simply pick each connection's largest value.
    """
    digest = hashlib.sha256(f"{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@torch.no_grad()
def initialize(model: nn.Module, weight_seed: int, score_seed: int) -> nn.Module:
    """Draw all values with ``weight_seed`` and all scores with ``score_seed``; returns ``model``."""
    value_gen = torch.Generator().manual_seed(stream_seed("values", weight_seed))
    score_gen = torch.Generator().manual_seed(stream_seed("scores", score_seed))
    for _, layer in random_weight_layers(model):
        layer.init_values(value_gen)
        layer.init_scores(score_gen)
    return model
