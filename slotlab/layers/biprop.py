"""Biprop / Multi-Prize Lottery Tickets (Diffenderfer & Kailkhura, ICLR 2021): masked, binarised random weights.

Same learned top-|s| mask M as Edge-Popup; the kept weights are replaced by their sign times one gain per layer
(Diffenderfer & Kailkhura 2021; ``GetQuantnet_binary`` in the released code, chrundle/biprop
``utils/conv_type.py``):

    alpha = sum |W * M| / #kept            (mean |W| over the kept weights, recomputed every forward)
    W_eff = alpha * sign(W) * M            (values in {-alpha, 0, +alpha}: a *ternary* network)
    dL/ds = sign(s) * dL/dW_eff * W        (alpha held constant; the corrected public backward, commit ce6a364)

Gain divisor (``gain_divisor``): ``kept`` divides by the number of weights the mask keeps (the paper's mean);
``released`` divides by ``int(d * n)`` as ``GetQuantnet_binary`` does, while its mask keeps ``n - int((1 - d) n)``,
so alpha comes out up to one weight's share larger (layer scope only: a global mask's per-layer count is not d n).

sign(0) is taken as +1 (a zero weight has probability zero under every init here).

MPT-1/1 (binary activations): ``slotlab.layers.activations.BinaryActivation`` = BatchNorm then sign, whose
backward is the Bi-Real quadratic-spline surrogate dsign(x)/dx ~ 2 (1 - |x|) for |x| <= 1, else 0 (Liu et al.
2018; released ``BiRealAct``). The BatchNorm is non-affine unless ``learned_bn`` asks for the "+BN" variant. It
sits where the model puts its activation (conv -> BN -> sign -> max-pool); the released ``Conv*_BinAct`` models
(chrundle/biprop ``models/frankle.py``) pool before the BN. Since sign(BN(x)) is monotone in x, max-pool commutes
with it (for a non-affine BatchNorm, or a positive learned scale), and only the BatchNorm statistics differ
(pre-pool instead of post-pool activations); ``benchmarks/binact_order.py`` compares the two orders. The last layer's
output stays real-valued (the models end on a linear layer), and so does the first layer's input (the image).
"""

from __future__ import annotations

import torch

from slotlab.errors import SlotlabError
from slotlab.layers.edge_popup import (
    MaskedLayer,
    Selection,
    _kept_magnitude,
    _kept_magnitude_above,
    _run,
    _StraightThroughMask,
)

GAIN_DIVISORS = ("kept", "released")


class BipropLayer(MaskedLayer):
    """Biprop: alpha * sign(W) * top_kept(|s|), alpha = mean |W| over the kept weights."""

    rule = "biprop"

    def __init__(self, *args, gain_divisor: str = "kept", **kwargs) -> None:
        if gain_divisor not in GAIN_DIVISORS:
            raise SlotlabError(
                f"gain divisor must be one of {', '.join(GAIN_DIVISORS)}, got {gain_divisor!r}"
            )
        super().__init__(*args, **kwargs)
        self.gain_divisor = gain_divisor

    def alpha(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's gain for ``mask`` (default: the current mode's top-k), a 0-dim tensor."""
        if mask is None:
            return self._alpha_of(self.top_k())
        return self._gain(*_run(_kept_magnitude, self.weight.reshape(-1), mask.reshape(-1)))

    def _alpha_of(self, selection: Selection) -> torch.Tensor:
        """The gain of a top-k: from its threshold in one compiled pass (no mask tensor), or its tie mask."""
        if selection.mask is not None:
            return self.alpha(selection.mask)
        flat = self.scores.detach().reshape(-1)
        return self._gain(*_run(_kept_magnitude_above, flat, self.weight.reshape(-1), selection.threshold))

    def _gain(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        if self.gain_divisor == "released":  # int(d * n), whatever the mask keeps
            return (total / max(int(self.density * self.weight.numel()), 1)).to(self.weight.dtype)
        # a global mask may leave a layer empty; its weight is then 0
        return (total / count.clamp_min(1)).to(self.weight.dtype)

    def effective_weight(self) -> torch.Tensor:
        top_k = self.top_k()
        return _StraightThroughMask.apply(self.scores, self.weight, top_k, self._alpha_of(top_k))

    @torch.no_grad()
    def ternary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The exported form: (alpha, codes) with codes int8 in {-1, 0, +1}; W_eff = alpha * codes. The gain
        comes from the same pass as the forward's, so that both are the same number."""
        was_training = self.training
        self.eval()
        try:
            selection = self.top_k()
            mask, alpha = selection.keep(self.scores), self._alpha_of(selection)
        finally:
            self.train(was_training)
        codes = torch.where(self.weight >= 0, 1, -1).to(torch.int8) * mask
        return alpha, codes
