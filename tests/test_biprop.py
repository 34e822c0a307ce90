import pytest
import torch
import torch.nn.functional as F

from slotlab.config import RunConfig
from slotlab.layers.activations import BinaryActivation
from slotlab.layers.biprop import BipropLayer
from slotlab.runs import initial_network, load_or_run
from slotlab.train import trainable_parameters
from tests.test_edge_popup import masked_layers, reference_mask


def fresh_layer(shape=(8, 5, 3, 3), density=0.3, seed=0, device: torch.device | str = "cpu") -> BipropLayer:
    layer = BipropLayer(shape, density=density, init="kn", padding=1 if len(shape) == 4 else 0)
    layer.init_values(torch.Generator().manual_seed(seed))  # drawn on the CPU, the same on every device
    layer.init_scores(torch.Generator().manual_seed(seed + 1))
    return layer.to(device)


@pytest.mark.parametrize("density", [0.1, 0.5, 1.0])
def test_alpha_is_the_mean_magnitude_of_the_kept_weights(density: float, device: torch.device) -> None:
    layer = fresh_layer(density=density, device=device)
    mask = reference_mask(layer.scores.detach().abs(), layer.kept)
    kept_magnitudes = [
        abs(w) for w, m in zip(layer.weight.reshape(-1).tolist(), mask.reshape(-1).tolist(), strict=True) if m
    ]
    alpha = sum(kept_magnitudes) / len(kept_magnitudes)
    assert float(layer.alpha()) == pytest.approx(alpha, rel=1e-6)
    w_eff = layer.effective_weight().detach()
    expected = torch.where(mask, torch.sign(layer.weight) * float(layer.alpha()), 0.0)
    assert torch.equal(w_eff, expected)
    assert set(w_eff.unique().tolist()) <= {-float(layer.alpha()), 0.0, float(layer.alpha())}


@pytest.mark.parametrize("conv", [False, True])
def test_gradient_is_sign_s_times_grad_times_w_with_alpha_constant(conv: bool, device: torch.device) -> None:
    torch.manual_seed(3)
    layer = fresh_layer((8, 5, 3, 3) if conv else (7, 12), device=device)
    x = (torch.randn(3, 5, 6, 6) if conv else torch.randn(3, 12)).to(device)
    out = layer(x)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    w_eff = layer.effective_weight().detach().requires_grad_()
    out2 = F.conv2d(x, w_eff, padding=1) if conv else F.linear(x, w_eff)
    (out2 * r).sum().backward()
    # released GetQuantnet_binary (chrundle/biprop, after commit ce6a364): g * |W| to |s| through sign(W), i.e.
    # sign(s) * g * sign(W) * |W|; alpha is not in the gradient, and no gradient flows through alpha
    expected = layer.scores.detach().sign() * w_eff.grad * torch.sign(layer.weight) * layer.weight.abs()
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)


def test_ternary_codes_reproduce_the_effective_weight(device: torch.device) -> None:
    layer = fresh_layer(device=device)
    alpha, codes = layer.ternary()
    assert codes.dtype == torch.int8 and set(codes.unique().tolist()) <= {-1, 0, 1}
    assert int((codes != 0).sum()) == layer.kept
    assert torch.equal(alpha * codes.float(), layer.effective_weight().detach())


def test_bi_real_surrogate_gradient(device: torch.device) -> None:
    act = BinaryActivation(3, is_conv=False).to(device)
    act.bn.eval()  # running stats 0/1: the BN is the identity, so the input reaches the sign as it is
    x = torch.tensor([[-2.0, -1.0, -0.5], [0.0, 0.25, 1.5]], device=device, requires_grad=True)
    y = act(x)
    assert torch.equal(y, torch.sign(x.detach() / (1 + 1e-5) ** 0.5))
    y.sum().backward()
    z = x.detach() / (1 + 1e-5) ** 0.5
    surrogate = torch.where(z.abs() <= 1, 2 * (1 - z.abs()), torch.zeros_like(z)) / (1 + 1e-5) ** 0.5
    assert torch.allclose(x.grad, surrogate)


def test_binary_activation_network_is_bn_then_sign_and_last_layer_is_real() -> None:
    config = RunConfig(method="biprop", model="conv2", dataset="synthetic", binary_activations=True)
    model = initial_network(config, (1, 28, 28), 10)
    acts = [m for m in model.modules() if isinstance(m, BinaryActivation)]
    assert [a.bn.num_features for a in acts] == [64, 64, 256, 256]
    assert not any(a.bn.affine for a in acts)
    seen = []
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append(o)) for a in acts]
    logits = model(torch.randn(4, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert all(set(o.unique().tolist()) <= {-1.0, 0.0, 1.0} for o in seen)
    assert len(logits.unique()) > 3  # real-valued output layer
    assert trainable_parameters(model) == [m.scores for m in masked_layers(model)]


def test_learned_bn_trains_the_batchnorm_too() -> None:
    config = RunConfig(method="biprop", dataset="synthetic", binary_activations=True, learned_bn=True)
    model = initial_network(config, (1, 28, 28), 10)
    trained = trainable_parameters(model)
    bns = [m.bn for m in model.modules() if isinstance(m, BinaryActivation)]
    assert all(bn.affine for bn in bns)
    assert len(trained) == 3 + 2 * len(bns)
    assert any(p is bns[0].weight for p in trained)


def test_biprop_learns_the_synthetic_set(tmp_path) -> None:
    config = RunConfig(method="biprop", dataset="synthetic", epochs=2, val_size=300, weight_decay=1e-4)
    assert load_or_run(config, root=tmp_path).metrics["test_accuracy"] > 0.9
