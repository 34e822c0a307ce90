"""Architectures of the random-weight papers, built from a layer factory so that every method fits every model.

| name            | source                                  | form                                                  |
|-----------------|-----------------------------------------|-------------------------------------------------------|
| lenet300        | LeCun et al.; Slot Machines, OpenLTH    | 784-300-100-10 (any input is flattened)               |
| f1, f2          | LaPerm (Qiu & Suda 2020), F1 and F2     | 784-10 and 784-128-64-10                              |
| conv2..8        | Frankle & Carbin; Edge-Popup            | 3x3 'same' convs, max-pool after each pair, FC 256-256|
| conv2..8-sm     | Slot Machines (shallow_conv_models)     | 3x3 'valid' convs (Conv-6/8 upper pairs 'same'),      |
|                 |                                         | dropout .5 in the head                                |
| conv2/4/13-lp   | LaPerm's Keras CIFAR nets               | conv-ReLU-BN(-dropout) with biases, 'same' padding    |
| conv7-lp        | LaPerm's MNIST net                      | 7 convs with biases, dropout .4, no BN                |
| vgg19           | Slot Machines (vgg19.py)                | 16 convs with BatchNorm, AvgPool(2), one FC 512-10    |
| vgg-small(-wide)| Biprop (VGG_Small, Wide_VGG_Small x1.25)| 128,128,M,256,256,M,512,512,M with BN, one FC         |
| resnet20..110   | He et al. 2016, Sec. 4.2 (CIFAR ResNet) | 3 stages x n basic blocks, 16/32/64 channels          |
| resnet18        | He et al. 2016 in its CIFAR form        | 3x3 stem, 4 stages x 2 basic blocks, 64..512 channels |
| resnet18-imagenet, resnet34 | He et al. 2016 (torchvision)| 7x7 stem, 4 stages of basic blocks                    |
| resnet50, resnet101 | He et al. 2016 (torchvision "v1.5") | 7x7 stem, 4 stages of bottlenecks (stride on the 3x3) |
| wide_resnet50_2, wide_resnet101_2 | Zagoruyko & Komodakis 2016 | bottleneck inner widths doubled (torchvision)      |

Biases only in the LaPerm nets (a ``Bias`` after the layer; the factories build bias-free layers), learned exactly
where the factory learns BatchNorm; BatchNorm is non-affine for random-weight methods.
Conv-8 in the Slot Machines form is not in that paper: it extends Conv-6 by one more 'same'-padded pair of 512.

Width (Edge-Popup's "going wider", Ramanujan et al. 2020 Sec. 4.2; Biprop's and IWR's width sweeps): every hidden
channel count and hidden unit count n becomes ``int(n * width)``, truncated as hidden-networks' ``scale()`` does
(``models/frankle.py``, ``Conv4Wide``); the input channels and the class count stay. ``width=1`` is the plain model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.dense import DenseFactory
from slotlab.layers.factory import LayerFactory

Shape = tuple[int, int, int]  # (channels, height, width)
Builder = Callable[[LayerFactory, Shape, int, float], nn.Module]  # (factory, input shape, classes, width)


class Network(nn.Module):
    """A model that knows the input shape (and width) it was built for and says so when given another input."""

    def __init__(self, name: str, input_shape: Shape, body: nn.Module, width: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.input_shape = tuple(input_shape)
        self.width = width
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise SlotlabError(
                f"model {self.name} was built for inputs of shape {self.input_shape} but got "
                f"{tuple(x.shape[1:])}; build it with input_shape={tuple(x.shape[1:])} or feed matching data"
            )
        return self.body(x)


def scaled(channels: int, width: float) -> int:
    """``int(channels * width)``: hidden-networks' ``scale()`` (truncation, float product as written there)."""
    out = int(channels * width)
    if out < 1:
        raise SlotlabError(
            f"width {width} leaves a layer of {channels} with no units (int({channels} * {width}) = 0); "
            f"use a larger width"
        )
    return out


