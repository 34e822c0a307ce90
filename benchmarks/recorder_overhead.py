"""Overhead of the selection Recorder on training, as a ratio, measured in one run.

Trains the same slots run (default: Lenet-300-100, K = 8, greedy, real MNIST) with no recorder, with the default
recorder (a snapshot every epoch) and with a dense one (every 100 steps), alternating the variants so that all
see the same machine state. Two figures per variant:

* direct: the time spent inside the recorder (selection, packing, atomic write) over the time of the training
  steps, which is what the recorder adds to an epoch and is not blurred by other jobs on the machine;
* end to end: the median wall time of ``Trainer.fit`` (training plus validation) over the one without recorder.

    python benchmarks/recorder_overhead.py [--dataset mnist] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from slotlab.analysis import Recorder
from slotlab.config import RunConfig
from slotlab.data import make_splits
from slotlab.runs import initial_network, make_trainer

VARIANTS = {"none": None, "every epoch (default)": (1, "epoch"), "every 100 steps": (100, "step")}


def run_once(config: RunConfig, splits, recording: tuple[int, str] | None, folder: Path) -> dict[str, float]:
    model = initial_network(config, splits.info.input_shape, splits.info.num_classes)
    recorder = Recorder(*recording, path=folder) if recording else None
    trainer = make_trainer(
        config, model, splits, torch.device("cpu"), [recorder] if recorder else [], progress=False
    )
    start = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - start
    train = float(result.history.query("split == 'train'")["seconds"].sum())
    snapshots = sorted((folder / "selections").glob("step-*.pt")) if recorder else []
    return {
        "wall": wall,
        "train": train,
        "recorder": recorder.seconds if recorder else 0.0,
        "snapshots": recorder.count if recorder else 0,
        "bytes": snapshots[-1].stat().st_size if snapshots else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="lenet300")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig(model=args.model, dataset=args.dataset, k=args.k, epochs=args.epochs)
    splits = make_splits(config.dataset, config.val_size, config.split_seed, config.train_size)
    steps = args.epochs * -(-len(splits.train.labels) // config.batch_size)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, (name, recording) in enumerate(VARIANTS.items()):
                results[name].append(run_once(config, splits, recording, Path(tmp) / f"{repeat}-{i}"))
    base_wall = statistics.median(r["wall"] for r in results["none"])
    print(
        f"{args.model}, K = {args.k}, {args.dataset}: {args.epochs} epochs ({steps} steps) per run, "
        f"{args.repeats} runs per variant; torch {torch.__version__}, {platform.machine()}, 1 thread"
    )
    print()
    print(
        "| recorder | snapshots per run | bytes per snapshot | recorder s per run | train s per run | "
        "direct overhead | end-to-end wall ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        recorder = statistics.median(r["recorder"] for r in runs)
        train = statistics.median(r["train"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        direct = f"{100 * recorder / train:.2f} %" if runs[0]["snapshots"] else "-"
        print(
            f"| {name} | {runs[0]['snapshots']} | {runs[0]['bytes']:,} | {recorder:.3f} | {train:.2f} | "
            f"{direct} | {wall / base_wall:.3f} |"
        )


if __name__ == "__main__":
    main()
