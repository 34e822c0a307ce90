"""Accuracy of Slot Machines (greedy) on MNIST Lenet-300-100 for K in {1, 2, 4, 8, 16}, and the dense baseline.

Recipe (Aladago & Torresani 2021: the paper's rather than the released code's, whose ``training_schedule.py``
uses lr 0.1 (0.01 for K > 8), no warm restarts and no weight decay outside VGG-19): SGD with momentum 0.9,
weight decay 1e-4 on the scores, lr 0.2 for K <= 8 and 0.1 above, batch 128, a 10 000-image validation split,
the test set evaluated once on the best-validation epoch. The paper trains 200 epochs with warm restarts; on a
2-core CPU this script uses a cosine schedule over ``--epochs`` (default 30) instead, and says so in its table.

    python benchmarks/mnist_slots.py --seeds 0 1 2 --epochs 30
"""

from __future__ import annotations

import argparse
import platform

import pandas as pd
import torch

from slotlab.config import RunConfig
from slotlab.runs import load_or_run


def configs(epochs: int, seeds: list[int], ks: list[int], dense: bool, init: str) -> list[RunConfig]:
    out = []
    for seed in seeds:
        seeds_kw = dict(weight_seed=seed, score_seed=seed, data_seed=seed, sample_seed=seed)
        for k in ks:
            out.append(
                RunConfig(
                    method="slots",
                    k=k,
                    init=init,
                    lr=0.2 if k <= 8 else 0.1,
                    weight_decay=1e-4,
                    epochs=epochs,
                    **seeds_kw,
                )
            )
        if dense:
            out.append(RunConfig(method="dense", lr=0.05, weight_decay=1e-4, epochs=epochs, **seeds_kw))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="values of K")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    parser.add_argument("--init", default="default", help="slot value init: default (= paper), paper or code")
    parser.add_argument("--runs", default="benchmarks/runs")
    args = parser.parse_args()
    rows = []
    for config in configs(args.epochs, args.seeds, args.ks, not args.no_dense, args.init):
        result = load_or_run(config, root=args.runs, progress=False)
        rows.append(
            {
                "method": config.method,
                "K": config.options.k if config.method == "slots" else "-",
                "seed": config.weight_seed,
                "val": result.metrics["val_accuracy"],
                "test": result.metrics["test_accuracy"],
                "epoch": result.metrics["best_epoch"],
                "s/epoch": result.metrics["train_seconds"] / config.epochs,
            }
        )
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    table = frame.groupby(["method", "K"], sort=False).agg(
        test=("test", "mean"),
        std=("test", "std"),
        val=("val", "mean"),
        runs=("seed", "count"),
        s_per_epoch=("s/epoch", "mean"),
    )
    print(
        f"\nMNIST Lenet-300-100, {args.epochs} epochs cosine, slot init {args.init}, seeds {args.seeds}; "
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| method | K | test % (mean) | std | val % | runs | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for (method, k), r in table.iterrows():
        std = "-" if pd.isna(r["std"]) else f"{100 * r['std']:.2f}"
        print(
            f"| {method} | {k} | {100 * r['test']:.2f} | {std} | {100 * r['val']:.2f} | {int(r['runs'])} "
            f"| {r['s_per_epoch']:.1f} |"
        )


if __name__ == "__main__":
    main()
