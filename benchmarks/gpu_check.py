"""The GPU check: environment, throughput of every method against dense, memory per connection, and two epochs of
the CIFAR-10 Conv-4 paper recipe; one Markdown report and a throughput table, in at most a few minutes.

    python benchmarks/gpu_check.py --out $OUT            # on a GPU machine (benchmarks/gpu_check.sh runs it)
    python benchmarks/gpu_check.py --allow-cpu --quick   # the same code path on the CPU, tiny sizes (a dry run)

Throughput: images per second of the whole training step (forward, backward, optimiser step) of each method's
network on synthetic 3x32x32 batches, timed in alternating blocks (``benchmarks/timing.py``) after a warm-up that
includes compilation, with ``torch.cuda.synchronize`` around each block; the ratio is the method's step time over
the dense step of the same model. Memory: the peak CUDA memory of three training steps, per connection (weight)
of the model. ``throughput.csv`` (method, model, batch, images/s) feeds
``python -m slotlab reproduce --list --throughput throughput.csv``, which turns it into hours per experiment.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import alternating_medians

from slotlab.config import RunConfig, scaled_config
from slotlab.optim import make_optimizer
from slotlab.runs import initial_network, load_or_run
from slotlab.train import trainable_parameters

METHODS = {
    "dense": {"method": "dense"},
    "slots K=8": {"method": "slots", "k": 8},
    "edge-popup": {"method": "edge-popup", "density": 0.5},
    "biprop": {"method": "biprop", "density": 0.5},
    "random-mask": {"method": "random-mask", "density": 0.5},
    "laperm": {"method": "laperm", "sync_period": 20},
}
# the models at two batches; the registry's other models at the batch their recipes use
MODEL_BATCHES = {
    "conv4": (128, 512),
    "resnet18": (128, 512),
    "vgg19": (128, 512),
    "lenet300": (128,),
    "conv2": (128,),
    "conv6": (128,),
    "conv8": (128,),
    "conv2-sm": (128,),
    "conv4-sm": (128,),
    "conv6-sm": (128,),
    "f2": (128,),
}
SHAPES = {
    "lenet300": ((1, 28, 28), "synthetic"),
    "f2": ((1, 28, 28), "synthetic"),
}  # every other model: CIFAR-shaped


def environment() -> dict[str, str]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda (torch)": str(torch.version.cuda),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["driver"] = smi.stdout.strip() or "?"
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = "? (no nvidia-smi)"
    else:
        info["gpu"] = "none (CPU dry run)"
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(method: dict, model: str, batch: int, device: torch.device):
    """A training step of ``method`` on ``model`` at ``batch``, as the trainer takes it (the method's optimiser)."""
    shape, dataset = SHAPES.get(model, ((3, 32, 32), "synthetic-cifar"))
    config = RunConfig(model=model, dataset=dataset, **method)
    net = initial_network(config, shape, 10).to(device)
    net.train()
    optimizer = make_optimizer(config, trainable_parameters(net), net)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        optimizer.step()

    return step, net


def connections(net: torch.nn.Module) -> int:
    """The weights of ``net``: a slot or masked layer's ``weight_shape``, else every matrix or kernel."""
    shaped = [m.weight_shape for m in net.modules() if hasattr(m, "weight_shape")]
    if shaped:
        return sum(math.prod(shape) for shape in shaped)
    return sum(p.numel() for p in net.parameters() if p.dim() > 1)


def throughput(device: torch.device, model_batches: dict, blocks: int, per_block: int) -> list[dict]:
    rows = []
    for model, batches in model_batches.items():
        for batch in batches:
            steps, peaks, conns = {}, {}, {}
            for name, method in METHODS.items():
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                step, net = make_step(method, model, batch, device)
                for _ in range(3):
                    step()
                synchronize(device)
                peaks[name] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
                conns[name] = connections(net)

                def timed(step=step) -> None:
                    step()
                    synchronize(device)

                steps[name] = timed
            seconds = alternating_medians(steps, blocks=blocks, per_block=per_block, warmup=1)
            for name in METHODS:
                rows.append(
                    {
                        "method": name,
                        "model": model,
                        "batch": batch,
                        "images/s": batch / seconds[name],
                        "ratio to dense": seconds[name] / seconds["dense"],
                        "peak MiB": peaks[name] / 2**20,
                        "bytes per connection": peaks[name] / max(conns[name], 1),
                    }
                )
            del steps
    return rows


def paper_recipe(device: torch.device, root: Path, epochs: int, quick: bool) -> list[dict]:
    """Two epochs of the CIFAR-10 Conv-4 paper recipe for Edge-Popup and slots (real CIFAR-10 needed)."""
    rows = []
    for method, choices in (("edge-popup", {"density": 0.5}), ("slots", {"k": 8})):
        config = scaled_config("paper", method, model="conv4", dataset="cifar10", augment=True, **choices)
        config = config.replace(epochs=epochs, **({"train_size": 2000, "val_size": 500} if quick else {}))
        try:
            result = load_or_run(config, root=root, device=str(device), progress=False)
        except Exception as error:  # the dataset may be missing on that machine: say so, go on
            rows.append(
                {"method": method, "epochs": epochs, "test %": "-", "s/epoch": "-", "note": str(error)[:160]}
            )
            continue
        seconds = result.metrics["train_seconds"]  # measured when trained, also when read back
        rows.append(
            {
                "method": method,
                "epochs": epochs,
                "test %": f"{100 * result.test_accuracy:.2f}",
                "s/epoch": f"{seconds / epochs:.1f}",
                "note": f"{config.epochs}-epoch schedule cut to {epochs}"
                if not quick
                else "quick: 2000 images",
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu-check", help="folder for report.md, throughput.csv, env.json")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (dry run)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: one model, one batch, few steps")
    parser.add_argument("--recipe-epochs", type=int, default=2)
    parser.add_argument("--no-recipe", action="store_true", help="skip the CIFAR-10 Conv-4 recipe epochs")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print(
            "gpu_check: no CUDA device here; run it on a GPU machine (or --allow-cpu for a dry run)",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    model_batches = {"conv4": (16,), "lenet300": (16,)} if args.quick else MODEL_BATCHES
    blocks, per_block = (2, 1) if args.quick else (5, 5)
    start = time.perf_counter()
    rows = throughput(device, model_batches, blocks, per_block)
    recipe = [] if args.no_recipe else paper_recipe(device, out / "runs", args.recipe_epochs, args.quick)
    env["seconds"] = f"{time.perf_counter() - start:.0f}"
    (out / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    with (out / "throughput.csv").open("w") as handle:
        handle.write("method,model,batch,images_per_second\n")
        for row in rows:
            handle.write(f"{row['method']},{row['model']},{row['batch']},{row['images/s']:.1f}\n")
    report = ["# GPU check", "", markdown([env]), "## Training throughput", "", markdown(rows)]
    report += ["## CIFAR-10 Conv-4, paper recipe", "", markdown(recipe)]
    (out / "report.md").write_text("\n".join(report))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
