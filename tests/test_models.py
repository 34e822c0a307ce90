import pytest
import torch

from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers import DenseFactory, SlotFactory
from slotlab.layers.factory import RandomWeightLayer
from slotlab.models import MNIST_MODELS, MODELS, build_model

CIFAR, MNIST = (3, 32, 32), (1, 28, 28)


# ImageNet-sized networks (tens of millions of weights) are checked by parameter count on the meta device below
HEAVY = ("resnet34", "resnet50", "resnet101", "wide_resnet50_2", "wide_resnet101_2")


@pytest.mark.parametrize("name", [n for n in MODELS if n not in HEAVY])
@pytest.mark.parametrize("factory", [SlotFactory(k=2), DenseFactory()], ids=["slots", "dense"])
def test_every_model_builds_and_runs_with_every_layer_rule(name: str, factory) -> None:
    shape = MNIST if name in MNIST_MODELS else CIFAR
    model = initialize(build_model(name, factory, shape, 10), 0, 0).eval()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    layers = [m for m in model.modules() if isinstance(m, RandomWeightLayer)]
    assert layers and all(
        type(m).__name__.startswith("Slot" if factory.name == "slots" else "Dense") for m in layers
    )
    # no biases on random-weight layers (LaPerm's nets carry theirs in a separate Bias)
    assert all(getattr(m, "bias", None) is None for m in layers)


def test_architectures_match_the_papers() -> None:
    def widths(name, shape=CIFAR):
        model = build_model(name, DenseFactory(), shape, 10)
        return [m.weight.shape for m in model.modules() if isinstance(m, RandomWeightLayer)]

    assert widths("lenet300", MNIST) == [(300, 784), (100, 300), (10, 100)]
    assert widths("conv4-sm")[4] == (256, 3200)  # Slot Machines Conv-4: valid padding, flatten 128*5*5
    assert widths("conv2-sm")[2] == (256, 12544)
    assert widths("conv6-sm")[6] == (256, 1024)
    assert widths("conv4")[4] == (256, 8192)  # Edge-Popup Conv-4: same padding, 128*8*8
    assert widths("conv8")[8] == (256, 2048)
    assert widths("vgg19")[-1] == (10, 512) and len(widths("vgg19")) == 17
    assert len(widths("resnet20")) == 22 and len(widths("resnet18")) == 21  # incl. 1x1 shortcuts
    dropouts = [
        m.p
        for m in build_model("conv4-sm", DenseFactory(), CIFAR, 10).modules()
        if isinstance(m, torch.nn.Dropout)
    ]
    assert dropouts == [0.5, 0.5]


def test_vgg19_batchnorm_is_not_affine_for_random_weights() -> None:
    model = build_model("vgg19", SlotFactory(k=2), CIFAR, 10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 16 and all(not m.affine for m in norms)


def test_wrong_input_shape_is_a_one_line_error() -> None:
    model = build_model("conv4", DenseFactory(), CIFAR, 10)
    with pytest.raises(SlotlabError, match=r"built for inputs of shape \(3, 32, 32\) but got \(1, 28, 28\)"):
        model(torch.randn(1, 1, 28, 28))


def test_too_small_images_are_refused_at_build_time() -> None:
    with pytest.raises(SlotlabError, match="cannot take inputs of shape"):
        build_model("conv6-sm", DenseFactory(), (3, 8, 8), 10)


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(SlotlabError, match="valid models: lenet300, conv2"):
        build_model("lenet5", DenseFactory(), MNIST, 10)


def weight_shapes(name: str, width: float = 1.0, shape=CIFAR) -> list[tuple[int, ...]]:
    model = build_model(name, DenseFactory(), shape, 10, width)
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, RandomWeightLayer)]


def reference_conv4_wide(width: float) -> list[tuple[int, ...]]:
    """hidden-networks' Conv4Wide, written out: scale(n) = int(n * width_mult)."""

    def s(n: int) -> int:
        return int(n * width)

    return [
        (s(64), 3, 3, 3),
        (s(64), s(64), 3, 3),
        (s(128), s(64), 3, 3),
        (s(128), s(128), 3, 3),
        (s(256), s(128) * 8 * 8),
        (s(256), s(256)),
        (10, s(256)),
    ]


@pytest.mark.parametrize("width", [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 1 / 3])
def test_widths_match_the_reference_channel_counts(width: float) -> None:
    assert weight_shapes("conv4", width) == reference_conv4_wide(width)
    lenet = weight_shapes("lenet300", width, MNIST)
    assert lenet == [(int(300 * width), 784), (int(100 * width), int(300 * width)), (10, int(100 * width))]
    vgg = weight_shapes("vgg-small", width)
    assert vgg[0] == (int(128 * width), 3, 3, 3) and vgg[-1] == (10, int(512 * width) * 4 * 4)
    resnet = weight_shapes("resnet20", width)
    assert resnet[0] == (int(16 * width), 3, 3, 3) and resnet[-1] == (10, int(64 * width))


