"""The precision option: bf16 autocast around the forward passes, float32 everywhere else (on the CPU here)."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slotlab.analysis.sources import model_selections
from slotlab.callback import Callback
from slotlab.cli import main
from slotlab.config import CHOICES, FIELD_HELP, RunConfig
from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers import SlotConv2d, SlotLinear
from slotlab.layers.biprop import BipropLayer
from slotlab.layers.edge_popup import EdgePopupLayer
from slotlab.layers.slot import AutogradGrad, InPlaceGrad
from slotlab.runs import load_or_run
from slotlab.slot_sgd import SlotSGD, fused_update_available
from slotlab.train import TrainSettings

QUICK = dict(dataset="synthetic", epochs=2, train_size=256, val_size=100, batch_size=64)
METHODS = {
    "slots": dict(method="slots", k=4),
    "edge-popup": dict(method="edge-popup"),
    "laperm": dict(method="laperm"),
}


class ForwardDtypes(Callback):
    """Records (training mode, dtype) of the logits of every forward pass of the trainer's model."""

    def __init__(self) -> None:
        self.seen: set[tuple[bool, torch.dtype]] = set()

    def on_train_start(self, trainer) -> None:
        trainer.model.register_forward_hook(
            lambda module, args, out: self.seen.add((module.training, out.dtype))
        )


def as_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


# --- the option -------------------------------------------------------------------------------------------
def test_fp32_is_the_default_and_keeps_every_hash() -> None:
    for fields in ({}, QUICK, {**QUICK, **METHODS["edge-popup"]}):
        plain = RunConfig(**fields)
        assert plain.precision == "fp32"
        assert "precision" not in plain.changed_fields()
        assert RunConfig(**fields, precision="fp32").hash == plain.hash
        assert RunConfig(**fields, precision="bf16").hash != plain.hash
    assert RunConfig(precision="bf16").changed_fields() == {"precision": "bf16"}
    assert RunConfig.from_dict(RunConfig(precision="bf16").to_dict()).precision == "bf16"


def test_precision_reaches_the_train_settings_and_bad_values_are_refused() -> None:
    assert RunConfig().train_settings().precision == "fp32"
    assert RunConfig(precision="bf16").train_settings().precision == "bf16"
    assert CHOICES["precision"] == ("fp32", "bf16") and "precision" in FIELD_HELP
    with pytest.raises(SlotlabError, match="precision must be one of fp32, bf16"):
        RunConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        TrainSettings(epochs=1, precision="half")


def test_cli_offers_precision(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    assert "--precision" in capsys.readouterr().out


# --- the layers under autocast ------------------------------------------------------------------------------
def _layer(kind: str) -> torch.nn.Module:
    layer = {
        "slot-linear": lambda: SlotLinear(9, 6, k=5),
        "slot-conv": lambda: SlotConv2d(3, 4, 3, k=5, padding=1),
        "edge-popup-linear": lambda: EdgePopupLayer.linear(9, 6, 0.5, "sc-scaled"),
        "edge-popup-conv": lambda: EdgePopupLayer.conv2d(3, 4, 3, 1, 1, 0.5, "kn"),
        "biprop-linear": lambda: BipropLayer.linear(9, 6, 0.5, "kn"),
    }[kind]()
    initialize(layer, 1, 2)
    return layer


def _score_grad(layer: torch.nn.Module, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    layer.scores.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = layer(x)
    F.mse_loss(out.float(), torch.ones_like(out, dtype=torch.float32)).backward()
    grad = layer.score_grad() if hasattr(layer, "score_grad") else layer.scores.grad
    return out, grad.clone()


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("slot-linear", "in-place"),
        ("slot-linear", "autograd"),
        ("slot-conv", "in-place"),
        ("slot-conv", "autograd"),
        ("edge-popup-linear", "autograd"),
        ("edge-popup-conv", "autograd"),
        ("biprop-linear", "autograd"),
    ],
)
def test_scores_get_float32_gradients_under_bf16_autocast(kind: str, path: str) -> None:
    torch.manual_seed(0)
    layer = _layer(kind)
    if kind.startswith("slot"):
        layer.set_grad_path(InPlaceGrad() if path == "in-place" else AutogradGrad())
    x = torch.randn(4, 3, 6, 6) if kind.endswith("conv") else torch.randn(4, 9)
    out32, grad32 = _score_grad(layer, x, bf16=False)
    out16, grad16 = _score_grad(layer, x, bf16=True)
    assert out32.dtype == torch.float32 and out16.dtype == torch.bfloat16
    assert layer.scores.dtype == torch.float32
    assert grad16.dtype == torch.float32 and grad16.shape == layer.scores.shape
    # the same straight-through gradient, to bf16 rounding of the forward
    assert torch.allclose(grad16, grad32, rtol=0.05, atol=0.02 * grad32.abs().max().item())
    assert torch.count_nonzero(grad16) > 0