class Bias(nn.Module):
    """A shift per output unit after a bias-free layer (LaPerm's Keras layers have biases), shape (units,).

    Starts at zero (the seeds draw only weights); learned where ``trainable`` (the factory's rule for BatchNorm:
    dense and LaPerm learn it, slots and masks keep it at zero)."""

    def __init__(self, units: int, spatial: bool, trainable: bool) -> None:
        super().__init__()
        self.spatial = spatial
        self.bias = nn.Parameter(torch.zeros(units), requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.bias.view(1, -1, 1, 1) if self.spatial else self.bias)


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


def _fully_connected(hidden: Sequence[int]) -> Builder:
    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        if not hidden and width != 1:
            raise SlotlabError(
                f"a model without hidden layers has nothing to widen; leave width at 1, got {width}"
            )
        units = [scaled(n, width) for n in hidden]
        return nn.Sequential(
            nn.Flatten(), *_fc_head(factory, math.prod(input_shape), (*units, num_classes), 0.0)
        )

    return build


@dataclass(frozen=True)
class ConvStack:
    """A VGG-style stack: ints are 3x3 convs (with the padding of their position), "M" a 2x2 max-pool.

    ``bn_after_pool`` puts a conv's BatchNorm after the pool that follows it (Biprop's VGG-Small: conv, pool, BN,
    activation)."""

    plan: tuple
    paddings: tuple[int, ...]  # one per conv, in order

    def widened(self, width: float) -> ConvStack:
        return ConvStack(tuple(i if i == "M" else scaled(i, width) for i in self.plan), self.paddings)

    def build(
        self, factory: LayerFactory, in_channels: int, batchnorm: bool, bn_after_pool: bool = False
    ) -> list[nn.Module]:
        layers: list[nn.Module] = []
        pads = iter(self.paddings)
        plan = list(self.plan)
        for position, item in enumerate(plan):
            if item == "M":
                if not bn_after_pool:
                    layers.append(nn.MaxPool2d(2))
                continue
            layers.append(factory.conv2d(in_channels, item, 3, padding=next(pads)))
            if bn_after_pool and position + 1 < len(plan) and plan[position + 1] == "M":
                layers.append(nn.MaxPool2d(2))
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


def _conv(depth: int, form: str) -> Builder:
    """Conv-``depth`` in the Edge-Popup form ("ep": all 'same') or the Slot Machines form ("sm": the first two
    pairs 'valid', deeper pairs 'same', dropout 0.5 in the head). Width scales the convs and the FC 256s, as
    hidden-networks' Conv4Wide / Conv6Wide."""
    paddings = (1,) * depth if form == "ep" else tuple(0 if i < 4 else 1 for i in range(depth))
    plain = ConvStack(_pairs_plan(depth), paddings)
    name = f"conv{depth}" if form == "ep" else f"conv{depth}-sm"

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        stack = plain.widened(width)
        out = stack.output_shape(name, input_shape)
        features = stack.build(factory, input_shape[0], batchnorm=False)
        hidden = scaled(256, width)
        head = _fc_head(factory, math.prod(out), (hidden, hidden, num_classes), 0.0 if form == "ep" else 0.5)
        return nn.Sequential(*features, nn.Flatten(), *head)

    return build


