"""Speed of the mask methods, as ratios measured in one run, before and after the warm-threshold selection.

1. Training step (forward, backward, the method's optimiser: SGD with momentum, lr 0.1 and weight decay 1e-4 on
   the scores for the masks, as their recipes; batch 128, a pool of random batches) of Edge-Popup and Biprop
   (density 0.5, layer scope) and Edge-Popup with a global scope, over the dense step of the same model, for
   Conv-4 (Edge-Popup form, 3x32x32) and Lenet-300-100. Each masked method runs twice: "after" is the library as
   it is; "before" is the same network with the selection and forward of the earlier code, copied below
   (``legacy_*``: one ``kthvalue`` over every layer's |scores| each forward, the eager masked weight and the
   eager straight-through backward). All variants alternate in short blocks so that all see the same machine
   state; medians over blocks. The machine's load average (``os.getloadavg``) is printed before and after.
2. The mask op on Conv-4's score tensors: the cold ``top_mask`` (one ``kthvalue``), the warm selection
   (``TopKSelector``, threshold kept from a previous call on scores moved by a small random step), the full sort
   of the released code and ``topk``; summed over the layers, medians over repeats.

    python benchmarks/mask_speed.py            # both models and the mask ops
    python benchmarks/mask_speed.py --models lenet300
"""

from __future__ import annotations

import argparse
import os
import platform
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import alternating_medians

from slotlab.config import RunConfig
from slotlab.global_mask import global_scope_of
from slotlab.layers.biprop import BipropLayer
from slotlab.layers.edge_popup import MaskedLayer, TopKSelector, kept_count, top_mask
from slotlab.optim import make_optimizer
from slotlab.runs import initial_network
from slotlab.train import trainable_parameters

SHAPES = {"conv4": (3, 32, 32), "lenet300": (1, 28, 28)}
MASKED = {
    "edge-popup": dict(method="edge-popup", density=0.5),
    "biprop": dict(method="biprop", density=0.5),
    "edge-popup global": dict(method="edge-popup", density=0.5, scope="global"),
}


# --- the earlier code, kept here as the baseline -------------------------------------------------------------
def legacy_top_mask(magnitude: torch.Tensor, kept: int) -> torch.Tensor:
    """The earlier ``top_mask``: one ``kthvalue`` for the threshold, ties to the lowest flat index."""
    flat = magnitude.reshape(-1)
    n = flat.numel()
    if kept >= n:
        return torch.ones_like(magnitude, dtype=torch.bool)
    threshold = flat.kthvalue(n - kept + 1).values
    mask = flat >= threshold
    surplus = int(torch.count_nonzero(mask)) - kept
    if surplus > 0:
        tied = flat == threshold
        mask &= ~(tied & (tied.cumsum(0) > int(torch.count_nonzero(tied)) - surplus))
    return mask.view(magnitude.shape)


class LegacyStraightThrough(torch.autograd.Function):
    """The earlier ``_StraightThroughMask``: eager masked (or alpha * sign) weight, eager backward."""

    @staticmethod
    def forward(ctx, scores, weight, mask, alpha):
        ctx.save_for_backward(scores, weight)
        if alpha is None:
            return weight * mask
        return torch.where(mask, torch.where(weight >= 0, alpha, -alpha), 0.0)

    @staticmethod
    def backward(ctx, grad_weight):
        scores, weight = ctx.saved_tensors
        return grad_weight.to(scores.dtype) * weight * scores.sign(), None, None, None


def legacy_effective_weight(layer: MaskedLayer) -> torch.Tensor:
    if layer.global_scope is not None:
        mask = layer._legacy_masks[layer]  # computed once per forward by the hook below
    else:
        mask = legacy_top_mask(layer.scores.detach().abs(), layer.kept)
    alpha = None
    if isinstance(layer, BipropLayer):
        alpha = (layer.weight.abs() * mask).sum() / mask.sum().clamp_min(1)
    return LegacyStraightThrough.apply(layer.scores, layer.weight, mask, alpha)


