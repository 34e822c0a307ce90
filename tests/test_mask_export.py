import math
from pathlib import Path

import pytest
import torch

from slotlab.cli import main
from slotlab.config import RunConfig
from slotlab.data import dataset_info
from slotlab.export import load_compact, save_compact
from slotlab.layers.biprop import BipropLayer
from slotlab.layers.edge_popup import MaskedLayer
from slotlab.layers.plain import to_plain
from slotlab.recycle import iterand_layer, recycle_layer
from slotlab.runs import initial_network
from slotlab.sanity import random_mask, shuffled_weights, signs_only
from tests.test_edge_popup import masked_layers


def trained_like(config: RunConfig) -> torch.nn.Module:
    """A masked network with fresh random scores, as if trained (any mask must export exactly)."""
    info = dataset_info(config.dataset)
    model = initial_network(config, info.input_shape, info.num_classes)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MaskedLayer):
                m.scores.copy_(torch.randn(m.weight_shape, generator=generator))
        model.train()
        model(torch.randn(8, *info.input_shape, generator=generator))  # BatchNorm running statistics
    return model.eval()


CASES = [
    RunConfig(method="edge-popup", dataset="synthetic"),
    RunConfig(method="biprop", dataset="synthetic", density=0.3),
    RunConfig(method="random-mask", dataset="synthetic"),
    RunConfig(method="edge-popup", dataset="synthetic", scope="global", density=0.2),
    RunConfig(method="biprop", model="conv2", dataset="synthetic", binary_activations=True, learned_bn=True),
]


@pytest.mark.parametrize(
    "config", CASES, ids=["ep", "biprop", "random-mask", "ep-global", "biprop-binact-conv"]
)
def test_plain_and_compact_models_compute_what_the_masked_model_computes(config, tmp_path: Path) -> None:
    model = trained_like(config)
    x = torch.randn(4, *dataset_info(config.dataset).input_shape)
    plain = to_plain(model).eval()
    assert not any(isinstance(m, MaskedLayer) for m in plain.modules())
    assert torch.allclose(plain(x), model(x), atol=1e-5)

    stored = save_compact(model, config, tmp_path / "compact.pt")
    connections = [m.weight.numel() for m in masked_layers(model)]
    assert stored == sum(math.ceil(n / 8) for n in connections) or config.method == "random-mask"
    rebuilt = load_compact(tmp_path / "compact.pt")
    for key, value in plain.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    assert torch.equal(rebuilt(x), plain(x))


def test_biprop_exports_a_ternary_network() -> None:
    config = RunConfig(method="biprop", dataset="synthetic", density=0.4)
    model = trained_like(config)
    plain = to_plain(model)
    for layer, weight in zip(masked_layers(model), [p for p in plain.parameters()], strict=True):
        assert isinstance(layer, BipropLayer)
        alpha = float(layer.alpha(layer.selection()))
        assert set(weight.detach().unique().tolist()) == {-alpha, 0.0, alpha}


def test_recycled_and_redrawn_weights_export_exactly_and_recycled_ones_cost_an_index(tmp_path: Path) -> None:
    config = RunConfig(method="edge-popup", init="kn", dataset="synthetic", density=0.5)
    model = trained_like(config)
    generator = torch.Generator().manual_seed(3)
    layers = masked_layers(model)
    with torch.no_grad():
        recycle_layer(layers[0], 0.7, "top")  # more than the pruned half: kept positions receive copies
        for layer in layers:
            layer.scores.mul_(-1)  # sign flips change nothing; shuffle ranks a little for the redraw below
        iterand_layer(layers[1], 0.5, generator)
        layers[1].scores.copy_(torch.randn(layers[1].weight_shape, generator=generator))  # redrawn ones kept
    save_compact(model, config, tmp_path / "compact.pt")
    payload = torch.load(tmp_path / "compact.pt", weights_only=True)
    first, second = payload["layers"]["body.1"], payload["layers"]["body.3"]
    assert first["copied_at"].numel() > 0 and first["new_at"].numel() == 0
    assert second["new_at"].numel() > 0
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(load_compact(tmp_path / "compact.pt")(x), to_plain(model)(x))


def test_train_then_export_an_edge_popup_run(capsys, tmp_path: Path) -> None:
    args = [
        "--method",
        "edge-popup",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--val-size",
        "300",
        "--runs",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(["train", *args]) == 0
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("edge-popup"))
    assert main(["export", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "1 bit x 266200 connections" in out
    assert (folder / "export" / "compact.pt").is_file() and (folder / "export" / "plain.pt").is_file()


def test_sanity_controls_keep_the_density_and_change_what_they_say() -> None:
    config = RunConfig(method="edge-popup", init="kn", dataset="synthetic", density=0.3)
    model = trained_like(config)
    found = masked_layers(model)
    for control in (random_mask(model), shuffled_weights(model), signs_only(model)):
        for a, b in zip(found, masked_layers(control), strict=True):
            assert int(b.selection().sum()) == a.kept
    for a, b in zip(found, masked_layers(random_mask(model)), strict=True):
        assert torch.equal(a.weight, b.weight) and not torch.equal(a.selection(), b.selection())
    for a, b in zip(found, masked_layers(shuffled_weights(model)), strict=True):
        assert torch.equal(a.selection(), b.selection()) and not torch.equal(a.weight, b.weight)
        assert torch.equal(a.weight.reshape(-1).sort().values, b.weight.reshape(-1).sort().values)
    for a, b in zip(found, masked_layers(signs_only(model)), strict=True):
        mask = a.selection()
        assert torch.equal(torch.sign(a.weight), torch.sign(b.weight))
        assert torch.allclose(b.weight.abs(), a.weight.abs()[mask].mean().expand(a.weight_shape))
    biprop = trained_like(RunConfig(method="biprop", dataset="synthetic"))
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(signs_only(biprop)(x), biprop(x), atol=1e-6)  # Biprop already uses signs only