_VGG19 = ConvStack(
    (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
    paddings=(1,) * 16,
)


def vgg19(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
    stack = _VGG19.widened(width)
    out = stack.output_shape("vgg19", input_shape)
    if out[1] < 2 or out[2] < 2:
        raise SlotlabError(
            f"model vgg19 needs inputs of at least 32x32, got {tuple(input_shape)}; use CIFAR-10"
        )
    features = stack.build(factory, input_shape[0], batchnorm=True)
    return nn.Sequential(*features, nn.AvgPool2d(2), nn.Flatten(), factory.linear(out[0], num_classes))


_VGG_SMALL = ConvStack((128, 128, "M", 256, 256, "M", 512, 512, "M"), paddings=(1,) * 6)


def _vgg_small(factor: float) -> Builder:
    """Biprop's VGG-Small (Diffenderfer & Kailkhura 2021, Table 1; the VGG-Small of Zhang et al. 2018): six 3x3
    convs, each followed by BatchNorm and the activation, the pool of a pair between its second conv and that
    conv's BatchNorm (as Biprop's ``VGG_Small_bn_BinAct``), one FC layer. ``factor`` 1.25 is the Wide VGG-Small of
    the MPT-1/1 results (Biprop's ``Wide_VGG_Small``: 16/32/64 x 10). The released ``VGG_Small`` (MPT-1/32) leaves
    out four of the ReLUs and two BatchNorms; the parameter count is the same."""

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        stack = _VGG_SMALL.widened(factor * width)
        out = stack.output_shape("vgg-small", input_shape)
        features = stack.build(factory, input_shape[0], batchnorm=True, bn_after_pool=True)
        return nn.Sequential(*features, nn.Flatten(), factory.linear(math.prod(out), num_classes))

    return build


# --- LaPerm's Keras networks: ("conv", channels, kernel, stride, padding), ("bn",), ("drop", p), ("pool",),
# ("flat",), ("dense", units); every conv and dense has a bias and (but the last) a ReLU right after it.
_LP_CONV2_HEAD = (("flat",), ("dense", 256), ("drop", 0.5), ("bn",), ("dense", 256), ("bn",), ("drop", 0.5))
_LP_BLOCK64 = (("conv", 64, 3, 1, 1), ("bn",), ("drop", 0.3), ("conv", 64, 3, 1, 1), ("bn",), ("pool",))


def _lp_vgg_block(channels: int, convs: int) -> tuple:
    """``convs`` conv-ReLU-BN, dropout 0.4 after all but the last, then a pool (LaPerm's Conv4 and Conv13)."""
    ops: list = []
    for i in range(convs):
        ops += [("conv", channels, 3, 1, 1), ("bn",)] + ([("drop", 0.4)] if i < convs - 1 else [])
    return (*ops, ("pool",))


_LAPERM_PLANS: dict[str, tuple] = {
    "conv2-lp": (*_LP_BLOCK64, *_LP_CONV2_HEAD),
    "conv4-lp": (*_LP_BLOCK64, *_lp_vgg_block(128, 2), *_LP_CONV2_HEAD),
    "conv13-lp": (
        *_LP_BLOCK64,
        *_lp_vgg_block(128, 2),
        *_lp_vgg_block(256, 3),
        *_lp_vgg_block(512, 3),
        *_lp_vgg_block(512, 3),
        ("drop", 0.5),
        ("flat",),
        ("dense", 512),
        ("bn",),
        ("drop", 0.5),
    ),
    "conv7-lp": (
        ("conv", 32, 3, 1, 0),
        ("conv", 32, 3, 1, 0),
        ("conv", 32, 5, 2, 2),
        ("drop", 0.4),
        ("conv", 64, 3, 1, 0),
        ("conv", 64, 3, 1, 0),
        ("conv", 64, 5, 2, 2),
        ("drop", 0.4),
        ("conv", 128, 4, 1, 0),
        ("flat",),
        ("drop", 0.4),
    ),
}


def _laperm_net(name: str) -> Builder:
    """One of LaPerm's notebook networks (Qiu & Suda 2020, Sec. 5; ``notebooks/Conv*.ipynb``), then Dense(classes)."""
    plan = _LAPERM_PLANS[name]

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        trainable = factory.bn_affine
        layers: list[nn.Module] = []
        channels, height, side = input_shape
        flat = False
        for op in plan:
            kind = op[0]
            if kind == "conv":
                out = scaled(op[1], width)
                kernel, stride, pad = op[2:]
                layers += [
                    factory.conv2d(channels, out, kernel, stride=stride, padding=pad),
                    Bias(out, True, trainable),
                    factory.activation(),
                ]
                channels = out
                height, side = (
                    (height + 2 * pad - kernel) // stride + 1,
                    (side + 2 * pad - kernel) // stride + 1,
                )
            elif kind == "dense":
                out = scaled(op[1], width)
                layers += [factory.linear(channels, out), Bias(out, False, trainable), factory.activation()]
                channels = out
            elif kind == "bn":
                layers.append(
                    nn.BatchNorm1d(channels, affine=trainable) if flat else factory.batchnorm2d(channels)
                )
            elif kind == "drop":
                layers.append(nn.Dropout(op[1]))
            elif kind == "pool":
                layers.append(nn.MaxPool2d(2))
                height, side = height // 2, side // 2
            else:  # flat
                layers.append(nn.Flatten())
                channels, flat = channels * height * side, True
            if height < 1 or side < 1:
                raise SlotlabError(
                    f"model {name} cannot take inputs of shape {tuple(input_shape)}: its feature maps shrink to "
                    f"nothing; use larger images (MNIST is 1x28x28, CIFAR-10 3x32x32)"
                )
        layers += [factory.linear(channels, num_classes), Bias(num_classes, False, trainable)]
        return nn.Sequential(*layers)

    return build


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
    name: str, blocks: Sequence[int], bottleneck: bool = True, width_factor: int = 1
) -> Builder:
    """torchvision's ResNet family: 7x7/2 stem and 3x3/2 max-pool, four stages (basic blocks for ResNet-18/34,
    bottlenecks otherwise; ``width_factor`` 2: the wide ResNets' doubled inner width), global pooling."""

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        if min(input_shape[1:]) < 32:
            raise SlotlabError(
                f"model {name} downsamples by 32 and needs images of at least 32x32, got {tuple(input_shape)}; "
                f"use ImageNet (3x224x224)"
            )
        stem = scaled(64, width)
        layers: list[nn.Module] = [
            factory.conv2d(input_shape[0], stem, 7, stride=2, padding=3),
            factory.batchnorm2d(stem),
            factory.activation(),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        in_channels = stem
        for stage, count in enumerate(blocks):
            planes = scaled(64 * 2**stage, width)
            for block in range(count):
                stride = 2 if (stage > 0 and block == 0) else 1
                if bottleneck:
                    layers.append(Bottleneck(factory, in_channels, planes, stride, planes * width_factor))
                    in_channels = planes * Bottleneck.expansion
                else:
                    layers.append(BasicBlock(factory, in_channels, planes, stride))
                    in_channels = planes
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), factory.linear(in_channels, num_classes)]
        return nn.Sequential(*layers)

    return build


