"""Activations that layer factories put between layers, other than ReLU.

``BinaryActivation`` = BatchNorm then sign, the activation of the binary-activation networks (MPT-1/1) of
Diffenderfer & Kailkhura (ICLR 2021). Its backward is the Bi-Real quadratic-spline surrogate
dsign(x)/dx ~ 2 (1 - |x|) for |x| <= 1, else 0 (Liu et al., ECCV 2018; ``BiRealAct`` in the released Biprop code,
chrundle/biprop ``models/frankle.py``). The BatchNorm is non-affine unless ``affine`` asks for the "+BN" variant,
whose BatchNorm gamma and beta are learned.
"""

from __future__ import annotations

import torch
from torch import nn


class _BiRealSign(torch.autograd.Function):
    """sign(x) forward; Bi-Real spline surrogate 2 (1 - |x|) on |x| <= 1 backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 * (1 - x.abs())).clamp_min(0)


class _AnyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the channel axis of (N, C) or (N, C, H, W) inputs."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected a 2-D or 4-D input, got {input.dim()}-D")


class BinaryActivation(nn.Module):
    """MPT-1/1 activation: BatchNorm (non-affine unless ``affine``) then sign with the Bi-Real surrogate."""

    def __init__(self, channels: int, is_conv: bool, affine: bool = False) -> None:
        super().__init__()
        self.bn = _AnyBatchNorm(channels, affine=affine)
        self.is_conv = is_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BiRealSign.apply(self.bn(x))
