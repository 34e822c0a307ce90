"""MPT-1/1 layer order: slotlab's conv -> BN -> sign -> max-pool against the released Biprop code's
conv -> max-pool -> BN -> sign (``Conv*_BinAct`` in chrundle/biprop ``models/frankle.py``).

sign(BN(x)) is monotone in x for a non-affine BatchNorm, so max-pool commutes with it and only the BatchNorm
statistics differ (pre-pool against post-pool activations). This measures whether that changes accuracy: Biprop
MPT-1/1 on Conv-2 (MNIST, a training subset), the released order made by swapping each BinaryActivation with the
MaxPool2d that follows it, same seeds, same recipe (Adam lr 0.1, cosine). Prints one markdown row per seed.

    python benchmarks/binact_order.py --train-size 3000 --val-size 1000 --epochs 2 --seeds 2
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from slotlab.config import scaled_config
from slotlab.data import make_splits
from slotlab.layers.activations import BinaryActivation
from slotlab.runs import initial_network, make_trainer


def released_order(model: nn.Module) -> int:
    """Swap every (BinaryActivation, MaxPool2d) pair of a Sequential into (MaxPool2d, BinaryActivation)."""
    swapped = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module)
        for i in range(len(children) - 1):
            if isinstance(children[i], BinaryActivation) and isinstance(children[i + 1], nn.MaxPool2d):
                module[i], module[i + 1] = children[i + 1], children[i]
                children[i], children[i + 1] = children[i + 1], children[i]
                swapped += 1
    return swapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--model", default="conv2")
    parser.add_argument("--density", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| seed | order | val % | test % |")
    print("|---|---|---|---|")
    for seed in range(args.seeds):
        config = scaled_config(
            "laptop",
            "biprop",
            model=args.model,
            dataset="mnist",
            binary_activations=True,
            density=args.density,
            train_size=args.train_size,
            val_size=args.val_size,
            epochs=args.epochs,
            weight_seed=seed,
            score_seed=seed,
            data_seed=seed,
        )
        splits = make_splits(config.dataset, config.val_size, config.split_seed, config.train_size)
        shape, classes = splits.info.input_shape, splits.info.num_classes
        for order in ("slotlab", "released"):
            model = initial_network(config, shape, classes)
            if order == "released" and released_order(model) == 0:
                raise SystemExit(f"{args.model} has no BinaryActivation before a max-pool")
            trainer = make_trainer(config, model, splits, torch.device("cpu"), (), progress=False)
            metrics = trainer.fit().metrics
            print(
                f"| {seed} | {order} | {100 * metrics['val_accuracy']:.2f} | {100 * metrics['test_accuracy']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
