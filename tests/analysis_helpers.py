"""Stand-ins shared by the analysis tests: a tiny mask layer and a model made of them."""

from __future__ import annotations

import torch
from torch import nn


class TopMaskLinear(nn.Module):
    """A linear layer that keeps the top ``density`` fraction of |scores|: the SelectingLayer protocol for masks."""

    def __init__(self, in_features: int, out_features: int, density: float, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=gen), requires_grad=False)
        self.scores = nn.Parameter(torch.randn(out_features, in_features, generator=gen))
        self.density = density

    def selection(self) -> torch.Tensor:
        keep = round(self.density * self.scores.numel())
        flat = torch.zeros(self.scores.numel(), dtype=torch.bool)
        flat[self.scores.detach().abs().reshape(-1).topk(keep).indices] = True
        return flat.reshape(self.scores.shape)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.selection()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.effective_weight().t()


def mask_model(seed: int, density: float = 0.5, widths: tuple[int, ...] = (12, 8, 4)) -> nn.Sequential:
    layers = [
        TopMaskLinear(widths[i], widths[i + 1], density, seed * 100 + i) for i in range(len(widths) - 1)
    ]
    return nn.Sequential(*layers)
