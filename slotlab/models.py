"""Architectures of the random-weight papers, built from a layer factory so that every method fits every model.

| name       | source                                | form                                                       |
|------------|---------------------------------------|------------------------------------------------------------|
| lenet300   | LeCun et al.; Slot Machines, OpenLTH   | 784-300-100-10 (any input is flattened)                    |
| conv2..8   | Frankle & Carbin; Edge-Popup          | 3x3 'same' convs, max-pool after each pair, FC 256-256-10  |
| conv2..8-sm| Slot Machines (shallow_conv_models)   | 3x3 'valid' convs (Conv-6/8 upper pairs 'same'), dropout .5|
| vgg19      | Slot Machines (vgg19.py)              | 16 convs with BatchNorm, AvgPool(2), one FC 512-10         |
| resnet20   | He et al. 2016 (CIFAR ResNet)         | 3 stages x 3 basic blocks, 16/32/64 channels               |
| resnet18   | He et al. 2016 in its CIFAR form      | 3x3 stem, 4 stages x 2 basic blocks, 64..512 channels      |
| f2         | LaPerm (Qiu & Suda 2020), F2          | 784-128-64-10 (any input is flattened)                     |
| resnet50   | He et al. 2016 (ImageNet; torchvision)| 7x7 stem, 3-4-6-3 bottlenecks (stride on the 3x3), 2048-d  |
| wide_resnet50_2 | Zagoruyko & Komodakis 2016 (torchvision) | ResNet-50 with bottleneck widths doubled          |

No biases anywhere (the factories build bias-free layers); BatchNorm is non-affine for random-weight methods.
Conv-8 in the Slot Machines form is not in that paper: it extends Conv-6 by one more 'same'-padded pair of 512.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.factory import LayerFactory

Shape = tuple[int, int, int]  # (channels, height, width)


class Network(nn.Module):
    """A model that knows the input shape it was built for and says so when given another."""

    def __init__(self, name: str, input_shape: Shape, body: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.input_shape = tuple(input_shape)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise SlotlabError(
                f"model {self.name} was built for inputs of shape {self.input_shape} but got "
                f"{tuple(x.shape[1:])}; build it with input_shape={tuple(x.shape[1:])} or feed matching data"
            )
        return self.body(x)


def _fc_head(
    factory: LayerFactory, in_features: int, widths: Sequence[int], dropout: float
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in widths[:-1]:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [factory.linear(in_features, width), factory.activation()]
        in_features = width
    return layers + [factory.linear(in_features, widths[-1])]


def lenet300(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), *_fc_head(factory, math.prod(input_shape), (300, 100, num_classes), 0.0)
    )


def f2(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), *_fc_head(factory, math.prod(input_shape), (128, 64, num_classes), 0.0)
    )


@dataclass(frozen=True)
class ConvStack:
    """A VGG-style stack: ints are 3x3 convs (with the padding of their position), "M" a 2x2 max-pool."""

    plan: tuple
    paddings: tuple[int, ...]  # one per conv, in order

    def build(self, factory: LayerFactory, in_channels: int, batchnorm: bool) -> list[nn.Module]:
        layers: list[nn.Module] = []
        pads = iter(self.paddings)
        for item in self.plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(factory.conv2d(in_channels, item, 3, padding=next(pads)))
            if batchnorm:
                layers.append(factory.batchnorm2d(item))
            layers.append(factory.activation())
            in_channels = item
        return layers

    def output_shape(self, name: str, input_shape: Shape) -> Shape:
        channels, height, width = input_shape
        pads = iter(self.paddings)
        for position, item in enumerate(self.plan):
            if item == "M":
                height, width = height // 2, width // 2
            else:
                pad = next(pads)
                height, width, channels = height + 2 * pad - 2, width + 2 * pad - 2, item
            if height < 1 or width < 1:
                raise SlotlabError(
                    f"model {name} cannot take inputs of shape {tuple(input_shape)}: its feature maps shrink to "
                    f"nothing at layer {position + 1} of {len(self.plan)}; use larger images (CIFAR-10 is 3x32x32)"
                )
        return channels, height, width


_PAIRS = {2: (64,), 4: (64, 128), 6: (64, 128, 256), 8: (64, 128, 256, 512)}


def _pairs_plan(depth: int) -> tuple:
    plan: list = []
    for width in _PAIRS[depth]:
        plan += [width, width, "M"]
    return tuple(plan)


def _conv(depth: int, form: str) -> Callable[[LayerFactory, Shape, int], nn.Module]:
    """Conv-``depth`` in the Edge-Popup form ("ep": all 'same') or the Slot Machines form ("sm": the first two
    pairs 'valid', deeper pairs 'same', dropout 0.5 in the head)."""
    paddings = (1,) * depth if form == "ep" else tuple(0 if i < 4 else 1 for i in range(depth))
    stack = ConvStack(_pairs_plan(depth), paddings)
    name = f"conv{depth}" if form == "ep" else f"conv{depth}-sm"

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
        out = stack.output_shape(name, input_shape)
        features = stack.build(factory, input_shape[0], batchnorm=False)
        head = _fc_head(factory, math.prod(out), (256, 256, num_classes), 0.0 if form == "ep" else 0.5)
        return nn.Sequential(*features, nn.Flatten(), *head)

    return build


_VGG19 = ConvStack(
    (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
    paddings=(1,) * 16,
)


def vgg19(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
    out = _VGG19.output_shape("vgg19", input_shape)
    if out[1] < 2 or out[2] < 2:
        raise SlotlabError(
            f"model vgg19 needs inputs of at least 32x32, got {tuple(input_shape)}; use CIFAR-10"
        )
    features = _VGG19.build(factory, input_shape[0], batchnorm=True)
    return nn.Sequential(*features, nn.AvgPool2d(2), nn.Flatten(), factory.linear(out[0], num_classes))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity (or 1x1 conv) shortcut."""

    def __init__(self, factory: LayerFactory, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = factory.conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = factory.batchnorm2d(channels)
        self.act1 = factory.activation()
        self.conv2 = factory.conv2d(channels, channels, 3, padding=1)
        self.bn2 = factory.batchnorm2d(channels)
        self.act2 = factory.activation()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                factory.conv2d(in_channels, channels, 1, stride=stride), factory.batchnorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 (reduce) - 3x3 (carries the stride, as torchvision's "v1.5") - 1x1 (expand x4), identity or 1x1 shortcut."""

    expansion = 4

    def __init__(self, factory: LayerFactory, in_channels: int, planes: int, stride: int, width: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = factory.conv2d(in_channels, width, 1)
        self.bn1 = factory.batchnorm2d(width)
        self.act1 = factory.activation()
        self.conv2 = factory.conv2d(width, width, 3, stride=stride, padding=1)
        self.bn2 = factory.batchnorm2d(width)
        self.act2 = factory.activation()
        self.conv3 = factory.conv2d(width, out_channels, 1)
        self.bn3 = factory.batchnorm2d(out_channels)
        self.act3 = factory.activation()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                factory.conv2d(in_channels, out_channels, 1, stride=stride), factory.batchnorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(out + self.shortcut(x))


def _imagenet_resnet(
    name: str, blocks: Sequence[int], width_factor: int = 1
) -> Callable[[LayerFactory, Shape, int], nn.Module]:
    """torchvision's ResNet-50 family: 7x7/2 stem and 3x3/2 max-pool, four bottleneck stages, global pooling."""

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
        if min(input_shape[1:]) < 32:
            raise SlotlabError(
                f"model {name} downsamples by 32 and needs images of at least 32x32, got {tuple(input_shape)}; "
                f"use ImageNet (3x224x224)"
            )
        layers: list[nn.Module] = [
            factory.conv2d(input_shape[0], 64, 7, stride=2, padding=3),
            factory.batchnorm2d(64),
            factory.activation(),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        in_channels = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2**stage
            for block in range(count):
                stride = 2 if (stage > 0 and block == 0) else 1
                layers.append(Bottleneck(factory, in_channels, planes, stride, planes * width_factor))
                in_channels = planes * Bottleneck.expansion
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), factory.linear(in_channels, num_classes)]
        return nn.Sequential(*layers)

    return build


def _resnet(name: str, widths: Sequence[int], blocks: int) -> Callable[[LayerFactory, Shape, int], nn.Module]:
    def build(factory: LayerFactory, input_shape: Shape, num_classes: int) -> nn.Module:
        downsamplings = len(widths) - 1
        if min(input_shape[1:]) < 2**downsamplings:
            raise SlotlabError(
                f"model {name} needs images of at least {2**downsamplings}x{2**downsamplings}, "
                f"got {tuple(input_shape)}; use CIFAR-10"
            )
        layers: list[nn.Module] = [
            factory.conv2d(input_shape[0], widths[0], 3, padding=1),
            factory.batchnorm2d(widths[0]),
            factory.activation(),
        ]
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if (stage > 0 and block == 0) else 1
                layers.append(BasicBlock(factory, in_channels, width, stride))
                in_channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), factory.linear(in_channels, num_classes)]
        return nn.Sequential(*layers)

    return build