def test_width_truncates_as_the_reference_and_refuses_an_empty_layer() -> None:
    # 300 * 0.57 is 170.99999999999997 in floating point: int() gives 170, as hidden-networks' scale()
    assert weight_shapes("lenet300", 0.57, MNIST)[:2] == [(170, 784), (56, 170)]
    with pytest.raises(SlotlabError, match=r"int\(64 \* 0.01\) = 0"):
        build_model("conv4", DenseFactory(), CIFAR, 10, 0.01)
    with pytest.raises(SlotlabError, match="nothing to widen"):
        build_model("f1", DenseFactory(), MNIST, 10, 2.0)


def n_weights(name: str, shape=CIFAR, classes: int = 10, width: float = 1.0) -> int:
    with torch.device("meta"):
        model = build_model(name, DenseFactory(bn_affine=False), shape, classes, width)
    return sum(p.numel() for p in model.parameters())


def torchvision_weights(model: torch.nn.Module) -> int:
    """Conv and linear weights only: slotlab's layers have no biases and random-weight BatchNorm no parameters."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


@pytest.mark.parametrize(
    "name, reference",
    [
        ("resnet18-imagenet", "resnet18"),
        ("resnet34", "resnet34"),
        ("resnet50", "resnet50"),
        ("resnet101", "resnet101"),
        ("wide_resnet50_2", "wide_resnet50_2"),
        ("wide_resnet101_2", "wide_resnet101_2"),
    ],
)
def test_imagenet_resnets_have_torchvisions_weight_count(name: str, reference: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        theirs = getattr(torchvision.models, reference)(num_classes=1000)
    assert n_weights(name, (3, 224, 224), 1000) == torchvision_weights(theirs)


def cifar_resnet_weights(n: int) -> int:
    """He et al.'s CIFAR ResNet-(6n+2), counted by hand: stem, 3 stages of n blocks of two 3x3 convs, 1x1 conv
    shortcuts where the width changes, FC 64-10."""
    total = 3 * 16 * 9
    for stage, width in enumerate((16, 32, 64)):
        previous = 16 if stage == 0 else width // 2
        total += previous * width * 9 + width * width * 9 + (n - 1) * 2 * width * width * 9
        total += previous * width if stage > 0 else 0
    return total + 64 * 10


@pytest.mark.parametrize("depth, stated", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_resnets_match_the_papers_parameter_counts(depth: int, stated: float) -> None:
    # He et al. 2016, Table 6 (millions; its shortcuts are parameter-free, ours 1x1 convs: a few thousand more)
    count = n_weights(f"resnet{depth}")
    assert count == cifar_resnet_weights((depth - 2) // 6)
    assert round(count / 1e6, 2 if depth < 100 else 1) == stated


def test_vgg_small_and_its_wide_form_match_biprop() -> None:
    convs = [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert n_weights("vgg-small") == sum(9 * i * o for i, o in convs) + 512 * 16 * 10 == 4_656_512
    # Biprop: 95 % pruned VGG-Small keeps 0.23 M weights
    assert round(0.05 * n_weights("vgg-small") / 1e6, 2) == 0.23
    wide = [(int(i * 1.25) if i != 3 else 3, int(o * 1.25)) for i, o in convs]
    assert n_weights("vgg-small-wide") == sum(9 * i * o for i, o in wide) + 640 * 16 * 10 == 7_249_120
    assert n_weights("vgg-small-wide") == n_weights("vgg-small", width=1.25)


def keras_count(layers: list[tuple[str, int, int]]) -> int:
    """Trainable parameters as Keras counts them: kernel + bias per conv/dense, 2 per BatchNorm channel."""
    total = 0
    for kind, a, b in layers:
        total += a * b + b if kind in ("conv", "dense") else 2 * a
    return total


def test_laperm_networks_match_keras_counts() -> None:
    def learned(name: str, shape) -> int:
        model = build_model(name, DenseFactory(), shape, 10)  # dense: biases and BatchNorm learned
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    conv7 = [("conv", 9, 32), ("conv", 9 * 32, 32), ("conv", 25 * 32, 32), ("conv", 9 * 32, 64)]
    conv7 += [("conv", 9 * 64, 64), ("conv", 25 * 64, 64), ("conv", 16 * 64, 128), ("dense", 128, 10)]
    assert learned("conv7-lp", MNIST) == keras_count(conv7) == 325_578
    head = [
        ("dense", 64 * 16 * 16, 256),
        ("bn", 256, 0),
        ("dense", 256, 256),
        ("bn", 256, 0),
        ("dense", 256, 10),
    ]
    conv2 = [("conv", 27, 64), ("bn", 64, 0), ("conv", 9 * 64, 64), ("bn", 64, 0), *head]
    assert learned("conv2-lp", CIFAR) == keras_count(conv2)
    plan13 = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv13, previous = [], 3
    for channels in plan13:
        conv13 += [("conv", 9 * previous, channels), ("bn", channels, 0)]
        previous = channels
    conv13 += [("dense", 512, 512), ("bn", 512, 0), ("dense", 512, 10)]
    assert learned("conv13-lp", CIFAR) == keras_count(conv13)
    assert n_weights("f1", MNIST) == 7840
    # the random-weight methods keep biases at zero and frozen, as their BatchNorm
    slots = build_model("conv7-lp", SlotFactory(k=2), MNIST, 10)
    assert all(not p.requires_grad for n, p in slots.named_parameters() if n.endswith("bias"))
