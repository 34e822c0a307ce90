"""Where the weight-agnostic F2 network stands under LaPerm, and which recipe details move it.

F2 (Qiu & Suda 2020, §5.5; the authors' ihsuy/Train-by-Reconnect ``notebooks/F1_and_F2.ipynb``, "the reference"
below): 784-128-64-10 without biases, every weight 0.03, then each entry kept with probability 1/15, 1/7, 1/3
(layer by layer, as the reference's ``agnosticize``), Adam lr 1e-3 inside LaPerm with k = 250, batch 128, 25
epochs, L2 1e-4 in the loss of the two hidden layers (weight decay 2e-4 in PyTorch's convention),
lr 1e-3 * 0.95^epoch. This is the reference notebook's loop written plainly around
``slotlab.laperm.LaPerm``, so that one detail at a time can be changed:

* ``inputs``: ``unit`` = pixels in [0, 1] (the reference), ``standard`` = MNIST mean/std normalised (slotlab's);
* ``k``: the sync period; ``l2``: the weight decay of the hidden layers; ``reset``: clear Adam's state at every
  sync (the reference keeps it).

The test set is evaluated as the reference does it: right after every sync at a step that is a multiple of 250
(for k = 250 after every sync; lcm(k, 250) in general), so every evaluated network is synced. ``best`` is the
maximum over these evaluations on the test set (the reference's optimistic protocol, labelled as such), ``final``
the last one. ``moved`` is the fraction of the first layer's connections (non-zero positions) that changed place
over the last five evaluations (at least 1 250 steps, about 2.7 epochs).

    python benchmarks/laperm_f2_variants.py                 # every variant, seed 0
    python benchmarks/laperm_f2_variants.py --seeds 0 1 2 3 4 5 6 7 8 9 --only reference
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from slotlab.data import dataset_info, load_split
from slotlab.laperm import LaPerm


@dataclass(frozen=True)
class Variant:
    inputs: str = "unit"  # unit: [0, 1] pixels (reference); standard: mean/std normalised
    sync_period: int = 250
    l2: float = 2e-4
    reset: bool = False  # clear the inner Adam state at every sync


VARIANTS = {
    "reference": Variant(),
    "standardised inputs": Variant(inputs="standard"),
    "k = 20": Variant(sync_period=20),
    "k = 1000": Variant(sync_period=1000),
    "no L2": Variant(l2=0.0),
    "L2 x10": Variant(l2=2e-3),
    "Adam state reset at syncs": Variant(reset=True),
}
KEEP = ((1, 15), (1, 7), (1, 3))  # (kept, out of) per layer, as the reference's prune_ratio
VALUE = 0.03
EPOCHS, BATCH = 25, 128


def f2_agnostic(seed: int) -> nn.Sequential:
    """F2 with every weight VALUE, each entry kept with probability kept / out_of (the reference's rule)."""
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 128, bias=False),
        nn.ReLU(),
        nn.Linear(128, 64, bias=False),
        nn.ReLU(),
        nn.Linear(64, 10, bias=False),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer, (kept, out_of) in zip(model[1::2], KEEP, strict=True):
            draw = torch.randint(1, out_of + 1, layer.weight.shape, generator=generator)
            layer.weight.copy_(VALUE * (draw <= kept).float())
    return model


def images(train: bool, inputs: str) -> tuple[torch.Tensor, torch.Tensor]:
    split = load_split("mnist", train=train, download=False)
    x = split.images.float().div(255)  # (N, 1, 28, 28)
    if inputs == "standard":
        info = dataset_info("mnist")
        x = (x - info.mean[0]) / info.std[0]
    return x, split.labels


def train(variant: Variant, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    x_train, y_train = images(True, variant.inputs)
    x_test, y_test = images(False, variant.inputs)
    model = f2_agnostic(seed)
    first, hidden, last = model[1].weight, model[3].weight, model[5].weight
    inner = torch.optim.Adam(
        [{"params": [first, hidden], "weight_decay": variant.l2}, {"params": [last], "weight_decay": 0.0}],
        lr=1e-3,
    )
    optimizer = LaPerm(model, inner, sync_period=variant.sync_period)
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(y_train) / BATCH)
    evaluate_every = math.lcm(variant.sync_period, 250)
    accuracies: list[float] = []
    masks: list[torch.Tensor] = []  # the first layer's non-zero positions at each evaluation
    step, start = 0, time.perf_counter()
    for epoch in range(EPOCHS):
        for group in inner.param_groups:
            group["lr"] = 1e-3 * 0.95**epoch
        order = torch.randperm(len(y_train), generator=generator)
        for i in range(steps):
            batch = order[i * BATCH : (i + 1) * BATCH]
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # syncs itself every sync_period steps
            step += 1
            if variant.reset and optimizer.synced_at == optimizer.steps:
                inner.state.clear()
            if step % evaluate_every == 0:
                with torch.no_grad():
                    accuracies.append((model(x_test).argmax(1) == y_test).float().mean().item())
                masks.append(first.detach() != 0)
    earlier = masks[max(0, len(masks) - 6)]
    moved = (masks[-1] & ~earlier).sum().item() / earlier.sum().item()
    return {
        "final": accuracies[-1],
        "best": max(accuracies),
        "moved": moved,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", help=f"variants to run, from: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    print(
        f"MNIST F2 weight-agnostic, LaPerm; {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(
        "| variant | seed | test % (final) | test % (best sync, on test) | moved (last 5 evaluations) | s |"
    )
    print("|---|---|---|---|---|---|")
    summaries = []
    for name in names:
        best = []
        for seed in args.seeds:
            r = train(VARIANTS[name], seed)
            best.append(100 * r["best"])
            print(
                f"| {name} | {seed} | {100 * r['final']:.2f} | {100 * r['best']:.2f} | {r['moved']:.3f} "
                f"| {r['seconds']:.0f} |",
                flush=True,
            )
        if len(best) > 1:
            mean, std = statistics.mean(best), statistics.stdev(best)
            summaries.append(
                f"{name}: best sync {mean:.2f} ± {std:.2f} over {len(best)} seeds, max {max(best):.2f}"
            )
    print("\n" + "\n".join(summaries))


if __name__ == "__main__":
    main()