def _resnet(name: str, widths: Sequence[int], blocks: int) -> Builder:
    """A CIFAR ResNet (He et al. 2016, Sec. 4.2): 3x3 stem, ``blocks`` basic blocks per stage, 1x1 conv shortcuts
    where the shape changes (option B)."""

    def build(factory: LayerFactory, input_shape: Shape, num_classes: int, width: float) -> nn.Module:
        downsamplings = len(widths) - 1
        if min(input_shape[1:]) < 2**downsamplings:
            raise SlotlabError(
                f"model {name} needs images of at least {2**downsamplings}x{2**downsamplings}, "
                f"got {tuple(input_shape)}; use CIFAR-10"
            )
        stages = [scaled(w, width) for w in widths]
        layers: list[nn.Module] = [
            factory.conv2d(input_shape[0], stages[0], 3, padding=1),
            factory.batchnorm2d(stages[0]),
            factory.activation(),
        ]
        in_channels = stages[0]
        for stage, channels in enumerate(stages):
            for block in range(blocks):
                stride = 2 if (stage > 0 and block == 0) else 1
                layers.append(BasicBlock(factory, in_channels, channels, stride))
                in_channels = channels
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), factory.linear(in_channels, num_classes)]
        return nn.Sequential(*layers)

    return build


CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)  # depth 6n + 2: n basic blocks per stage

