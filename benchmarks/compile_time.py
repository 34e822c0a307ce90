"""First-call cost of the compiled CPU kernels (``slotlab.compiled``), in fresh processes, cold and warm cache.

Each measurement is a new Python process that builds Lenet-300-100 for one method and times its first training
step (batch 128) against the median of the next ten: the difference is what compiling (or loading from the
cache) the method's kernels costs. "cold": an empty inductor cache folder; "warm": the same folder again, as
every later process finds it (slotlab keeps it under ``~/.cache/slotlab/inductor`` unless
``TORCHINDUCTOR_CACHE_DIR`` is set). Methods: slots (greedy selection and the fused SlotSGD update),
edge-popup and biprop (the mask kernels: counting pass, masked or ternary weight, straight-through backward).

    python benchmarks/compile_time.py              # cold then warm, twice each, in a scratch cache folder
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, statistics, sys, time
start = time.perf_counter()
import torch
import torch.nn.functional as F
from slotlab.config import RunConfig
from slotlab.optim import make_optimizer
from slotlab.runs import initial_network
from slotlab.train import trainable_parameters
imported = time.perf_counter() - start
config = RunConfig(model="lenet300", dataset="synthetic", **json.loads(sys.argv[1]))
net = initial_network(config, (1, 28, 28), 10).train()
opt = make_optimizer(config, trainable_parameters(net), net)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    begin = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()
    return time.perf_counter() - begin
first = step()
steady = statistics.median(step() for _ in range(10))
print(json.dumps({"import": imported, "first": first, "steady": steady}))
"""

METHODS = {
    "slots": dict(method="slots", k=8),
    "edge-popup": dict(method="edge-popup", density=0.5),
    "biprop": dict(method="biprop", density=0.5),
}


def first_call(fields: dict, cache: str) -> dict[str, float]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(fields)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="cold/warm pairs per method")
    args = parser.parse_args()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| method | cache | first step s | steady step ms | first - steady s |")
    print("|---|---|---|---|---|")
    for name, fields in METHODS.items():
        rows: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                rows["cold"].append(first_call(fields, cache))
                rows["warm"].append(first_call(fields, cache))
        for kind, results in rows.items():
            first = statistics.median(r["first"] for r in results)
            steady = statistics.median(r["steady"] for r in results)
            print(
                f"| {name} | {kind} | {first:.2f} | {1000 * steady:.1f} | {first - steady:.2f} |", flush=True
            )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
