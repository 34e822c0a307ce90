"""The layer factory: models ask it for layers, methods decide what those layers are.

A model never names ``nn.Linear`` or ``SlotLinear`` itself; it calls ``factory.linear(...)``. This is how every
architecture works with every method (Lenet-300-100 with slots, Conv-4 with Edge-Popup, VGG-19 with Biprop).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class RandomWeightLayer(Protocol):
    """A layer whose random values are drawn by slotlab's seeded initialisation.

    ``init_values`` draws what the method keeps fixed (or trains, for dense layers) from the weight-value
    generator; ``init_scores`` draws what the method learns instead from the score generator. Keeping the two
    generators apart is what makes "same weights, different score seed" possible.
    """

    def init_values(self, generator: torch.Generator) -> None: ...

    def init_scores(self, generator: torch.Generator) -> None: ...

    def effective_weight(self) -> torch.Tensor: ...


@runtime_checkable
class SelectingLayer(Protocol):
    """A random-weight layer whose learned object is a discrete choice, which the analyses record.

    ``selection()`` returns that choice for the deterministic (evaluation) rule, shaped like the weight: the slot
    index per connection as a small integer tensor (Slot Machines), or the keep-mask as a bool tensor (Edge-Popup,
    Biprop). Analyses (snapshots, flip rates, mask similarity) work on these tensors only.
    """

    def selection(self) -> torch.Tensor: ...


class LayerFactory:
    """Builds the layers of a model; subclasses swap in a method's weight rule.

    The base class supplies the parts that are shared by all methods: BatchNorm (non-affine unless asked, as the
    random-weight papers use it) and the activation.
    """

    name = "base"

    def __init__(self, bn_affine: bool = False) -> None:
        self.bn_affine = bn_affine

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        raise NotImplementedError

    def conv2d(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module:
        raise NotImplementedError

    def batchnorm2d(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, affine=self.bn_affine)

    def activation(self) -> nn.Module:
        return nn.ReLU()


def fans(weight_shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of one weight tensor: Linear (out, in), Conv (out, in, kh, kw)."""
    receptive = math.prod(weight_shape[2:]) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive, weight_shape[0] * receptive
