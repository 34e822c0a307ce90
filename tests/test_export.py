import math

import pytest
import torch

from slotlab.bitpack import pack_indices, unpack_indices
from slotlab.config import RunConfig
from slotlab.data import dataset_info
from slotlab.export import load_compact, save_compact
from slotlab.layers.factory import RandomWeightLayer
from slotlab.layers.plain import to_plain
from slotlab.layers.slot import SlotLayer
from slotlab.runs import initial_network


def trained_like(config: RunConfig) -> torch.nn.Module:
    """A slot network whose scores are fresh random numbers (any selection must export exactly)."""
    info = dataset_info(config.dataset)
    model = initial_network(config, info.input_shape, info.num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SlotLayer):
                m.scores.normal_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return model.eval()


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(k=8, dataset="synthetic"),
        RunConfig(k=3, model="conv4-sm", dataset="synthetic-cifar"),
        RunConfig(k=2, model="vgg19", dataset="synthetic-cifar"),
    ],
    ids=["lenet300", "conv4-sm", "vgg19-bn"],
)
def test_plain_model_outputs_equal_the_slot_model(config: RunConfig, tmp_path) -> None:
    model = trained_like(config)
    plain = to_plain(model).eval()
    assert not any(isinstance(m, SlotLayer) for m in plain.modules())
    x = torch.randn(4, *dataset_info(config.dataset).input_shape)
    assert torch.allclose(plain(x), model(x), atol=1e-5, rtol=1e-5)

    packed_bytes = save_compact(model, config, tmp_path / "compact.pt")
    connections = sum(
        m.effective_weight().numel() for m in plain.modules() if isinstance(m, RandomWeightLayer)
    )
    assert packed_bytes <= math.ceil(connections * math.ceil(math.log2(config.options.k)) / 8) + 8 * 20
    rebuilt = load_compact(tmp_path / "compact.pt")
    expected, got = plain.state_dict(), rebuilt.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[key], expected[key]) for key in expected)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 16, 64])
def test_pack_unpack_round_trip(k: int) -> None:
    bits = math.ceil(math.log2(k)) if k > 1 else 0
    index = torch.randint(0, k, (1001,), generator=torch.Generator().manual_seed(k))
    packed = pack_indices(index, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_indices(packed, bits, 1001), index)


def test_learned_baseline_draws_uniformly_from_the_same_k_values() -> None:
    config = RunConfig(method="learned", k=4, dataset="synthetic")
    dense = initial_network(config, (1, 28, 28), 10)
    slots = initial_network(RunConfig(method="slots", k=4, dataset="synthetic"), (1, 28, 28), 10)
    layer_pairs = zip(
        [m for m in dense.modules() if isinstance(m, RandomWeightLayer)],
        [m for m in slots.modules() if isinstance(m, SlotLayer)],
        strict=False,
    )
    for plain, slot in layer_pairs:
        matches = plain.weight.detach().unsqueeze(0) == slot.values  # which of the K values each weight is
        assert torch.all(matches.any(0))
        share = matches.float().mean(dim=(1, 2))
        assert torch.allclose(share, torch.full((4,), 0.25), atol=0.05)
        assert plain.weight.requires_grad
