"""The training throughput behind the Explorer's cost estimate (``slotlab.widgets.estimated_seconds``).

For each model the Explorer offers on a dataset, times optimiser steps of a slot machine (K = 8, greedy) on random
inputs of the dataset's shape and reports multiply-accumulates per second, 3 x the forward's (forward, backward of
activations and of weights) over the seconds a step takes:

    python benchmarks/explorer_estimate.py [--steps 3]

and, next to it, the rate the Explorer's probe (``slotlab.widgets.measure_macs_per_second``, one 64 -> 64 conv)
measures on the same machine: the ratio says how far the estimate is from a real step of each model. The table
goes into benchmarks/RESULTS.md ("Explorer cost estimate").
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from slotlab.config import scaled_config
from slotlab.data import dataset_info
from slotlab.runs import initial_network
from slotlab.widgets import forward_macs, measure_macs_per_second

CASES = [  # (model, dataset, batch): batches small enough for a few steps of the large models on two cores
    ("lenet300", "mnist", 128),
    ("conv4", "cifar10", 128),
    ("resnet20", "cifar10", 128),
    ("vgg19", "cifar10", 32),
    ("resnet18", "cifar10", 32),
    ("resnet50", "imagenet", 4),
]


def rate(model_name: str, dataset: str, batch: int, steps: int) -> tuple[float, float]:
    config = scaled_config("laptop", "slots", model=model_name, dataset=dataset, k=8)
    info = dataset_info(dataset)
    model = initial_network(config, info.input_shape, info.num_classes)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    images = torch.randn(batch, *info.input_shape)
    labels = torch.randint(0, info.num_classes, (batch,))
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up: allocation, first-call dispatch
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return seconds, 3 * forward_macs(config) * batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    print("| model | dataset | batch | s / step | GMAC / s | probe GMAC / s | model / probe |")
    print("|---|---|---|---|---|---|---|")
    for model_name, dataset, batch in CASES:
        probe = measure_macs_per_second()
        seconds, macs = rate(model_name, dataset, batch, args.steps)
        print(
            f"| {model_name} | {dataset} | {batch} | {seconds:.3f} | {macs / 1e9:.1f} | {probe / 1e9:.1f} | "
            f"{macs / probe:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