@pytest.mark.skipif(not fused_update_available("cpu"), reason="torch.compile does not work here")
def test_slot_sgd_takes_float32_hand_overs_under_autocast() -> None:
    torch.manual_seed(0)
    fused_layer, plain_layer = _layer("slot-linear"), _layer("slot-linear")
    plain_layer.load_state_dict(fused_layer.state_dict())
    x = torch.randn(8, 9)
    plain = torch.optim.SGD([plain_layer.scores], lr=0.1, momentum=0.9, weight_decay=1e-3)
    with SlotSGD([fused_layer.scores], [fused_layer], lr=0.1, momentum=0.9, weight_decay=1e-3) as fused:
        for opt, layer in ((fused, fused_layer), (plain, plain_layer)):
            for _ in range(3):
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = layer(x)
                out.float().square().mean().backward()
                if opt is fused:
                    assert layer.scores.grad is None and layer.grad_path.pending.dtype == torch.float32
                opt.step()
    assert torch.allclose(fused_layer.scores, plain_layer.scores, rtol=1e-5, atol=1e-6)


# --- short runs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], tuple]:
    """Every method of METHODS trained at fp32 and bf16 (once for the module), with the dtypes its forward saw."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, fields in METHODS.items():
        for precision in ("fp32", "bf16"):
            dtypes = ForwardDtypes()
            config = RunConfig(**QUICK, **fields, precision=precision)
            out[name, precision] = (
                load_or_run(config, root=root, device="cpu", callbacks=[dtypes], progress=False),
                dtypes,
            )
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_bf16_runs_train_and_their_forward_is_bf16(runs, method: str) -> None:
    run, dtypes = runs[method, "bf16"]
    assert run.config.precision == "bf16" and run.path.name.endswith(run.config.hash)
    assert run.path != runs[method, "fp32"][0].path
    assert dtypes.seen == {(True, torch.bfloat16), (False, torch.bfloat16)}  # training and evaluation
    assert runs[method, "fp32"][1].seen == {(True, torch.float32), (False, torch.float32)}
    train = run.history.query("split == 'train'")
    assert train["loss"].iloc[-1] < train["loss"].iloc[0]
    assert run.metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1


@pytest.mark.parametrize("method", ["slots", "edge-popup"])
def test_bf16_finds_the_same_kind_of_network(runs, method: str) -> None:
    found = {p: model_selections(runs[method, p][0].model("best")) for p in ("fp32", "bf16")}
    assert list(found["fp32"]) == list(found["bf16"]) and found["bf16"]
    for name, selection in found["bf16"].items():
        reference = found["fp32"][name]
        assert selection.dtype == reference.dtype == (torch.uint8 if method == "slots" else torch.bool)
        assert selection.shape == reference.shape
        if method == "edge-popup":
            assert torch.count_nonzero(selection) == torch.count_nonzero(reference)
    model = runs[method, "bf16"][0].model("best")
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())


def test_bf16_laperm_rows_stay_permutations_of_the_initial_rows(runs) -> None:
    run = runs["laperm", "bf16"][0]
    init, best = run.model("init").state_dict(), run.model("best").state_dict()
    weights = [key for key, t in init.items() if key.endswith("weight") and t.dim() > 1]
    assert weights
    for key in weights:
        assert best[key].dtype == torch.float32
        assert torch.equal(as_rows(best[key]).sort(dim=1).values, as_rows(init[key]).sort(dim=1).values)
        assert not torch.equal(best[key], init[key])


def test_a_bf16_conv_slot_run_trains(tmp_path: Path) -> None:
    config = RunConfig(**{**QUICK, "model": "conv2-sm", "k": 2, "precision": "bf16"})
    run = load_or_run(config, root=tmp_path, device="cpu", progress=False)
    train = run.history.query("split == 'train'")
    assert train["loss"].iloc[-1] < train["loss"].iloc[0]
    selection = model_selections(run.model("best"))
    assert selection and all(s.dtype == torch.uint8 for s in selection.values())
