"""Edge-Popup (Ramanujan et al., CVPR 2020, arXiv 1911.13299): learn which random weights to keep.

Every weight ``W`` (frozen, random) has a learned score ``s`` of the same shape. The forward pass keeps the
``kept`` connections of largest ``|s|`` (paper §3, "supermask" of density d = fraction kept):

    M = top_kept(|s|),   kept = floor(d * numel + 1/2)    (layer scope: one top-k per layer)
    W_eff = W * M

and the scores learn through the straight-through estimator (paper Eq. 3; ``GetSubnet`` applied to
``scores.abs()`` in the released code, allenai/hidden-networks ``utils/conv_type.py``):

    dL/ds = sign(s) * dL/dW_eff * W

Mask rule. Exactly ``kept`` entries are kept. Ties at the threshold go to the lowest flat index (row-major
position in the weight), so the mask equals a stable descending sort's first ``kept`` entries: deterministic, and
the same on every device. ``top_mask`` finds the threshold with ``kthvalue`` (O(n), no full sort). In training the
layers use ``TopKSelector``, which gives the same mask for less: scores move little per step, so it keeps the
last threshold t and counts, in one pass, how many |s| reach each of a few thresholds around it. Any threshold
that exactly ``kept`` entries reach defines the top-k (every kept |s| >= it > every other |s|); otherwise the
counts bracket the kept-th largest value between two of them, and ``kthvalue`` runs on the few entries inside
the bracket only. The forward then needs no mask tensor: ``W * [|s| >= t]`` (and Biprop's gain and ternary
weight) are single compiled passes (``slotlab.compiled``), as is the straight-through backward. Only when entries
tie at the threshold is an explicit mask made, by the rule above.

Kept count. ``floor(d * n + 1/2)`` (round half up). The released code keeps ``n - int((1 - d) * n)``, which
floating point can push one above or below (``(1 - 0.9) * 10 = 0.999...``); the difference is at most one weight.
``kept_rule="released"`` keeps the released count.

Inits (Ramanujan et al. 2020, Sec. 4 and its comparison of weight distributions; ``_init_conv`` in the released
``utils/builder.py``), fan = fan_in (``fan_mode`` fan_out: the output fan), ReLU gain sqrt(2):
    kn         N(0, 2 / fan)                     Kaiming normal
    sc         +-sqrt(2 / fan), random sign       signed Kaiming constant
    uc         +sqrt(2 / fan)                     unsigned Kaiming constant (every weight equal)
    kn-scaled  N(0, 2 / (d * fan))               scaled by the fraction *kept*, so that W*M keeps Kaiming's variance
    sc-scaled  +-sqrt(2 / (d * fan))
    uc-scaled  +sqrt(2 / (d * fan))
    ku         U(-sqrt(6 / fan), sqrt(6 / fan))  Kaiming uniform (``nn.init.kaiming_uniform_``, never scaled)
    xn         N(0, 2 / (fan_in + fan_out))      Xavier normal (``nn.init.xavier_normal_``, gain 1)
    xc         +-sqrt(2 / (fan_in + fan_out))    Xavier constant, random sign
The released code's ``scale_fan`` multiplies fan by ``1 - prune_rate`` where ``prune_rate`` is the fraction kept,
which is right only at d = 0.5 (hidden-networks issue #9); here the factor is d for every density, and
``scale_rule="released"`` gives the released 1 - d.
Scores: Kaiming uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from the score generator.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slotlab.compiled import per_device
from slotlab.errors import SlotlabError
from slotlab.layers.activations import BinaryActivation
from slotlab.layers.factory import LayerFactory, fans

MASK_INITS = (
    "sc-scaled",
    "sc",
    "kn-scaled",
    "kn",
    "uc-scaled",
    "uc",
    "ku",
    "xn",
    "xc",
)
KEPT_RULES = ("round", "released")  # kept count: the paper's rounding, or the released code's
SCALE_RULES = (
    "kept",
    "released",
)  # the scaled inits' fan factor: d (the paper), or 1 - d (the released code)
FAN_MODES = ("fan_in", "fan_out")
XAVIER_INITS = ("xn", "xc")  # Glorot's fan_in + fan_out: no fan mode, no scaling


def kept_count(density: float, numel: int, rule: str = "round") -> int:
    """How many of ``numel`` weights a density keeps.

    ``round`` (the paper's "top d%"): floor(density * numel + 1/2). ``released``: n - int((1 - d) * n), what
    ``GetSubnet`` of the released code keeps (it zeroes the lowest ``int((1 - d) * n)`` scores), one more than
    ``round`` where floating point puts (1 - d) * n just below a whole number (d = 0.9, n = 10: 0.0999... * 10).
    """
    if rule == "released":
        return numel - int((1 - density) * numel)
    if rule != "round":
        raise SlotlabError(f"kept rule must be one of {', '.join(KEPT_RULES)}, got {rule!r}")
    return int(math.floor(density * numel + 0.5))


def fan_factor(density: float, rule: str) -> float:
    """What the scaled inits multiply the fan by: d (the fraction kept, so that W * M keeps the variance of the
    unscaled init), or ``released``: 1 - d (``scale_fan`` of the released code, right only at d = 1/2)."""
    if rule not in SCALE_RULES:
        raise SlotlabError(f"scale rule must be one of {', '.join(SCALE_RULES)}, got {rule!r}")
    factor = density if rule == "kept" else 1 - density
    if factor <= 0:
        raise SlotlabError(
            f"the released scaled init multiplies the fan by 1 - density = 0 at density {density}; use a density "
            f"below 1 or the default scale rule"
        )
    return factor


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


# --- single-pass kernels over flat (n,) tensors, compiled once per device type (eager where that fails) ------
def _counts(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B,) int64: how many of ``|scores|`` (n,) reach (>=) each of ``thresholds`` (B,)."""
    return (scores.abs().unsqueeze(-1) >= thresholds).sum(0)


def _in_range(scores: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Bool (n,): low <= |scores| < high (0-dim bounds)."""
    magnitude = scores.abs()
    return (magnitude >= low) & (magnitude < high)


def _masked(scores: torch.Tensor, weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """W * [|s| >= threshold], (n,)."""
    return torch.where(scores.abs() >= threshold, weight, 0.0)


def _kept_magnitude(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of |W| over the mask, number of entries in it), both 0-dim; the sum accumulates in float64 (a
    vectorised float32 sum over 10^5 weights drifts by ~1e-4 relative, where eager's cascade sum does not)."""
    return torch.where(mask, weight.abs(), 0.0).to(torch.float64).sum(), mask.sum()


def _ternary(weight: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha * sign(W) * M, (n,); sign(0) = +1."""
    return torch.where(mask, torch.where(weight >= 0, alpha, -alpha), 0.0)


# the same two rules with M = [|s| >= threshold] made inside the pass: no bool tensor is written or read (on a CPU
# a pass over a bool tensor costs several times one over floats)
def _kept_magnitude_above(
    scores: torch.Tensor, weight: torch.Tensor, threshold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of |W| where |s| >= threshold, in float64; how many), both 0-dim."""
    kept = scores.abs() >= threshold
    return torch.where(kept, weight.abs(), 0.0).to(torch.float64).sum(), kept.sum()


def _ternary_above(
    scores: torch.Tensor, weight: torch.Tensor, threshold: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """alpha * sign(W) * [|s| >= threshold], (n,); sign(0) = +1."""
    return torch.where(scores.abs() >= threshold, torch.where(weight >= 0, alpha, -alpha), 0.0)


def _straight_through(grad: torch.Tensor, weight: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """dL/ds = dL/dW_eff * W * sign(s), (n,)."""
    return grad * weight * scores.sign()


def _probe(*shapes: tuple[int, ...], kinds: str) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Seeded probe inputs: ``kinds`` has one letter per input, f (float normal), b (bool), s (0-dim float)."""

    def make() -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(0)
        made = []
        for shape, kind in zip(shapes, kinds, strict=True):
            normal = torch.randn(shape, generator=generator)
            made.append(normal >= 0.3 if kind == "b" else normal.abs() if kind == "s" else normal)
        return tuple(made)

    return make


_KERNELS: dict[Callable, Callable[[str], Callable | None]] = {
    _counts: per_device(_counts, _probe((1000,), (7,), kinds="fs")),
    _in_range: per_device(_in_range, _probe((1000,), (), (), kinds="fss")),
    _masked: per_device(_masked, _probe((1000,), (1000,), (), kinds="ffs")),
    _kept_magnitude: per_device(_kept_magnitude, _probe((1000,), (1000,), kinds="fb")),
    _ternary: per_device(_ternary, _probe((1000,), (1000,), (), kinds="fbs")),
    _kept_magnitude_above: per_device(_kept_magnitude_above, _probe((1000,), (1000,), (), kinds="ffs")),
    _ternary_above: per_device(_ternary_above, _probe((1000,), (1000,), (), (), kinds="ffss")),
    _straight_through: per_device(_straight_through, _probe((1000,), (1000,), (1000,), kinds="fff")),
}


def _run(fn: Callable, *args: torch.Tensor) -> Any:
    """``fn`` compiled for the arguments' device type where that works, else ``fn`` itself (same result)."""
    kernel = _KERNELS[fn](args[0].device.type)
    return (kernel or fn)(*args)


# --- the exact top-k, warm-started -----------------------------------------------------------------------------
_OFFSETS = (-16.0, -4.0, -1.0, 0.0, 1.0, 4.0, 16.0)  # the first pass's thresholds: t + offset * width
_GRID = len(_OFFSETS)  # thresholds per later pass, so that every pass runs the same compiled kernel
_INF_BITS = 0x7F800000  # float32 +inf: above every finite |s|


def _bits(value: float) -> int:
    """The float32 bit pattern of ``value`` clamped to [+0, float32 max], as an int: monotone in the value."""
    return struct.unpack("<i", struct.pack("<f", min(max(value, 0.0), 3.4028234663852886e38) + 0.0))[0]


def _float(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<i", bits))[0]


@dataclass(frozen=True)
class Selection:
    """A top-k of |scores| given as a threshold: keep |s| >= ``threshold``, exactly ``kept`` entries.

    ``mask`` is set only where entries tie at the threshold and the tie rule had to choose (bool, the scores'
    shape); then it is the selection, and the threshold is the kept-th largest value.
    """

    threshold: torch.Tensor  # 0-dim, the scores' dtype and device
    mask: torch.Tensor | None = None

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        """The bool keep-mask, ``scores``' shape."""
        if self.mask is not None:
            return self.mask.view(scores.shape)
        above = self.threshold.new_tensor(math.inf)
        return _run(_in_range, scores.detach().reshape(-1), self.threshold, above).view(scores.shape)


class TopKSelector:
    """The ``kept`` largest |scores| of one or more tensors (in order: ties to the earlier tensor, then the lower
    flat index), equal to ``top_mask`` of their concatenation, warm-started from the previous call's threshold.

    A search by counting. Each pass counts, in one compiled sweep, how many |s| reach each of a few thresholds;
    a count equal to ``kept`` ends it (that threshold is the top-k). Otherwise the thresholds whose counts fall on
    either side of ``kept`` bracket the kept-th largest value, and the next pass counts at thresholds spread
    inside the bracket, evenly in float32 bit patterns (monotone for |s| >= 0), so that each pass shrinks it
    ``_GRID + 1``-fold and the search ends even on ties (a bracket of one float value: the value is tied, and the
    tie rule makes the mask). The first pass counts at ``t + o * w`` for the offsets in ``_OFFSETS``, with t the
    last threshold and w twice its last move: in training two or three passes find it. Without a hint, or when
    the bracket still holds a quarter of the scores (they jumped), one ``kthvalue`` over all of them does.

    The state is a hint only: the result is exact whatever it holds. One hint per kept count (a global scope's
    training and evaluation counts differ while the density is annealed). Scores of a dtype other than float32
    always take the ``kthvalue``.
    """

    def __init__(self) -> None:
        self._hints: dict[int, tuple[float, float]] = {}  # kept -> (last threshold, bracket width)

    @torch.no_grad()
    def select(self, parts: Sequence[torch.Tensor], kept: int) -> list[Selection]:
        """One ``Selection`` per tensor of ``parts`` (any shapes, one dtype and device), kept in all."""
        flats = [part.detach().reshape(-1) for part in parts]
        like = flats[0]
        n = sum(flat.numel() for flat in flats)
        if kept >= n or kept <= 0:  # |s| >= 0 holds everywhere, |s| >= inf nowhere
            return [Selection(like.new_tensor(0.0 if kept > 0 else math.inf))] * len(flats)
        hint = self._hints.get(kept) if like.dtype == torch.float32 else None
        found = self._search(flats, n, kept, hint) if hint is not None else None
        if found is None:
            magnitude = torch.cat(flats).abs() if len(flats) > 1 else like.abs()
            value = magnitude.kthvalue(n - kept + 1).values  # the kept-th largest
            reached = int(_run(_counts, magnitude, value.expand(_GRID))[0])  # _GRID wide: one compiled shape
            found = (value, reached)
        value, reached = found
        start, width = hint or (float(value), abs(float(value)) * 2e-3)  # cold: a first guess of the move
        floor = abs(float(value)) * 2.0**-20 + 1e-30  # twice the last move, shrinking slowly while it stands
        self._hints[kept] = (float(value), max(2 * abs(float(value) - start), width / 2, floor))
        if reached == kept:
            return [Selection(value)] * len(flats)
        # entries tie at the kept-th largest value: keep the first of them in flat order
        magnitude = torch.cat(flats).abs()
        mask = magnitude >= value
        tied = magnitude == value
        mask &= ~(tied & (tied.cumsum(0) > int(torch.count_nonzero(tied)) - (reached - kept)))
        pieces = mask.split([flat.numel() for flat in flats])
        return [Selection(value, piece.view(part.shape)) for piece, part in zip(pieces, parts, strict=True)]

    @staticmethod
    def _search(
        flats: list[torch.Tensor], n: int, kept: int, hint: tuple[float, float]
    ) -> tuple[torch.Tensor, int] | None:
        """(threshold, how many |s| reach it) by counting passes from the hint; None: use the kthvalue."""
        start, width = hint
        low, high = (0, n), (_INF_BITS, 0)  # (float32 bits of a threshold, how many |s| reach it)
        grid = [_bits(start + o * width) for o in _OFFSETS]
        while True:
            thresholds = torch.tensor(grid, dtype=torch.int32).view(torch.float32).to(flats[0].device)
            counts = torch.stack([_run(_counts, flat, thresholds) for flat in flats]).sum(0).tolist()
            for i, (bits, count) in enumerate(zip(grid, counts, strict=True)):
                if count == kept:  # exactly ``kept`` reach it: every kept |s| >= it > every other
                    return thresholds[i], count
                if count > kept and bits > low[0]:
                    low = (bits, count)
                elif count < kept and bits < high[0]:
                    high = (bits, count)
            if high[0] - low[0] <= 1:  # one float value left, held by several |s|: a tie at the kept-th
                return thresholds.new_tensor(_float(low[0])), low[1]
            if low[1] - high[1] > n // 4:
                return None
            step = (high[0] - low[0]) / (_GRID + 1)
            grid = sorted(
                {min(max(low[0] + round(step * (j + 1)), low[0] + 1), high[0] - 1) for j in range(_GRID)}
            )
            grid += grid[-1:] * (_GRID - len(grid))  # always _GRID wide: one compiled kernel shape


class _StraightThroughMask(torch.autograd.Function):
    """Forward: the masked weight, ``W * M`` or, with ``alpha``, ``alpha * sign(W) * M`` (Biprop), M from a
    ``Selection`` (a single compiled pass when it is a plain threshold).

    Backward: dL/ds = sign(s) * dL/dW_eff * W for both rules. For Biprop this is the backward of the released
    ``GetQuantnet_binary`` (Diffenderfer & Kailkhura 2021; chrundle/biprop ``utils/conv_type.py``, as corrected
    in commit ce6a364): it hands g * |W| to |s| through sign(W), alpha held constant, so sign(W) * |W| = W.
    """

    @staticmethod
    def forward(ctx, scores, weight, selection: Selection, alpha):
        ctx.save_for_backward(scores, weight)
        if alpha is not None and selection.mask is not None:
            return _run(_ternary, weight.reshape(-1), selection.mask.reshape(-1), alpha).view(weight.shape)
        if alpha is not None:
            flat = scores.reshape(-1)
            return _run(_ternary_above, flat, weight.reshape(-1), selection.threshold, alpha).view(
                weight.shape
            )
        if selection.mask is not None:
            return torch.where(selection.mask, weight, 0.0)
        return _run(_masked, scores.reshape(-1), weight.reshape(-1), selection.threshold).view(weight.shape)

    @staticmethod
    def backward(ctx, grad_weight):
        scores, weight = ctx.saved_tensors
        # the scores' dtype (float32) also when the layer ran under bf16 autocast (a no-op for float32)
        grad = grad_weight.to(scores.dtype).reshape(-1)
        grad_scores = _run(_straight_through, grad, weight.reshape(-1), scores.reshape(-1))
        return grad_scores.view(scores.shape), None, None, None


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
        kept_rule: str = "round",
        scale_rule: str = "kept",
        fan_mode: str = "fan_in",
    ) -> None:
        super().__init__()
        if init not in MASK_INITS:
            raise SlotlabError(f"mask init {init!r} is not one of {', '.join(MASK_INITS)}")
        if fan_mode not in FAN_MODES:
            raise SlotlabError(f"fan mode must be one of {', '.join(FAN_MODES)}, got {fan_mode!r}")
        numel = math.prod(weight_shape)
        if not 0 < density <= 1:
            raise SlotlabError(f"density must be in (0, 1] (the fraction of weights kept), got {density}")
        self.kept = kept_count(density, numel, kept_rule)
        self.kept_rule, self.scale_rule, self.fan_mode = kept_rule, scale_rule, fan_mode
        if init.endswith("-scaled"):
            fan_factor(density, scale_rule)  # refuse a zero fan before any value is drawn
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
        self._selector = TopKSelector()  # layer scope: the warm-started top-k
        self.register_buffer("weight", torch.empty(weight_shape))
        self.scores = nn.Parameter(torch.empty(weight_shape))

    # --- construction -----------------------------------------------------------------------------------
    @classmethod
    def linear(
        cls, in_features: int, out_features: int, density: float, init: str, **rule: Any
    ) -> MaskedLayer:
        return cls((out_features, in_features), density, init, **rule)

    @classmethod
    def conv2d(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        density,
        init,
        **rule: Any,
    ) -> MaskedLayer:
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        return cls(shape, density, init, stride, padding, **rule)

    # --- RandomWeightLayer ------------------------------------------------------------------------------
    def draw_values(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh draw of this layer's initial distribution (CPU); IteRand redraws pruned weights from it."""
        fan_in, fan_out = fans(self.weight_shape)
        family = self.init.removesuffix("-scaled")
        if family in XAVIER_INITS:
            std = math.sqrt(2.0 / float(fan_in + fan_out))
            if family == "xn":  # as nn.init.xavier_normal_ draws it
                return torch.empty(self.weight_shape).normal_(0, std, generator=generator)
            return torch.where(torch.randn(self.weight_shape, generator=generator) >= 0, std, -std)
        fan = fan_in if self.fan_mode == "fan_in" else fan_out
        if family == "ku":  # as nn.init.kaiming_uniform_(nonlinearity="relu") draws it
            bound = math.sqrt(3.0) * (math.sqrt(2.0) / math.sqrt(fan))
            return torch.empty(self.weight_shape).uniform_(-bound, bound, generator=generator)
        scale = fan_factor(self.density, self.scale_rule) if self.init.endswith("-scaled") else 1.0
        std = math.sqrt(2.0 / (scale * fan))
        if family == "uc":
            return torch.full(self.weight_shape, std)
        normal = torch.randn(self.weight_shape, generator=generator)
        if family == "sc":
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
    def top_k(self) -> Selection:
        """The current mode's top-k of |scores| (the layer's, or its share of the global one)."""
        if self.global_scope is not None:
            return self.global_scope.selection_of(self)
        return self._selector.select([self.scores], self.kept)[0]

    def mask(self) -> torch.Tensor:
        """The bool keep-mask of the current mode, (*weight_shape); not differentiable."""
        return self.top_k().keep(self.scores)

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
        return _StraightThroughMask.apply(self.scores, self.weight, self.top_k(), None)

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
        **rule: Any,
    ) -> None:
        super().__init__(bn_affine=bn_affine)
        self.layer_class, self.density, self.init = layer_class, density, init
        self.layer_options = rule  # the layer class's keyword options (kept_rule, scale_rule, fan_mode, ...)
        self.name = layer_class.rule
        self.binary_activations = binary_activations
        self._last_out: tuple[int, bool] | None = None  # (channels, is_conv) of the last layer built

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        self._last_out = (out_features, False)
        return self.layer_class.linear(
            in_features, out_features, self.density, self.init, **self.layer_options
        )

    def conv2d(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module:
        self._last_out = (out_channels, True)
        return self.layer_class.conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            self.density,
            self.init,
            **self.layer_options,
        )

    def activation(self) -> nn.Module:
        if not self.binary_activations:
            return nn.ReLU()
        if self._last_out is None:
            raise SlotlabError("binary activations need a layer before the first activation")
        channels, is_conv = self._last_out
        return BinaryActivation(channels, is_conv, affine=self.bn_affine)
