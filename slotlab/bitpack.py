"""Packing small integer codes (slot indices, keep-mask bits) into bytes, for the compact export."""

from __future__ import annotations

import math

import torch


def bits_per_connection(k: int) -> int:
    """ceil(log2 K) bits store one of K slot indices; K = 1 needs none."""
    return math.ceil(math.log2(k)) if k > 1 else 0


def pack_indices(index: torch.Tensor, bits: int) -> torch.Tensor:
    """Flattened int indices < 2**bits -> uint8 bitstream of ceil(n * bits / 8) bytes (little-endian bits)."""
    flat = index.reshape(-1).to(torch.int64).cpu()
    if bits == 0:
        return torch.zeros(0, dtype=torch.uint8)
    stream = ((flat.unsqueeze(1) >> torch.arange(bits)) & 1).reshape(-1).to(torch.uint8)
    stream = torch.cat([stream, stream.new_zeros((-len(stream)) % 8)])
    return (stream.view(-1, 8) << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def unpack_indices(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of ``pack_indices``: the first ``count`` indices as int64."""
    if bits == 0:
        return torch.zeros(count, dtype=torch.int64)
    stream = ((packed.to(torch.int64).unsqueeze(1) >> torch.arange(8)) & 1).reshape(-1)[: count * bits]
    return (stream.view(count, bits) << torch.arange(bits)).sum(1)