MODELS: dict[str, tuple[Callable[[LayerFactory, Shape, int], nn.Module], str]] = {
    "lenet300": (lenet300, "Lenet-300-100, fully connected 784-300-100-10"),
    **{
        f"conv{d}": (_conv(d, "ep"), f"Conv-{d}, Edge-Popup form: 3x3 'same' convs, FC 256-256")
        for d in _PAIRS
    },
    **{
        f"conv{d}-sm": (_conv(d, "sm"), f"Conv-{d}, Slot Machines form: 'valid' convs, dropout 0.5")
        for d in _PAIRS
    },
    "vgg19": (vgg19, "VGG-19 for CIFAR with non-affine BatchNorm, one FC layer"),
    "resnet20": (_resnet("resnet20", (16, 32, 64), 3), "CIFAR ResNet-20 (16/32/64 channels)"),
    "resnet18": (_resnet("resnet18", (64, 128, 256, 512), 2), "ResNet-18 in its CIFAR form (3x3 stem)"),
    "resnet50": (_imagenet_resnet("resnet50", (3, 4, 6, 3)), "ResNet-50 for ImageNet (torchvision layout)"),
    "wide_resnet50_2": (
        _imagenet_resnet("wide_resnet50_2", (3, 4, 6, 3), width_factor=2),
        "Wide ResNet-50-2 for ImageNet (torchvision layout)",
    ),
    "f2": (f2, "LaPerm's F2, fully connected 784-128-64-10"),
}


def model_names() -> list[str]:
    return list(MODELS)


def build_model(name: str, factory: LayerFactory, input_shape: Shape, num_classes: int) -> Network:
    """Build ``name`` with the layers of ``factory``; its values are still to be drawn (see ``slotlab.init``)."""
    if name not in MODELS:
        raise SlotlabError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    builder, _ = MODELS[name]
    return Network(name, tuple(input_shape), builder(factory, tuple(input_shape), num_classes))
