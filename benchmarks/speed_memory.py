"""Training-step time and memory of Slot Machines (K=8) against dense, measured in one run, as ratios.

For each model (Lenet-300-100 on 1x28x28, Conv-4 in the Slot Machines form on 3x32x32; batch 128) it times the
whole step (forward, backward, fused SGD with momentum) of a slots and a dense model, alternating short blocks of
steps so that both see the same machine state, and reports medians. Memory is the peak resident set of a fresh
process that builds the model and takes three steps, minus the same process before the model exists.

For Lenet the slot step is memory-bound; the script counts the bytes a greedy slot step must move and reports the
floor time = dense step + bytes / measured copy bandwidth.

    python benchmarks/speed_memory.py
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from timing import alternating_medians

from slotlab.init import initialize
from slotlab.layers import DenseFactory, SlotFactory
from slotlab.layers.factory import RandomWeightLayer
from slotlab.layers.slot import greedy_weight
from slotlab.models import build_model
from slotlab.optim import make_optimizer
from slotlab.slot_sgd import fused_update_available

MODELS = {"lenet300": (1, 28, 28), "conv4-sm": (3, 32, 32)}


class _Opt:  # the optimiser fields make_optimizer reads
    optimizer, lr, momentum, weight_decay = "sgd", 0.01, 0.9, 0.0
    nesterov, norm_decay = False, True


VARIANTS = ("dense", "slots", "slots-unfused")


def make(model: str, variant: str, k: int):
    """A training step of ``variant``: dense; slots with the trainer's optimiser (``SlotSGD`` where
    torch.compile works); slots with plain fused SGD and the K-sized score gradient."""
    factory = DenseFactory() if variant == "dense" else SlotFactory(k)
    net = initialize(build_model(model, factory, MODELS[model], 10), 0, 0)
    opt = make_optimizer(
        _Opt, [p for p in net.parameters() if p.requires_grad], net if variant == "slots" else None
    )
    x = torch.randn(128, *MODELS[model])
    y = torch.randint(0, 10, (128,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return net, step


def connections(net) -> int:
    return sum(m.effective_weight().numel() for m in net.modules() if isinstance(m, RandomWeightLayer))


def time_steps(model: str, k: int, blocks: int, per_block: int) -> dict[str, float]:
    steps = {m: make(model, m, k)[1] for m in VARIANTS}
    return alternating_medians(steps, blocks, per_block, warmup=5)


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def memory_child(model: str, method: str, k: int) -> None:
    """Runs in a fresh process: prints the peak RSS growth (bytes) of building and training the model."""
    x = torch.randn(4, 4)
    (x @ x).sum()  # load the kernels before the baseline
    # and compile the fused slot kernels: a one-off cost of the process, not the model's memory
    fused_update_available("cpu")
    greedy_weight(torch.rand(k, 2, 3), torch.rand(k, 2, 3))  # (its loop over the K planes is compiled per K)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak to the current RSS
    base = rss_kib("VmRSS")
    net, step = make(model, method, k)
    for _ in range(3):
        step()
    print(json.dumps({"peak_bytes": (rss_kib("VmHWM") - base) * 1024, "connections": connections(net)}))


def memory(model: str, method: str, k: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", model, method, str(k)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def copy_bandwidth() -> float:
    """Bytes per second moved (read + write) by a large tensor copy: the practical memory-bandwidth ceiling."""
    src, dst = torch.rand(64 * 2**20), torch.empty(64 * 2**20)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    return 2 * src.numel() * 4 * 10 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        memory_child(args.child[0], args.child[1], int(args.child[2]))
        return
    k = args.k
    bandwidth = copy_bandwidth()
    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s\n"
    )
    fused = fused_update_available("cpu")
    print(f"fused slot update (SlotSGD): {'on' if fused else 'off: torch.compile unavailable'}\n")
    print(
        "| model | dense step ms | slots step ms | time ratio | slots, unfused SGD, ms | ratio "
        "| dense MiB | slots MiB | slots floats/connection |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    floors = {}
    for model in MODELS:
        t = time_steps(model, k, args.blocks, args.steps)
        mem = {m: memory(model, m, k) for m in ("dense", "slots")}
        n = mem["slots"]["connections"]
        # activations etc. are the same in both runs: charge slots only for what differs, plus dense's 3 floats
        slot_floats = (mem["slots"]["peak_bytes"] - mem["dense"]["peak_bytes"]) / 4 / n + 3
        print(
            f"| {model} | {t['dense'] * 1e3:.2f} | {t['slots'] * 1e3:.2f} | {t['slots'] / t['dense']:.2f} "
            f"| {t['slots-unfused'] * 1e3:.2f} | {t['slots-unfused'] / t['dense']:.2f} "
            f"| {mem['dense']['peak_bytes'] / 2**20:.1f} | {mem['slots']['peak_bytes'] / 2**20:.1f} "
            f"| {slot_floats:.1f} (limit {4 * k + 2}) |"
        )
        # floats per connection a greedy slot step must move: the selection reads S and W (2K); fused, the
        # update reads W, S, momentum and writes S, momentum (5K); unfused, the backward also writes the K-sized
        # score gradient and SGD reads it back (2K more)
        floors[model] = {"slots": (7 if fused else 9) * k * 4 * n, "slots-unfused": 9 * k * 4 * n}, t
    print()
    for model, (nbytes, t) in floors.items():
        for variant, moved in nbytes.items():
            floor = t["dense"] + moved / bandwidth
            print(
                f"{model}, {variant}: a step must move {moved / 2**20:.0f} MiB -> floor {floor * 1e3:.2f} ms "
                f"({floor / t['dense']:.2f}x dense); measured {t[variant] * 1e3:.2f} ms = "
                f"{t[variant] / floor:.2f}x floor"
            )


if __name__ == "__main__":
    main()
