"""A found mask, frozen, with the kept weights trained: finetuning the subnetwork a mask method found.

The baseline of Ramanujan et al. (CVPR 2020) that asks what training the weights adds to a found subnetwork
(``FixedSubnetConv`` in the released code, allenai/hidden-networks ``utils/conv_type.py``: the mask is set once
from the scores and the weights train under it):

    W_eff = W * M,   M frozen (the source run's evaluation mask),   dL/dW = dL/dW_eff * M

The weights start as the found network's effective weights (``W * M`` for Edge-Popup), so the network computes
what the found one computes at step 0, and pruned weights start at exactly 0. Their gradient is 0 and weight
decay of 0 is 0, so they stay 0 through any SGD or Adam step: the mask is part of the layer, not of the optimiser.
``train_weights=False`` freezes the weights as well (BatchNorm-only tuning).

The mask lives in the ``scores`` buffer as 1 (kept) and 0 (pruned), the form ``slotlab.sanity.set_mask`` writes.
"""

from __future__ import annotations

import torch
from torch import nn

from slotlab.layers.edge_popup import MaskedLayer


class FixedMaskLayer(MaskedLayer):
    """Trained weights under a frozen found mask; ``scores`` is a buffer of 1 (kept) and 0 (pruned)."""

    rule = "fixed-mask"

    def __init__(self, *args, train_weights: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.scores
        del self.weight
        self.weight = nn.Parameter(torch.zeros(self.weight_shape), requires_grad=train_weights)
        self.register_buffer("scores", torch.zeros(self.weight_shape))

    def mask(self) -> torch.Tensor:
        return self.scores != 0

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask()

    @torch.no_grad()
    def take(self, found: MaskedLayer) -> None:
        """Start from ``found``'s evaluation mask and effective weights (pruned positions exactly 0)."""
        if tuple(found.weight_shape) != self.weight_shape:
            raise ValueError(f"found layer is {tuple(found.weight_shape)}, this layer {self.weight_shape}")
        keep = found.selection()
        was_training = found.training
        found.eval()
        try:
            weight = found.effective_weight().detach()
        finally:
            found.train(was_training)
        self.scores.copy_(keep.to(self.scores.dtype))
        self.weight.copy_(torch.where(keep, weight, torch.zeros_like(weight)))
        self.kept = int(keep.sum())

    def extra_repr(self) -> str:
        return f"{self.weight_shape}, rule={self.rule}, train_weights={self.weight.requires_grad}"
