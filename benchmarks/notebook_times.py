"""How long each notebook takes to run top to bottom at a scale, from an empty runs folder.

Each notebook runs in a fresh kernel (``jupyter execute``, as a reader's "Run all"), with ``SLOTLAB_SCALE`` set and
``SLOTLAB_RUNS`` and ``SLOTLAB_FIGURES`` in a new temporary folder, so every run in it trains (``--runs`` starts
from a copy of a filled runs folder instead, to time a prepared class). Reported per notebook: the wall-clock
time, the CPU time of the kernel, its client and the sweep workers (user + system), and the machine's load average
(1 minute) at its start and end. CPU time is what a quiet machine would need; on a shared machine the wall time
also counts the other jobs.

    python benchmarks/notebook_times.py --scale laptop notebooks/00_quickstart.ipynb
    python benchmarks/notebook_times.py --scale laptop               # every notebook
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(
    path: Path, scale: str, threads: int, runs: Path | None = None, keep: Path | None = None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one top-to-bottom run of ``path`` in a fresh kernel; ``runs``: start from a
    copy of that runs folder; ``keep``: write the executed notebook there, with its runs and figures beside it
    (``<notebook>.runs/``, ``<notebook>.figures/``)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if keep is None else keep
        runs_dir, figures_dir = work / f"{path.stem}.runs", work / f"{path.stem}.figures"
        for folder in (runs_dir, figures_dir):
            if folder.exists():
                shutil.rmtree(folder)  # from an empty runs folder, every time
        if runs is not None:
            shutil.copytree(runs, runs_dir)
        out = work / path.name
        env = {
            **os.environ,
            "SLOTLAB_SCALE": scale,
            "SLOTLAB_RUNS": str(runs_dir),
            "SLOTLAB_FIGURES": str(figures_dir),
            **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
            "CI": "1",  # no progress bars in the captured output
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "execute", path.name, f"--output={out}"],
            cwd=path.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        cpu = _tree_cpu_until_done(process)
        wall = time.perf_counter() - start
        if process.returncode != 0:
            error = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
            raise SystemExit(f"{path.name} failed at scale {scale}:\n{error}")
    return wall, cpu


def _tree_cpu_until_done(process: subprocess.Popen) -> float:
    """CPU seconds (user + system) of ``process`` and all its descendants (the kernel, sweep workers), sampled
    every half second until it exits: the kernel is not always reaped by its parent, so ``getrusage`` of the
    children misses it."""
    root = psutil.Process(process.pid)
    seen: dict[int, float] = {}
    while process.poll() is None:
        try:
            for proc in [root, *root.children(recursive=True)]:
                try:
                    times = proc.cpu_times()
                    seen[proc.pid] = times.user + times.system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.5)
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--scale", default="smoke", choices=("smoke", "laptop", "paper"))
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS of the kernel (0: unset, as a reader's Jupyter)",
    )
    parser.add_argument("--runs", type=Path, help="start each notebook from a copy of this runs folder")
    parser.add_argument(
        "--keep", type=Path, help="write the executed notebooks, their runs and figures into this folder"
    )
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    start_load = os.getloadavg()[0]
    print("| notebook | scale | wall s | CPU s | load (start -> end) |\n|---|---|---|---|---|", flush=True)
    total_wall = total_cpu = 0.0
    for path in paths:
        load = os.getloadavg()[0]
        wall, cpu = run_notebook(path.resolve(), args.scale, args.threads, args.runs, args.keep)
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        print(
            f"| {path.stem} | {args.scale} | {wall:.0f} | {cpu:.0f} | {load:.1f} -> {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
    if len(paths) > 1:
        print(f"| all | {args.scale} | {total_wall:.0f} | {total_cpu:.0f} | |")
    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads or 'default'} kernel thread(s); "
        f"load average {start_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        + ("" if args.runs is None else f"; runs folder copied from {args.runs}")
    )


if __name__ == "__main__":
    main()