MODELS: dict[str, tuple[Builder, str]] = {
    "lenet300": (_fully_connected((300, 100)), "Lenet-300-100, fully connected 784-300-100-10"),
    **{
        f"conv{d}": (_conv(d, "ep"), f"Conv-{d}, Edge-Popup form: 3x3 'same' convs, FC 256-256")
        for d in _PAIRS
    },
    **{
        f"conv{d}-sm": (_conv(d, "sm"), f"Conv-{d}, Slot Machines form: 'valid' convs, dropout 0.5")
        for d in _PAIRS
    },
    "vgg19": (vgg19, "VGG-19 for CIFAR with non-affine BatchNorm, one FC layer"),
    "vgg-small": (
        _vgg_small(1.0),
        "VGG-Small (Biprop's CIFAR net): 128..512 channels with BatchNorm, one FC",
    ),
    "vgg-small-wide": (_vgg_small(1.25), "Wide VGG-Small: VGG-Small with every channel count x1.25"),
    **{
        f"resnet{d}": (
            _resnet(f"resnet{d}", (16, 32, 64), (d - 2) // 6),
            f"CIFAR ResNet-{d} (16/32/64 channels)",
        )
        for d in CIFAR_RESNET_DEPTHS
    },
    "resnet18": (_resnet("resnet18", (64, 128, 256, 512), 2), "ResNet-18 in its CIFAR form (3x3 stem)"),
    "resnet18-imagenet": (
        _imagenet_resnet("resnet18-imagenet", (2, 2, 2, 2), bottleneck=False),
        "ResNet-18 for ImageNet (torchvision layout)",
    ),
    "resnet34": (
        _imagenet_resnet("resnet34", (3, 4, 6, 3), bottleneck=False),
        "ResNet-34 for ImageNet (torchvision layout)",
    ),
    "resnet50": (_imagenet_resnet("resnet50", (3, 4, 6, 3)), "ResNet-50 for ImageNet (torchvision layout)"),
    "resnet101": (
        _imagenet_resnet("resnet101", (3, 4, 23, 3)),
        "ResNet-101 for ImageNet (torchvision layout)",
    ),
    "wide_resnet50_2": (
        _imagenet_resnet("wide_resnet50_2", (3, 4, 6, 3), width_factor=2),
        "Wide ResNet-50-2 for ImageNet (torchvision layout)",
    ),
    "wide_resnet101_2": (
        _imagenet_resnet("wide_resnet101_2", (3, 4, 23, 3), width_factor=2),
        "Wide ResNet-101-2 for ImageNet (torchvision layout)",
    ),
    "f1": (_fully_connected(()), "LaPerm's F1, fully connected 784-10"),
    "f2": (_fully_connected((128, 64)), "LaPerm's F2, fully connected 784-128-64-10"),
    "conv2-lp": (_laperm_net("conv2-lp"), "LaPerm's Conv2: biases, BatchNorm and dropout, 'same' convs"),
    "conv4-lp": (_laperm_net("conv4-lp"), "LaPerm's Conv4: biases, BatchNorm and dropout, 'same' convs"),
    "conv13-lp": (_laperm_net("conv13-lp"), "LaPerm's Conv13 (VGG-16-like): biases, BatchNorm, dropout"),
    "conv7-lp": (_laperm_net("conv7-lp"), "LaPerm's Conv7 for MNIST: 7 convs with biases, dropout 0.4"),
}

# the models trained on 1x28x28 images in their papers (the rest on CIFAR-10 or ImageNet)
MNIST_MODELS = ("lenet300", "f1", "f2", "conv7-lp")


def model_names() -> list[str]:
    return list(MODELS)


def build_model(
    name: str, factory: LayerFactory, input_shape: Shape, num_classes: int, width: float = 1.0
) -> Network:
    """Build ``name`` with the layers of ``factory``, its hidden widths times ``width``; its values are still to be
    drawn (see ``slotlab.init``)."""
    if name not in MODELS:
        raise SlotlabError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    if not (width > 0 and math.isfinite(width)):
        raise SlotlabError(f"width must be a positive finite multiplier (1: the paper's model), got {width}")
    builder, _ = MODELS[name]
    shape = tuple(input_shape)
    return Network(name, shape, builder(factory, shape, num_classes, width), width)


def check_width(name: str, width: float, input_shape: Shape) -> None:
    """Raise ``SlotlabError`` where ``name`` cannot be built at ``width`` (a layer left with no units, a model with
    nothing to widen); builds on the meta device, so it costs no memory."""
    with torch.device("meta"):
        build_model(name, DenseFactory(), input_shape, 10, width)
