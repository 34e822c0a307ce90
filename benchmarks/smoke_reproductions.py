"""How long every runnable experiment takes at smoke scale, one seed, in one process, from an empty runs folder.

    python benchmarks/smoke_reproductions.py              # a markdown table on stdout
    python benchmarks/smoke_reproductions.py NAME ...     # only these experiments

The experiments run in registry order into one fresh runs folder, as ``reproduce NAME --scale smoke`` would one
after the other: a run two experiments share trains once, for the first (its row says how many of its runs were
read back). Reported per experiment: its runs, those already finished, and the wall and CPU seconds of this
process (smoke keeps every run in it). Each must finish: a failed run stops the table with its error.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

from slotlab.experiments import EXPERIMENTS
from slotlab.reproduce import reproduce
from slotlab.runs import run_dir
from slotlab.scales import get_scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (default: every runnable one)")
    args = parser.parse_args()
    names = args.names or [name for name, e in EXPERIMENTS.items() if e.runnable]
    scale = get_scale("smoke")
    print("| experiment | runs | read back | wall s | CPU s |")
    print("|---|---:|---:|---:|---:|")
    total_wall = total_cpu = 0.0
    with tempfile.TemporaryDirectory() as root:
        for name in names:
            planned = EXPERIMENTS[name].configs(scale, [0])
            cached = sum((run_dir(config, root) / "result.json").is_file() for _, _, config in planned)
            wall, cpu = time.perf_counter(), time.process_time()
            result = reproduce(name, scale="smoke", seeds=1, root=root, out=None, workers=1, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if result.failed:
                print(f"{name}: {result.failed[0]}", file=sys.stderr)
                return 1
            total_wall, total_cpu = total_wall + wall, total_cpu + cpu
            print(f"| {name} | {len(planned)} | {cached} | {wall:.1f} | {cpu:.1f} |", flush=True)
    print(f"| all | | | {total_wall:.0f} | {total_cpu:.0f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load:.1f} at the end)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
