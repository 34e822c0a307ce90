"""Step time of LaPerm over plain Adam, averaged over whole sync periods, measured in one run as a ratio.

For each model (Lenet-300-100 and F2 on 1x28x28) and sync period k, two copies of the same network train on the
same fixed batches: one with fused Adam, one with ``LaPerm(Adam, sync_period=k)``. Blocks of whole sync periods
(at least 20 steps) alternate between the two, so both see the same machine state; the table gives the median
time per step over the blocks and their ratio, plus the time of one sync on its own (one stable sort of every
row, one scatter). Times are the process's CPU time (``time.process_time``) with one thread, so that other jobs
on a shared machine, which stretch wall-clock times several-fold, do not enter the ratio.

    python benchmarks/laperm_speed.py --batch 128 --k 1 --models lenet300 --threads 1
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from timing import alternating_medians

from slotlab.init import initialize
from slotlab.laperm import LaPerm
from slotlab.layers import DenseFactory
from slotlab.models import build_model

SHAPE = (1, 28, 28)


def make(model: str, k: int | None, batch: int):
    net = initialize(build_model(model, DenseFactory(), SHAPE, 10), 0, 0)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    opt = adam if k is None else LaPerm(net, adam, sync_period=k)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, *SHAPE, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(8)
    ]
    state = {"i": 0}

    def step() -> None:
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step, opt


def measure(model: str, k: int, batch: int, blocks: int) -> dict[str, float]:
    steps_per_block = k * math.ceil(20 / k)  # whole sync periods: each LaPerm block holds its share of syncs
    adam_step, _ = make(model, None, batch)
    laperm_step, laperm = make(model, k, batch)
    # warm-up of whole blocks too, so that LaPerm's counter stays on period boundaries
    times = alternating_medians(
        {"adam": adam_step, "laperm": laperm_step},
        blocks,
        steps_per_block,
        warmup=steps_per_block,
        clock=time.process_time,
    )
    syncs = []
    for _ in range(max(blocks, 5)):
        laperm.steps += 1  # force a real sync each time
        start = time.process_time()
        laperm.sync()
        syncs.append(time.process_time() - start)
    return {**times, "sync": statistics.median(syncs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 20, 100, 1000])
    parser.add_argument("--models", nargs="+", default=["lenet300", "f2"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as the CPU time is read)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"median of {args.blocks} alternating blocks\n"
    )
    print("| model | k | Adam step ms | LaPerm step ms (incl. 1/k of a sync) | ratio | one sync ms |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        for k in args.k:
            t = measure(model, k, args.batch, args.blocks if k < 1000 else max(3, args.blocks // 2))
            print(
                f"| {model} | {k} | {t['adam'] * 1e3:.3f} | {t['laperm'] * 1e3:.3f} | {t['laperm'] / t['adam']:.2f} "
                f"| {t['sync'] * 1e3:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
