"""Edge-Popup (Ramanujan et al., CVPR 2020, arXiv 1911.13299): learn which random weights to keep.

Every weight ``W`` (frozen, random) has a learned score ``s`` of the same shape. The forward pass keeps the
``kept`` connections of largest ``|s|`` (paper §3, "supermask" of density d = fraction kept):

    M = top_kept(|s|),   kept = floor(d * numel + 1/2)    (layer scope: one top-k per layer)
    W_eff = W * M

and the scores learn through the straight-through estimator (paper Eq. 3; ``GetSubnet`` applied to
``scores.abs()`` in the released code, allenai/hidden-networks ``utils/conv_type.py``):

    dL/ds = sign(s) * dL/dW_eff * W

Mask rule. ``top_mask`` finds the threshold with ``kthvalue`` (O(n), no full sort) and keeps exactly ``kept``
entries. Ties at the threshold go to the lowest flat index (row-major position in the weight), so the mask equals
a stable descending sort's first ``kept`` entries: deterministic, and the same on every device.

Kept count. ``floor(d * n + 1/2)`` (round half up). The released code keeps ``n - int((1 - d) * n)``, which
floating point can push one above or below (``(1 - 0.9) * 10 = 0.999...``); the difference is at most one weight.

Inits (Ramanujan et al. 2020, the initializations they compare; ``_init_conv`` in the released
``utils/builder.py``), fan = fan_in, ReLU gain sqrt(2):
    kn         N(0, 2 / fan)                     Kaiming normal
    sc         +-sqrt(2 / fan), random sign       signed Kaiming constant
    kn-scaled  N(0, 2 / (d * fan))               scaled by the fraction *kept*, so that W*M keeps Kaiming's variance
    sc-scaled  +-sqrt(2 / (d * fan))
The released code's ``scale_fan`` multiplies fan by ``1 - prune_rate`` where ``prune_rate`` is the fraction kept,
which is right only at d = 0.5 (hidden-networks issue #9); here the factor is d for every density.
Scores: Kaiming uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from the score generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.activations import BinaryActivation
from slotlab.layers.factory import LayerFactory, fans

MASK_INITS = ("sc-scaled", "sc", "kn-scaled", "kn")


def kept_count(density: float, numel: int) -> int:
    """How many of ``numel`` weights a density keeps: floor(density * numel + 1/2)."""
    return int(math.floor(density * numel + 0.5))


def top_mask(magnitude: torch.Tensor, kept: int) -> torch.Tensor:
    """Bool mask of the ``kept`` largest entries of ``magnitude`` (any shape); ties go to the lowest flat index.

    One ``kthvalue`` (a selection, O(n), not a sort) gives the threshold t; entries above t are kept, and of
    those equal to t the first (kept - #above) in flat order. Eager on every device: each op (kthvalue, the
    comparisons, a cumulative sum of bools) has a CUDA kernel, and the two counts are the only host syncs.
    """
    flat = magnitude.reshape(-1)
    n = flat.numel()
    if kept >= n:
        return torch.ones_like(magnitude, dtype=torch.bool)
    if kept <= 0:
        return torch.zeros_like(magnitude, dtype=torch.bool)
    threshold = flat.kthvalue(n - kept + 1).values  # the kept-th largest
    mask = flat >= threshold
    surplus = int(torch.count_nonzero(mask)) - kept  # > 0 only when entries tie at the threshold
    if surplus > 0:
        tied = flat == threshold
        mask &= ~(tied & (tied.cumsum(0) > int(torch.count_nonzero(tied)) - surplus))
    return mask.view(magnitude.shape)


class _StraightThroughMask(torch.autograd.Function):
    """Forward: the masked weight, ``W * M`` or, with ``alpha``, ``alpha * sign(W) * M`` (Biprop).

    Backward: dL/ds = sign(s) * dL/dW_eff * W for both rules. For Biprop this is the backward of the released
    ``GetQuantnet_binary`` (Diffenderfer & Kailkhura 2021; chrundle/biprop ``utils/conv_type.py``, as corrected
    in commit ce6a364): it hands g * |W| to |s| through sign(W), alpha held constant, so sign(W) * |W| = W.
    """

    @staticmethod
    def forward(ctx, scores, weight, mask, alpha):
        ctx.save_for_backward(scores, weight)
        if alpha is None:
            return weight * mask
        return torch.where(mask, torch.where(weight >= 0, alpha, -alpha), 0.0)

    @staticmethod
    def backward(ctx, grad_weight):
        scores, weight = ctx.saved_tensors
        # the scores' dtype (float32) also when the layer ran under bf16 autocast (a no-op for float32)
        return grad_weight.to(scores.dtype) * weight * scores.sign(), None, None, None


class MaskedLayer(nn.Module):
    """A linear or conv layer with frozen random weights and a learned mask (the Edge-Popup rule).

    Subclasses change the weight rule (Biprop) or what is trained (a fixed random mask with trained weights).
    ``scope="global"`` takes the mask from a ``GlobalScope`` (one threshold across layers) set by the builder.
    """

    rule = "edge-popup"
    weight: torch.Tensor  # (*weight_shape), frozen buffer
    scores: nn.Parameter  # (*weight_shape), learned

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        density: float,
        init: str = "sc-scaled",
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        if init not in MASK_INITS:
            raise SlotlabError(f"mask init {init!r} is not one of {', '.join(MASK_INITS)}")
        numel = math.prod(weight_shape)
        if not 0 < density <= 1:
            raise SlotlabError(f"density must be in (0, 1] (the fraction of weights kept), got {density}")
        self.kept = kept_count(density, numel)
        if self.kept < 1:
            raise SlotlabError(
                f"density {density} keeps no weight of a layer of shape {tuple(weight_shape)} ({numel} weights); "
                f"use a density of at least {0.5 / numel:.2g}"
            )
        self.weight_shape = tuple(weight_shape)
        self.is_conv = len(weight_shape) == 4
        self.stride, self.padding = stride, padding
        self.density, self.init = density, init
        self.global_scope = None  # a GlobalScope when the mask is global
        self.register_buffer("weight", torch.empty(weight_shape))
        self.scores = nn.Parameter(torch.empty(weight_shape))

    # --- construction -----------------------------------------------------------------------------------
    @classmethod
    def linear(cls, in_features: int, out_features: int, density: float, init: str) -> MaskedLayer:
        return cls((out_features, in_features), density, init)

    @classmethod
    def conv2d(
        cls, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, density, init
    ) -> MaskedLayer:
        return cls((out_channels, in_channels, kernel_size, kernel_size), density, init, stride, padding)

    # --- RandomWeightLayer ------------------------------------------------------------------------------
    def draw_values(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh draw of this layer's initial distribution (CPU); IteRand redraws pruned weights from it."""
        fan_in, _ = fans(self.weight_shape)
        scale = self.density if self.init.endswith("-scaled") else 1.0
        std = math.sqrt(2.0 / (scale * fan_in))
        normal = torch.randn(self.weight_shape, generator=generator)
        if self.init.startswith("sc"):
            return torch.where(normal >= 0, std, -std)
        return normal * std

    @torch.no_grad()
    def init_values(self, generator: torch.Generator) -> None:
        self.weight.copy_(self.draw_values(generator))

    @torch.no_grad()
    def init_scores(self, generator: torch.Generator) -> None:
        bound = 1.0 / math.sqrt(fans(self.weight_shape)[0])
        self.scores.copy_(torch.rand(self.weight_shape, generator=generator) * (2 * bound) - bound)

    # --- the rule ---------------------------------------------------------------------------------------
    def mask(self) -> torch.Tensor:
        """The bool keep-mask of the current mode, (*weight_shape); not differentiable."""
        if self.global_scope is not None:
            return self.global_scope.mask_of(self)
        return top_mask(self.scores.detach().abs(), self.kept)

    @torch.no_grad()
    def selection(self) -> torch.Tensor:
        """The keep-mask the evaluation rule uses (bool, weight-shaped): what analyses and exports record."""
        was_training = self.training
        self.eval()
        try:
            return self.mask().clone()
        finally:
            self.train(was_training)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses, (*weight_shape); differentiable with respect to the scores."""
        return _StraightThroughMask.apply(self.scores, self.weight, self.mask(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight()
        if self.is_conv:
            return F.conv2d(x, weight, stride=self.stride, padding=self.padding)
        return F.linear(x, weight)

    def extra_repr(self) -> str:
        scope = "global" if self.global_scope is not None else f"kept={self.kept}"
        return f"{self.weight_shape}, rule={self.rule}, density={self.density}, {scope}, init={self.init}"


class EdgePopupLayer(MaskedLayer):
    """Edge-Popup: W * top_kept(|s|)."""


class MaskFactory(LayerFactory):
    """Builds masked layers of one rule; ``binary_activations`` swaps ReLU for BatchNorm + sign (MPT-1/1)."""

    def __init__(
        self,
        layer_class: type[MaskedLayer],
        density: float,
        init: str,
        bn_affine: bool = False,
        binary_activations: bool = False,
    ) -> None:
        super().__init__(bn_affine=bn_affine)
        self.layer_class, self.density, self.init = layer_class, density, init
        self.name = layer_class.rule
        self.binary_activations = binary_activations
        self._last_out: tuple[int, bool] | None = None  # (channels, is_conv) of the last layer built

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        self._last_out = (out_features, False)
        return self.layer_class.linear(in_features, out_features, self.density, self.init)

    def conv2d(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module:
        self._last_out = (out_channels, True)
        return self.layer_class.conv2d(
            in_channels, out_channels, kernel_size, stride, padding, self.density, self.init
        )

    def activation(self) -> nn.Module:
        if not self.binary_activations:
            return nn.ReLU()
        if self._last_out is None:
            raise SlotlabError("binary activations need a layer before the first activation")
        channels, is_conv = self._last_out
        return BinaryActivation(channels, is_conv, affine=self.bn_affine)
