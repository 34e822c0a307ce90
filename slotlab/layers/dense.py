"""Dense layers: the ordinary trained-weights baseline, built by the same factory as every method.

No biases, as in the random-weight papers' architectures, so that a dense model and a found model have the same
connections. Initialisation is seeded by slotlab (weight-value generator), not by PyTorch's global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slotlab.layers.factory import LayerFactory, fans

DENSE_INITS = ("glorot", "kaiming")


def _draw_dense(weight: torch.Tensor, init: str, generator: torch.Generator) -> None:
    fan_in, fan_out = fans(tuple(weight.shape))
    if init == "glorot":  # U(-b, b), b = sqrt(6 / (fan_in + fan_out)): the Slot Machines value distribution
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        values = torch.rand(weight.shape, generator=generator) * (2 * bound) - bound
    else:  # Kaiming normal, fan_in, ReLU gain
        values = torch.randn(weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
    with torch.no_grad():
        weight.copy_(values)


class _SeededInit:
    """What both dense layers share: their weights are drawn by slotlab's seeded generator, they have no scores."""

    weight: torch.Tensor
    init: str

    def init_values(self, generator: torch.Generator) -> None:
        _draw_dense(self.weight, self.init, generator)

    def init_scores(self, generator: torch.Generator) -> None:
        """Dense layers have no scores."""

    def effective_weight(self) -> torch.Tensor:
        return self.weight


class DenseLinear(_SeededInit, nn.Linear):
    """``nn.Linear`` without bias whose initial weights come from slotlab's seeded generator."""

    def __init__(self, in_features: int, out_features: int, init: str = "glorot") -> None:
        super().__init__(in_features, out_features, bias=False)
        self.init = init


class DenseConv2d(_SeededInit, nn.Conv2d):
    """``nn.Conv2d`` without bias whose initial weights come from slotlab's seeded generator."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, init: str
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.init = init


class DenseFactory(LayerFactory):
    """Trained weights: the baseline every found network is compared with."""

    name = "dense"

    def __init__(self, init: str = "glorot", bn_affine: bool = True) -> None:
        super().__init__(bn_affine=bn_affine)
        self.init = init

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return DenseLinear(in_features, out_features, self.init)

    def conv2d(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module:
        return DenseConv2d(in_channels, out_channels, kernel_size, stride, padding, self.init)
