"""Speed of the mask methods, as ratios measured in one run.

1. Training step (forward, backward, fused SGD with momentum; batch 128) of Edge-Popup and Biprop (density 0.5,
   layer scope, and Edge-Popup with a global scope) over the dense step of the same model, for Conv-4 (Edge-Popup
   form, 3x32x32) and Lenet-300-100. Methods alternate in short blocks so that all see the same machine state;
   medians over blocks.
2. The mask op on each Conv-4 layer's score tensor: ``top_mask`` (one ``kthvalue``, exact count, ties to the
   lowest index) against the full-sort rule of the released code (``sort`` of |s|, keep the top ``kept``) and
   against ``topk``; summed over the layers, medians over repeats.

    python benchmarks/mask_speed.py
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import alternating_medians

from slotlab.config import RunConfig
from slotlab.layers.edge_popup import kept_count, top_mask
from slotlab.optim import make_optimizer
from slotlab.runs import initial_network
from slotlab.train import trainable_parameters

SHAPES = {"conv4": (3, 32, 32), "lenet300": (1, 28, 28)}
METHODS = {
    "dense": dict(method="dense"),
    "edge-popup": dict(method="edge-popup"),
    "biprop": dict(method="biprop"),
    "edge-popup global": dict(method="edge-popup", scope="global"),
}


def make_step(model: str, fields: dict):
    config = RunConfig(model=model, dataset="synthetic-cifar" if model == "conv4" else "synthetic", **fields)
    net = initial_network(config, SHAPES[model], 10)
    opt = make_optimizer(config.replace(lr=0.01), trainable_parameters(net))
    x, y = torch.randn(128, *SHAPES[model]), torch.randint(0, 10, (128,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return net, step


def time_steps(model: str, blocks: int, per_block: int) -> dict[str, float]:
    steps = {name: make_step(model, fields)[1] for name, fields in METHODS.items()}
    return alternating_medians(steps, blocks, per_block)


def sort_mask(magnitude: torch.Tensor, kept: int) -> torch.Tensor:
    """The released ``GetSubnet``: a full sort, zero the lowest n - kept."""
    flat = magnitude.reshape(-1)
    order = flat.sort().indices
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[order[: flat.numel() - kept]] = False
    return mask.view(magnitude.shape)


def topk_mask(magnitude: torch.Tensor, kept: int) -> torch.Tensor:
    flat = magnitude.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(kept, sorted=False).indices] = True
    return mask.view(magnitude.shape)


def time_mask_ops(repeats: int) -> dict[str, float]:
    net, _ = make_step("conv4", METHODS["edge-popup"])
    scores = [p.detach().abs() for p in trainable_parameters(net)]
    ops = {"kthvalue (top_mask)": top_mask, "topk": topk_mask, "full sort": sort_mask}

    def all_layers(op) -> Callable[[], None]:
        return lambda: [op(s, kept_count(0.5, s.numel())) for s in scores]

    return alternating_medians({name: all_layers(op) for name, op in ops.items()}, repeats, 1, warmup=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--per-block", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128\n")
    print("| model | method | step ms | step / dense |")
    print("|---|---|---|---|")
    for model in SHAPES:
        times = time_steps(model, args.blocks, args.per_block if model == "conv4" else 10 * args.per_block)
        for name, seconds in times.items():
            print(f"| {model} | {name} | {1000 * seconds:.1f} | {seconds / times['dense']:.2f} |", flush=True)
    ops = time_mask_ops(args.repeats)
    print("\nmask op over Conv-4's 7 score tensors (2.4 M scores), density 0.5\n")
    print("| op | ms | full sort / op |")
    print("|---|---|---|")
    for name, seconds in ops.items():
        print(f"| {name} | {1000 * seconds:.1f} | {ops['full sort'] / seconds:.2f} |")


if __name__ == "__main__":
    main()
