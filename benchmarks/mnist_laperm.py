"""Accuracy of LaPerm on MNIST: Lenet-300-100 for several sync periods k against plain Adam, and the F2
weight-agnostic network.

Lenet-300-100 (a trained Lenet-300-100 reaches about 98.0-98.4 %; target >= 98.0 % and within 0.3 points of
Adam): LaPerm with Adam inside (lr 1e-3, cosine over ``--epochs``, batch 50, so one epoch is 1000 steps and k in
{1, 20, 100, 500, 1000} all divide it) against plain Adam with the same budget. Glorot-uniform initial values;
the 50 000 / 10 000 train/validation split, the test set evaluated once on the best-validation epoch, whose
network is a synced one.

F2 (Qiu & Suda 2020, §5.5; 78.14 % in the README of the authors' ihsuy/Train-by-Reconnect, recipe from their
``notebooks/F1_and_F2.ipynb``; target >= 78 %): 784-128-64-10 without biases, every weight 0.03, then a random
14/15, 6/7 and 2/3 of the three layers' weights zeroed (92.6 % zeros in all), k = 250, batch 128, 25 epochs, Adam
lr 1e-3 (cosine instead of the notebook's 0.95^epoch), L2 1e-4 as Keras counts it (weight decay 2e-4).

    python benchmarks/mnist_laperm.py --epochs 20            # all runs (cached in benchmarks/runs)
    python benchmarks/mnist_laperm.py --only k1              # one run, e.g. in a second process
"""

from __future__ import annotations

import argparse
import platform

import torch

from slotlab.config import RunConfig
from slotlab.runs import load_or_run

STEPS_PER_EPOCH = 1000  # 50 000 training images / batch 50


def configs(epochs: int, seed: int) -> dict[str, RunConfig]:
    seeds = dict(weight_seed=seed, score_seed=seed, data_seed=seed, sample_seed=seed)
    common = dict(model="lenet300", epochs=epochs, batch_size=50, optimizer="adam", lr=1e-3, **seeds)
    out = {"adam": RunConfig(method="dense", **common)}
    for k in (1, 20, 100, 500, STEPS_PER_EPOCH):
        out[f"k{k}"] = RunConfig(method="laperm", sync_period=k, **common)
    out["f2"] = RunConfig(
        method="laperm",
        model="f2",
        epochs=25,
        batch_size=128,
        weight_decay=2e-4,
        sync_period=250,
        shared_value=0.03,
        init_density="1/15,1/7,1/3",
        **seeds,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only these (adam, k1, k20, k100, k500, k1000, f2)")
    parser.add_argument("--runs", default="benchmarks/runs")
    args = parser.parse_args()
    rows = []
    for name, config in configs(args.epochs, args.seed).items():
        if args.only and name not in args.only:
            continue
        result = load_or_run(config, root=args.runs, progress=False, device="cpu")
        m = result.metrics
        rows.append((name, config, m))
        print(name, config.name, f"test {m['test_accuracy']:.4f}", flush=True)
    print(
        f"\nMNIST, seed {args.seed}; {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| run | model | k | epochs | test % | val % | best epoch | s/epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, config, m in rows:
        k = "-" if config.method == "dense" else config.options.sync_period
        label = "Adam (dense)" if config.method == "dense" else f"LaPerm {name}"
        print(
            f"| {label} | {config.model} | {k} | {config.epochs} | {100 * m['test_accuracy']:.2f} "
            f"| {100 * m['val_accuracy']:.2f} | {m['best_epoch']} | {m['train_seconds'] / config.epochs:.1f} |"
        )


if __name__ == "__main__":
    main()
