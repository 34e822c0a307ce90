"""Training compute of every runnable experiment at paper scale, counted in FLOPs (no GPU needed).

    python benchmarks/paper_compute.py                 # a markdown table on stdout
    python benchmarks/paper_compute.py --tflops 40     # plus hours at an effective 40 TFLOP/s

Each run's training FLOPs are ``slotlab.cost.step_flops`` (one step of its initial network at its batch size,
FlopCounterMode's matmuls and convolutions plus the method's own elementwise work) times its steps per epoch
times its epochs; the table leaves evaluation passes out (``run_flops_with_evaluation``, which the reproductions
report uses to project CPU hours, adds them). A finetune counts as dense training of its architecture. An
experiment's total is what ``reproduce NAME --scale paper`` trains when nothing is cached (runs it shares with
another experiment count in both; the last row counts each distinct run once).

FLOPs fix the work, not the time: hours need the rate a GPU reaches on these (small) networks, which
``benchmarks/gpu_check.sh`` measures; ``python -m slotlab reproduce --list --throughput throughput.csv`` turns that
into hours per experiment. ``--tflops`` here is for a rate the reader already knows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from slotlab.config import SEED_FIELDS, RunConfig
from slotlab.cost import StepFlops, step_flops, steps_per_epoch
from slotlab.data import dataset_info
from slotlab.experiments import EXPERIMENTS
from slotlab.scales import get_scale


def counted_config(config: RunConfig) -> RunConfig:
    """``config``, or for a finetune (it starts from another run) dense training of the same architecture."""
    if not config.method_rule.source_methods:
        return config
    return RunConfig(
        method="dense",
        model=config.model,
        dataset=config.dataset,
        width=config.width,
        batch_size=config.batch_size,
        epochs=config.epochs,
        train_size=config.train_size,
        val_size=config.val_size,
        optimizer=config.optimizer,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


COUNT_BATCH = 4  # the network's FLOPs are linear in the batch: count at this one, scale to the run's
NOT_IN_A_STEP = (*SEED_FIELDS, "epochs", "batch_size", "lr", "schedule", "milestones", "density", "init")


def step_key(config: RunConfig) -> str:
    """What a step's FLOPs depend on: not the seeds, the run's length, the values or the fraction kept."""
    fields = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_A_STEP}
    return json.dumps(fields, sort_keys=True, default=str)


SMALL_STEPS: dict[str, StepFlops] = {}  # step_key -> the step counted at COUNT_BATCH


def small_step(config: RunConfig) -> StepFlops:
    """``step_flops`` of ``config`` at ``COUNT_BATCH``, counted once per step_key."""
    key = step_key(config)
    if key not in SMALL_STEPS:
        SMALL_STEPS[key] = step_flops(RunConfig(**{**config.to_dict(), "batch_size": COUNT_BATCH}))
    return SMALL_STEPS[key]


def run_step_flops(config: RunConfig) -> int:
    """``step_flops`` of ``config`` at its batch size, counted at ``COUNT_BATCH`` and scaled (the method's and the
    update's work do not depend on the batch)."""
    step = small_step(config)
    return (step.forward + step.backward) * config.batch_size // COUNT_BATCH + step.method + step.update


TEST_IMAGES = 10_000  # the test sets of MNIST, Fashion-MNIST and CIFAR-10


def run_flops_with_evaluation(config: RunConfig) -> int:
    """A run's training FLOPs plus its evaluations' forward passes: the validation split after every epoch and
    the test set once (what a CPU run spends its time on besides training)."""
    counted = counted_config(config)
    forward_per_image = small_step(counted).forward / COUNT_BATCH
    info = dataset_info(config.dataset)
    val = info.val_size if config.val_size < 0 else config.val_size
    evaluated = val * counted.epochs + TEST_IMAGES
    train = run_step_flops(counted) * steps_per_epoch(counted) * counted.epochs
    return int(train + forward_per_image * evaluated)


def pflop(flops: int) -> str:
    """PFLOP to three significant digits, without exponents: 1,430 / 69.9 / 0.242."""
    value = flops / 1e15
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=0.0, help="effective TFLOP/s for an hours column")
    args = parser.parse_args()
    scale = get_scale("paper")
    distinct: dict[str, int] = {}  # run name -> its training FLOPs
    rows = []
    start = time.perf_counter()
    for experiment in EXPERIMENTS.values():
        if not experiment.runnable:
            continue
        seeds = list(range(experiment.seeds.get(scale.name, 3)))
        total = 0
        planned = experiment.configs(scale, seeds)
        for _, _, config in planned:
            counted = counted_config(config)
            flops = run_step_flops(counted) * steps_per_epoch(counted) * counted.epochs
            distinct[config.name] = flops
            total += flops
        rows.append((experiment.name, len(planned), total))
        print(
            f"{experiment.name}: {len(SMALL_STEPS)} steps counted, {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    header = "| experiment | runs | training PFLOP |" + (" hours |" if args.tflops else "")
    print(header)
    print("|---|---:|---:|" + ("---:|" if args.tflops else ""))

    def line(name: str, runs: int, flops: int) -> str:
        hours = f" {flops / (args.tflops * 1e12) / 3600:.1f} |" if args.tflops else ""
        return f"| {name} | {runs} | {pflop(flops)} |{hours}"

    for row in rows:
        print(line(*row))
    print(line("all, each distinct run once", len(distinct), sum(distinct.values())))
    print(f"\n{len(SMALL_STEPS)} distinct steps counted in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
