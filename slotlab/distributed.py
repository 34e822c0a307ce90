"""Data-parallel training across processes: PyTorch DistributedDataParallel, launched by torchrun.

``torchrun --nproc-per-node=N -m slotlab train ...`` starts N processes with RANK, WORLD_SIZE and LOCAL_RANK set;
``init_from_env`` joins them into a process group (gloo on the CPU, NCCL on GPUs, one GPU per process). Then:

- each rank takes an interleaved shard of every epoch's order (the semantics of ``DistributedSampler``: the order
  is padded by repeating its start to a multiple of N, rank r takes positions r, r + N, ...), with a per-rank
  batch of B / N. Batch j of all ranks together is exactly batch j of a single-process run with batch B, and
  DDP's gradient averaging of the per-rank means equals the gradient of the global mean: the two runs agree up to
  floating-point summation order (for models without BatchNorm, whose statistics are per rank);
- all ranks draw from the same seeded generators (data order, sampled selection, in-place weight edits), so every
  rank holds identical parameters and buffers after every step without broadcasting them; BatchNorm running
  statistics, which see different shards, are averaged across ranks before each evaluation;
- metrics are sums reduced across ranks; only rank 0 writes files.

Outside torchrun everything here is a no-op for a single process (rank 0 of 1).
"""

from __future__ import annotations

import inspect
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from slotlab.errors import SlotlabError
from slotlab.layers.slot import use_autograd_grads


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank ``rank`` of ``world_size``, GPU ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a rendezvous of processes started on this machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_torchrun_environment(rank: int, world_size: int, port: int) -> None:
    """Set what torchrun sets for one process of a single-node launch (for processes started by hand)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def current() -> Context:
    """The context of this process: from the initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Context()


def init_from_env(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group torchrun describes (idempotent); returns the context and this rank's device.

    A CUDA ``device`` without an index becomes ``cuda:LOCAL_RANK``. Without torchrun's variables this returns a
    single-process context and ``device`` unchanged.
    """
    if not launched_by_torchrun():
        return current(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise SlotlabError(
                f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun --nproc-per-node=N "
                f"-m slotlab train ..., or unset WORLD_SIZE"
            )
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return current(), device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(order: torch.Tensor, rank: int, world_size: int, pad: bool = True) -> torch.Tensor:
    """Rank ``rank``'s share of ``order`` (N,): positions rank, rank + W, ... as ``DistributedSampler`` takes them.

    With ``pad`` (training), ``order`` is first extended by repeating its start until its length is a multiple of
    W, so that every rank takes the same number of batches (the collective calls of DDP must match). Without it
    (evaluation) nothing is repeated and the shards together are ``order`` exactly once.
    """
    if world_size == 1:
        return order
    if pad and len(order) % world_size:
        missing = world_size - len(order) % world_size
        repeats = -(-missing // len(order))
        order = torch.cat([order, order.repeat(repeats)[:missing]])
    return order[rank::world_size]


def rank_batch_size(batch_size: int, ctx: Context) -> int:
    """The per-rank batch of a global batch ``batch_size``."""
    if batch_size % ctx.world_size:
        raise SlotlabError(
            f"batch_size {batch_size} is the global batch and must be divisible by the {ctx.world_size} "
            f"processes; use a multiple of {ctx.world_size}"
        )
    return batch_size // ctx.world_size


def prepare_model(model: nn.Module, device: torch.device, ctx: Context) -> nn.Module:
    """The module the training step calls: ``model`` itself, or ``model`` wrapped in DistributedDataParallel.

    Slot layers are switched to ``AutogradGrad`` (``use_autograd_grads``): their default strategy writes the
    score gradient in place, past autograd, where DDP's gradient hooks would not see it (``SlotSGD``, built
    before or after, leaves that strategy alone). Buffers are not broadcast (``broadcast_buffers=False``):
    every rank computes the same random values and in-place edits itself, and broadcasting would both cost
    K-sized traffic every step and hide an edit that differs between ranks.
    """
    if not ctx.is_distributed or not any(p.requires_grad for p in model.parameters()):
        return model  # one process, or nothing to train (random-slots): no gradients to average
    use_autograd_grads(model)
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.15 names the option forward_sync_buffers (and warns on the old name)
    no_sync = (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else "broadcast_buffers"
    )
    return ddp(model, device_ids=device_ids, **{no_sync: False})


def all_reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The element-wise sum of ``values`` over ranks (returned, ``values`` untouched)."""
    if not ctx.is_distributed:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_reduce_max(value: float, ctx: Context, device: torch.device) -> float:
    """The largest ``value`` over ranks (wall-clock seconds: an epoch lasts as long as its slowest rank)."""
    if not ctx.is_distributed:
        return value
    box = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return box.item()


@torch.no_grad()
def average_batchnorm_statistics(model: nn.Module, ctx: Context) -> None:
    """Average BatchNorm running means and variances over ranks, so every rank evaluates the same network."""
    if not ctx.is_distributed:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buffer in (module.running_mean, module.running_var):
                if buffer is not None:
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer.div_(ctx.world_size)


def broadcast_object(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every rank (a decision only rank 0 can take, such as whether a run is locked)."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Context) -> None:
    if ctx.is_distributed:
        dist.barrier()