def use_legacy(net: torch.nn.Module) -> None:
    """Make every masked layer of ``net`` run the earlier selection and forward."""
    layers = [m for m in net.modules() if isinstance(m, MaskedLayer)]
    masks: dict[MaskedLayer, torch.Tensor] = {}
    for layer in layers:
        layer.effective_weight = types.MethodType(legacy_effective_weight, layer)
        layer._legacy_masks = masks
    scope = global_scope_of(net)
    if scope is not None:

        def compute(module: torch.nn.Module, args: tuple) -> None:
            with torch.no_grad():
                magnitude = torch.cat([m.scores.detach().abs().reshape(-1) for m in layers])
                flat = legacy_top_mask(magnitude, scope.kept(module.training))
                sizes = [m.scores.numel() for m in layers]
                masks.update(
                    {m: f.view(m.weight_shape) for m, f in zip(layers, flat.split(sizes), strict=True)}
                )

        net.register_forward_pre_hook(compute)


# --- the steps ----------------------------------------------------------------------------------------------
def make_step(model: str, fields: dict, legacy: bool = False) -> Callable[[], None]:
    config = RunConfig(model=model, dataset="synthetic-cifar" if model == "conv4" else "synthetic", **fields)
    net = initial_network(config, SHAPES[model], 10).train()
    if legacy:
        use_legacy(net)
    opt = make_optimizer(config, trainable_parameters(net), net)
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(128, *SHAPES[model], generator=generator),
            torch.randint(0, 10, (128,), generator=generator),
        )
        for _ in range(8)
    ]
    count = [0]

    def step() -> None:
        x, y = batches[count[0] % len(batches)]
        count[0] += 1
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def time_steps(model: str, blocks: int, per_block: int) -> dict[str, float]:
    steps = {"dense": make_step(model, dict(method="dense"))}
    for name, fields in MASKED.items():
        steps[f"{name} before"] = make_step(model, fields, legacy=True)
        steps[f"{name} after"] = make_step(model, fields)
    return alternating_medians(steps, blocks, per_block)


# --- the mask op --------------------------------------------------------------------------------------------
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
    net = initial_network(
        RunConfig(model="conv4", dataset="synthetic-cifar", **MASKED["edge-popup"]), SHAPES["conv4"], 10
    )
    scores = [p.detach().clone() for p in trainable_parameters(net)]
    kept = [kept_count(0.5, s.numel()) for s in scores]
    selectors = [TopKSelector() for _ in scores]
    generator = torch.Generator().manual_seed(1)

    def warm() -> None:  # scores move by a small random step each call, as in training
        for s, k, selector in zip(scores, kept, selectors, strict=True):
            s.add_(torch.randn(s.shape, generator=generator), alpha=1e-4 * float(s.abs().mean()))
            selector.select([s], k)

    ops = {
        "warm threshold (TopKSelector)": warm,
        "kthvalue (top_mask)": lambda: [top_mask(s.abs(), k) for s, k in zip(scores, kept, strict=True)],
        "topk": lambda: [topk_mask(s.abs(), k) for s, k in zip(scores, kept, strict=True)],
        "full sort": lambda: [sort_mask(s.abs(), k) for s, k in zip(scores, kept, strict=True)],
    }
    return alternating_medians(ops, repeats, 1, warmup=1)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--per-block", type=int, default=2, help="steps per block on Conv-4 (15x on Lenet)")
    parser.add_argument("--repeats", type=int, default=9, help="repeats of the mask-op timing (0: skip it)")
    args = parser.parse_args()
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128")
    print(f"load average (1, 5, 15 min) at the start: {load()}\n")
    print("| model | method | step ms | step / dense |")
    print("|---|---|---|---|")
    for model in args.models:
        per_block = args.per_block if model == "conv4" else 15 * args.per_block
        times = time_steps(model, args.blocks, per_block)
        for name, seconds in times.items():
            print(f"| {model} | {name} | {1000 * seconds:.2f} | {seconds / times['dense']:.2f} |", flush=True)
    if args.repeats:
        ops = time_mask_ops(args.repeats)
        print("\nmask op over Conv-4's score tensors (2.4 M scores), density 0.5\n")
        print("| op | ms | full sort / op |")
        print("|---|---|---|")
        for name, seconds in ops.items():
            print(f"| {name} | {1000 * seconds:.2f} | {ops['full sort'] / seconds:.2f} |")
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
