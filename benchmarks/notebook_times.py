"""How long each notebook takes to run top to bottom under a profile, from an empty runs folder.

Each notebook runs in a fresh kernel (``jupyter execute``, as a reader's "Run all"), with ``SLOTLAB_RUNS`` and
``SLOTLAB_FIGURES`` in a new temporary folder, so every run in it trains. Reported: the wall-clock time and the CPU
time of the kernel and its client (user + system), which is what a quiet machine would need; on a shared machine the
wall time also counts the other jobs.

    python benchmarks/notebook_times.py --profile laptop notebooks/00_quickstart.ipynb
    python benchmarks/notebook_times.py --profile smoke               # every notebook
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(path: Path, profile: str, threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one top-to-bottom run of ``path`` in a fresh kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SLOTLAB_PROFILE": profile,
            "SLOTLAB_RUNS": str(Path(tmp) / "runs"),
            "SLOTLAB_FIGURES": str(Path(tmp) / "figures"),
            "OMP_NUM_THREADS": str(threads),
            "CI": "1",  # no progress bars in the captured output
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jupyter", "execute", path.name, f"--output={Path(tmp) / 'out.ipynb'}"],
            cwd=path.parent,
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every numbered notebook")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "laptop", "paper"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    load = os.getloadavg()[0]
    print("| notebook | profile | wall s | CPU s |\n|---|---|---|---|", flush=True)
    total_wall = total_cpu = 0.0
    for path in paths:
        wall, cpu = run_notebook(path.resolve(), args.profile, args.threads)
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        print(f"| {path.stem} | {args.profile} | {wall:.0f} | {cpu:.0f} |", flush=True)
    if len(paths) > 1:
        print(f"| all | {args.profile} | {total_wall:.0f} | {total_cpu:.0f} |")
    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s); "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
