import pytest
import torch

from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers import DenseFactory, SlotFactory
from slotlab.layers.factory import RandomWeightLayer
from slotlab.models import MODELS, build_model

CIFAR, MNIST = (3, 32, 32), (1, 28, 28)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("factory", [SlotFactory(k=2), DenseFactory()], ids=["slots", "dense"])
def test_every_model_builds_and_runs_with_every_layer_rule(name: str, factory) -> None:
    shape = MNIST if name == "lenet300" else CIFAR
    model = initialize(build_model(name, factory, shape, 10), 0, 0).eval()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    layers = [m for m in model.modules() if isinstance(m, RandomWeightLayer)]
    assert layers and all(
        type(m).__name__.startswith("Slot" if factory.name == "slots" else "Dense") for m in layers
    )
    # no biases anywhere on random-weight layers
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
