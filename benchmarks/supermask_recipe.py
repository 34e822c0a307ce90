"""Zhou et al.'s supermask (NeurIPS 2019) under Edge-Popup's recipe and under its own, on the point that
``edge-popup/vs-supermask`` trains (Lenet-300-100 on MNIST, signed-constant weights, sampled masks).

Edge-Popup's recipe (the mask methods' default: SGD lr 0.1, momentum 0.9, weight decay 1e-4) against the one of
Zhou et al.'s released FC example (uber-research/deconstructing-lottery-tickets: SGD at lr 100, no weight decay),
everything else as the experiment's point at the given scale. Runs are cached in the runs folder.

    python benchmarks/supermask_recipe.py --scale laptop --seeds 1
"""

from __future__ import annotations

import argparse
import platform

import torch

from slotlab.experiments import get_experiment
from slotlab.runs import load_or_run
from slotlab.scales import get_scale

RECIPES = {
    "Edge-Popup's (lr 0.1, weight decay 1e-4)": {},
    "Zhou et al.'s (lr 100, no weight decay)": {"lr": 100.0, "weight_decay": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="laptop", choices=("smoke", "laptop", "paper"))
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    scale = get_scale(args.scale)
    point = next(
        p for p in get_experiment("edge-popup/vs-supermask").points(scale) if p.method == "supermask"
    )
    print(f"{platform.machine()}, torch {torch.__version__}, scale {scale.name}\n")
    print("| recipe | seed | test % | epochs | train s |\n|---|---|---|---|---|")
    for name, change in RECIPES.items():
        for seed in range(args.seeds):
            run = load_or_run(point.config(scale, seed).replace(**change), progress=False)
            m = run.metrics
            print(
                f"| {name} | {seed} | {100 * m['test_accuracy']:.2f} | {m['epochs']} | {m['train_seconds']:.0f} |"
            )


if __name__ == "__main__":
    main()
