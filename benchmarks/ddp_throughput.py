"""Training throughput (images/s) of 1 process against 2 DistributedDataParallel processes on the CPU.

Conv-4 (Edge-Popup form) on CIFAR-shaped inputs (the synthetic-cifar set: 3x32x32, 10 classes), global batch
128 (64 per rank with 2 processes), gloo, one thread per process. Each configuration trains ``--epochs`` epochs of
``--train-size`` images through slotlab's Trainer (the code path of ``torchrun -m slotlab train``); the first
epoch is a warm-up and the rest are timed (the slowest rank's wall clock, as the trainer reduces it). A third row
gives one process with two threads, the alternative to DDP on a two-core machine.

    python benchmarks/ddp_throughput.py                       # CPU: 1 vs 2 processes, slots and dense
    python benchmarks/ddp_throughput.py --device cuda --procs 1 --models conv4 resnet18 --train-size 10000 \
        --methods slots dense learned                         # one GPU: single-GPU throughput per method
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

from slotlab import distributed


def _rank(rank: int, world: int, port: int, spec: dict, out: str) -> None:
    distributed.set_torchrun_environment(rank, world, port)
    if world == 1:
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(name)
    torch.set_num_threads(spec["threads"])
    from slotlab.config import RunConfig
    from slotlab.data import make_splits
    from slotlab.device import pick_device
    from slotlab.runs import initial_network, make_trainer

    config = RunConfig(**spec["config"])
    ctx, device = distributed.init_from_env(pick_device(spec["device"]))
    splits = make_splits(config.dataset, config.val_size, config.split_seed, config.train_size)
    model = initial_network(config, splits.info.input_shape, splits.info.num_classes)
    result = make_trainer(config, model, splits, device, progress=False).fit()
    if ctx.is_primary:
        train = result.history.query("split == 'train'")
        Path(out).write_text(json.dumps({"seconds": train["seconds"].tolist()}))
    distributed.shutdown()


def measure(method: str, model: str, procs: int, threads: int, args) -> float:
    config = dict(
        method=method,
        model=model,
        dataset="synthetic-cifar",
        epochs=args.epochs,
        batch_size=128,
        train_size=args.train_size,
        val_size=100,
        k=8,
        lr=0.1,
    )
    spec = {"config": config, "threads": threads, "device": args.device}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.json")
        port = distributed.free_loopback_port()
        mp.start_processes(_rank, args=(procs, port, spec, out), nprocs=procs, start_method="spawn")
        seconds = json.loads(Path(out).read_text())["seconds"][1:]  # the first epoch warms up
    padded = -(-args.train_size // procs) * procs
    return padded * len(seconds) / sum(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=["slots", "dense"])
    parser.add_argument("--models", nargs="+", default=["conv4"])
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cpu = args.device == "cpu"
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}")
    columns = [f"{p} process{'es' if p > 1 else ''} img/s" for p in args.procs]
    columns += ["ratio 2/1"] if {1, 2} <= set(args.procs) else []
    columns += ["1 process, 2 threads img/s"] if cpu else []
    print("| model | method | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for model in args.models:
        for method in args.methods:
            rates = {procs: measure(method, model, procs, 1, args) for procs in args.procs}
            cells = [f"{rates[p]:.1f}" for p in args.procs]
            cells += [f"{rates[2] / rates[1]:.2f}"] if {1, 2} <= set(args.procs) else []
            cells += [f"{measure(method, model, 1, 2, args):.1f}"] if cpu else []
            print(f"| {model} | {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
