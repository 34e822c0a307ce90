"""Accuracy of Edge-Popup, Biprop (each with and without Iterative Weight Recycling) and the random-mask baseline
on MNIST Lenet-300-100, at densities {0.5, 0.3, 0.7, 0.1} (that order: 0.5 first).

Recipe (the MNIST FC config of the released Edge-Popup code, allenai/hidden-networks ``configs/smallscale/fc/``,
which Biprop's MPT-1/32 configs follow; 30 epochs instead of 100): SGD lr 0.1, momentum 0.9, weight decay 1e-4 on
the scores, cosine, batch 128; a 10 000-image validation split, the test set evaluated once on the
best-validation epoch. Recycling: rate 0.1 every 3 epochs (IWR's Conv-2/4/8 Edge-Popup setting, used for both
methods here). Random mask: the weights trained under a fixed random mask (lr 0.05, as the dense
baseline); its untrained form is the "random subnetwork" sanity column (same weights as Edge-Popup, a random mask
of the same per-layer density, no training), evaluated on the test set.

    python benchmarks/mnist_masks.py --densities 0.5 --epochs 30
    python benchmarks/mnist_masks.py --densities 0.3 0.7 0.1 --epochs 10      # fewer epochs, labelled so

Runs are cached in benchmarks/runs (a finished run is read back, an interrupted one resumes).
"""

from __future__ import annotations

import argparse
import platform

import pandas as pd
import torch

from slotlab.config import RunConfig
from slotlab.data import Batches, make_splits
from slotlab.runs import load_or_run


def configs(density: float, epochs: int, seed: int) -> list[tuple[str, RunConfig]]:
    common = dict(
        density=density,
        epochs=epochs,
        lr=0.1,
        weight_decay=1e-4,
        weight_seed=seed,
        score_seed=seed,
        data_seed=seed,
        sample_seed=seed,
    )
    recycle = dict(recycle_rate=0.1, recycle_every=3)
    return [
        ("edge-popup", RunConfig(method="edge-popup", **common)),
        ("biprop", RunConfig(method="biprop", **common)),
        ("edge-popup + IWR", RunConfig(method="edge-popup", **common, **recycle)),
        ("biprop + IWR", RunConfig(method="biprop", **common, **recycle)),
        ("random mask, trained weights", RunConfig(method="random-mask", **{**common, "lr": 0.05})),
    ]


@torch.no_grad()
def test_accuracy(model, splits) -> float:
    model.eval()
    correct = 0
    for images, labels in Batches(splits.test, splits.info, 1000).epoch():
        correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(splits.test.labels)


def control_rows(density: float, epochs: int, seed: int, runs: str) -> list[dict]:
    """Sanity controls of the finished found networks (slotlab.sanity), test accuracy."""
    from slotlab.runs import open_run, run_dir
    from slotlab.sanity import controls

    rows = []
    for label, config in configs(density, epochs, seed)[:4]:
        if not (run_dir(config, runs) / "result.json").is_file():
            continue
        run = open_run(run_dir(config, runs))
        splits = make_splits(config.dataset, config.val_size, config.split_seed, config.train_size)
        row = {"density": density, "method": label}
        for name, model in controls(run.model("best"), seed=seed).items():
            row[name] = test_accuracy(model, splits)
        rows.append(row)
    return rows


@torch.no_grad()
def untrained_random_subnetwork(config: RunConfig) -> float:
    """Test accuracy of Edge-Popup's initial weights under a random mask of the same density (no training)."""
    from slotlab.runs import initial_network
    from slotlab.sanity import random_mask

    splits = make_splits(config.dataset, config.val_size, config.split_seed, config.train_size)
    model = random_mask(
        initial_network(config, splits.info.input_shape, splits.info.num_classes), seed=config.score_seed
    )
    model.eval()
    correct = 0
    for images, labels in Batches(splits.test, splits.info, 1000).epoch():
        correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(splits.test.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.5, 0.3, 0.7, 0.1])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="benchmarks/runs")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="method labels to run (e.g. biprop 'biprop + IWR'); default all",
    )
    parser.add_argument("--no-sanity", action="store_true", help="skip the untrained random-subnetwork row")
    parser.add_argument(
        "--controls", action="store_true", help="only print the sanity controls of the finished runs"
    )
    parser.add_argument(
        "--values", action="store_true", help="only print distinct values of the recycling runs"
    )
    args = parser.parse_args()
    if args.values:
        from slotlab.recycle import value_records
        from slotlab.runs import open_run, run_dir

        print(
            "| density | run | layer | distinct at start | distinct at end | distinct among kept at end | rounds |"
        )
        print("|---|---|---|---|---|---|---|")
        for density in args.densities:
            for label, config in configs(density, args.epochs, args.seed):
                if (
                    config.options.recycle_rate == 0
                    or not (run_dir(config, args.runs) / "result.json").is_file()
                ):
                    continue
                records = value_records(open_run(run_dir(config, args.runs)))
                for layer, rows in records.groupby("layer", sort=False):
                    first, last = rows.iloc[0], rows.iloc[-1]
                    rounds = int((rows["event"] == "recycle").sum())
                    print(
                        f"| {density} | {label} | {layer} | {first.distinct} | {last.distinct} | "
                        f"{last.distinct_kept} | {rounds} |"
                    )
        return
    if args.controls:
        print("| density | found network | test % | random mask | shuffled weights | signs only |")
        print("|---|---|---|---|---|---|")
        for density in args.densities:
            for r in control_rows(density, args.epochs, args.seed, args.runs):
                cells = " | ".join(
                    f"{100 * r[k]:.2f}" for k in ("found", "random mask", "shuffled weights", "signs only")
                )
                print(f"| {density} | {r['method']} | {cells} |", flush=True)
        return
    rows = []
    for density in args.densities:
        for label, config in configs(density, args.epochs, args.seed):
            if args.only and label not in args.only:
                continue
            result = load_or_run(config, root=args.runs, progress=False)
            rows.append(
                {
                    "density": density,
                    "method": label,
                    "test": result.metrics["test_accuracy"],
                    "val": result.metrics["val_accuracy"],
                    "epoch": result.metrics["best_epoch"],
                    "s/epoch": result.metrics["train_seconds"] / config.epochs,
                    "hash": config.hash,
                }
            )
            print(rows[-1], flush=True)
        if args.no_sanity:
            continue
        chance = untrained_random_subnetwork(configs(density, args.epochs, args.seed)[0][1])
        rows.append({"density": density, "method": "random mask, untrained (sanity)", "test": chance})
        print(rows[-1], flush=True)
    print(
        f"\nMNIST Lenet-300-100, {args.epochs} epochs cosine, seed {args.seed}; "
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| density | method | test % | val % | best epoch | s/epoch |")
    print("|---|---|---|---|---|---|")
    for r in pd.DataFrame(rows).itertuples():
        val = "-" if pd.isna(r.val) else f"{100 * r.val:.2f}"
        epoch = "-" if pd.isna(r.epoch) else int(r.epoch)
        secs = "-" if pd.isna(r._6) else f"{r._6:.1f}"
        print(f"| {r.density} | {r.method} | {100 * r.test:.2f} | {val} | {epoch} | {secs} |")


if __name__ == "__main__":
    main()
