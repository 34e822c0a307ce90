"""Zhou et al.'s supermask (NeurIPS 2019, "Deconstructing Lottery Tickets", Sec. 5): a sampled Bernoulli mask.

Every frozen random weight ``W`` has a learned score ``s``; the keep-probability is sigmoid(s), and every training
forward pass draws a fresh mask (paper Sec. 5; ``SampleSubnetConv`` with ``StraightThroughBinomialSample`` in the
released Edge-Popup code, allenai/hidden-networks ``utils/conv_type.py``):

    p = sigmoid(s),   m ~ Bernoulli(p)   (m = [u < p], u ~ U[0, 1) per weight),   W_eff = W * m

The scores learn through the straight-through estimator on the sample (the gradient of m is taken to be that of
p, Zhou et al.'s "sample + p - stopgrad(p)"):

    dL/ds = dL/dW_eff * W * p * (1 - p)

Unlike Edge-Popup the number kept is not fixed: it is learned (about half the weights at the start, where the
scores are near 0). Evaluation (``eval_mask``): ``sampled`` draws a fresh mask as in training, as the released
code does (its forward samples in every mode) and as Zhou et al. evaluate their supermasks; ``threshold`` keeps
the weights with p > 1/2 (the expected mask rounded, Zhou et al.'s ``round_mask``), a deterministic network.
``selection()`` always returns that threshold mask (the most probable mask), so analyses see a fixed choice.

Randomness: ``generator`` when set, else torch's global generator, which the trainer seeds per epoch from the
run's sample seed (so a resumed run draws the same masks).
"""

from __future__ import annotations

import torch

from slotlab.errors import SlotlabError
from slotlab.layers.edge_popup import MaskedLayer

EVAL_MASKS = ("sampled", "threshold")


class _StraightThroughSample(torch.autograd.Function):
    """Forward ``W * m`` for a drawn mask ``m``; backward dL/ds = dL/dW_eff * W * p (1 - p)."""

    @staticmethod
    def forward(ctx, scores, weight, mask):
        probability = torch.sigmoid(scores)
        ctx.save_for_backward(weight, probability)
        return weight * mask

    @staticmethod
    def backward(ctx, grad_weight):
        weight, probability = ctx.saved_tensors
        grad = grad_weight.to(probability.dtype) * weight * probability * (1 - probability)
        return grad, None, None


def sample_mask(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Bernoulli(sigmoid(scores)) bool mask of the scores' shape: [u < sigmoid(s)], u uniform in [0, 1)."""
    u = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
    return u < torch.sigmoid(scores)


class SupermaskLayer(MaskedLayer):
    """Frozen random weights under a mask sampled from sigmoid(scores) (Zhou et al. 2019)."""

    rule = "supermask"

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        density: float = 1.0,  # unused: the supermask learns how many weights it keeps
        init: str = "sc-scaled",
        stride: int = 1,
        padding: int = 0,
        eval_mask: str = "sampled",
        **rule: object,
    ) -> None:
        if eval_mask not in EVAL_MASKS:
            raise SlotlabError(f"eval_mask must be one of {', '.join(EVAL_MASKS)}, got {eval_mask!r}")
        super().__init__(weight_shape, 1.0, init, stride, padding, **rule)
        self.eval_mask = eval_mask
        self.generator: torch.Generator | None = None

    def threshold_mask(self) -> torch.Tensor:
        """sigmoid(s) > 1/2, i.e. s > 0: the most probable mask (bool, weight-shaped)."""
        return self.scores.detach() > 0

    def mask(self) -> torch.Tensor:
        if self.training or self.eval_mask == "sampled":
            return sample_mask(self.scores.detach(), self.generator)
        return self.threshold_mask()

    @torch.no_grad()
    def selection(self) -> torch.Tensor:
        return self.threshold_mask().clone()

    def effective_weight(self) -> torch.Tensor:
        return _StraightThroughSample.apply(self.scores, self.weight, self.mask())

    def extra_repr(self) -> str:
        return f"{self.weight_shape}, rule={self.rule}, eval_mask={self.eval_mask}, init={self.init}"
