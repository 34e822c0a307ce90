"""Every registered method survives a SIGKILL in mid-training: run again, it resumes from last.pt and ends
bit-identical (on the CPU) to a run that was never stopped, in its history, metrics and checkpoints.

Each run to be killed trains in its own process, which SIGKILLs itself at a fixed optimiser step in the middle
of the second epoch (after last.pt of epoch 1, before the end): no ``finally``, no lock release, no flush, as
when a machine is taken away. The variants place the periodic edits (recycling and IteRand by step and by epoch,
LaPerm syncs, sampled selection, the global scope's annealed density) so that the epoch-1 checkpoint falls
between two edits.

Speed (two shared CPU cores): a fresh interpreter spends ~7 s importing torch and dynamo, more than the training
itself, so one helper process pays that once and forks a pristine copy of itself for every killed run (it runs
no torch op before forking). It works through the runs in the background while this process trains the
uninterrupted references, and writes how each ended to a report file the test waits for.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from slotlab.config import RunConfig
from slotlab.methods import METHODS
from slotlab.runs import RunResult, load_or_run, open_run

STEPS_PER_EPOCH = 4  # train_size 128 / batch_size 32
KILL_AT_STEP = STEPS_PER_EPOCH + 3  # the second epoch's third step: last.pt holds epoch 1 (step 4)
QUICK: dict[str, Any] = dict(
    dataset="synthetic", epochs=3, batch_size=32, train_size=128, val_size=100, weight_decay=1e-4
)

# A run that starts from another run's network (finetune) names it by hash: this slots run, trained first.
SOURCE = RunConfig(method="slots", k=4, **QUICK)
MASK_SOURCE = RunConfig(method="edge-popup", density=0.3, **QUICK)  # mask-finetune's
SOURCES = {"finetune": SOURCE, "mask-finetune": MASK_SOURCE}

# id -> fields: every method at least once; periods of 3 steps do not divide the 4 steps of an epoch.
VARIANTS: dict[str, dict[str, Any]] = {
    "slots-sampled": dict(method="slots", k=4, selection="sampled", eval_selection="sampled", lr=5.0),
    "dense": dict(method="dense", lr=0.05),
    "learned": dict(method="learned", k=4, lr=0.05),
    "finetune": dict(method="finetune", source=SOURCE.hash, lr=0.01),
    "edge-popup-global-recycle-step": dict(
        method="edge-popup",
        density=0.3,
        scope="global",
        anneal_epochs=2,
        recycle_rate=0.2,
        recycle_every=3,
        recycle_unit="step",
    ),
    "edge-popup-recycle-epoch": dict(method="edge-popup", recycle_rate=0.2, recycle_every=1),
    "biprop-recycle-iterand-step": dict(
        method="biprop", recycle_rate=0.1, iterand_rate=0.2, recycle_every=3, recycle_unit="step"
    ),
    "biprop-iterand-epoch": dict(method="biprop", iterand_rate=0.3, recycle_every=1),
    "random-mask": dict(method="random-mask", density=0.5, lr=0.05),
    "laperm-sync-3": dict(method="laperm", sync_period=3, init_density="0.5"),
    "laperm-shared-value": dict(method="laperm", sync_period=5, shared_value=0.05, init_density="0.7"),
    "random-slots": dict(method="random-slots", k=4),
    "random-permutation": dict(method="random-permutation", init_density="0.5"),
    "supermask": dict(method="supermask"),
    "mask-finetune": dict(method="mask-finetune", mask_source=MASK_SOURCE.hash),
}

# The helper: imports once, then per job forks a child that trains as a user would (load_or_run) with a callback
# that SIGKILLs the child at the job's step; the helper reports how the child ended.
KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, traceback
    import torch._dynamo  # imported by the optimisers on first use: once here, not in every child
    from slotlab.callback import Callback
    from slotlab.checkpoint import atomic_write_json
    from slotlab.config import RunConfig
    from slotlab.runs import load_or_run

    class Kill(Callback):
        def __init__(self, at_step):
            self.at_step = at_step

        def on_step_end(self, trainer):
            if trainer.step == self.at_step:
                os.kill(os.getpid(), signal.SIGKILL)

    for job in json.loads(open(sys.argv[1]).read()):
        pid = os.fork()
        if pid == 0:
            try:
                if job["source"]:  # the run it starts from, finished, in the same runs root
                    load_or_run(RunConfig(**job["source"]), root=job["root"], device="cpu")
                config = RunConfig(**job["fields"])
                load_or_run(config, root=job["root"], device="cpu", callbacks=[Kill(job["at_step"])])
                print(f"{job['report']}: the run ended without being killed", file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)  # -N: ended by signal N
        atomic_write_json({"signal": -code if code < 0 else None, "exit": code}, job["report"])
    """
)


def test_every_registered_method_is_covered() -> None:
    assert {fields["method"] for fields in VARIANTS.values()} == set(METHODS)


class Killer:
    """The helper process and where its children's runs and reports go."""

    def __init__(self, base: Path, names: list[str]) -> None:
        self.base = base
        self.log = base / "killer.log"
        jobs = [
            {
                "fields": RunConfig(**{**QUICK, **VARIANTS[name]}).changed_fields(),
                "source": SOURCES[VARIANTS[name]["method"]].changed_fields()
                if VARIANTS[name]["method"] in SOURCES
                else None,
                "root": str(self.root(name)),
                "at_step": KILL_AT_STEP,
                "report": str(self.report(name)),
            }
            for name in names
        ]
        (base / "jobs.json").write_text(json.dumps(jobs))
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", KILL_SCRIPT, str(base / "jobs.json")],
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: close() ends it and its children together
            )

    def root(self, name: str) -> Path:
        return self.base / "cut" / name

    def report(self, name: str) -> Path:
        return self.base / f"{name}.killed.json"

    def wait(self, name: str, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.report(name).is_file():
            if self.process.poll() is not None and not self.report(name).is_file():
                pytest.fail(f"the helper ended ({self.process.returncode}) before {name}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no report of {name} after {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.05)
        return json.loads(self.report(name).read_text())

    def output(self) -> str:
        return self.log.read_text()[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:  # a test failed before its turn: end the helper and its child
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def killer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killer]:
    """Starts the helper on the selected variants' runs, one after another in test order, as the module starts;
    the tests train their references meanwhile."""
    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_a_killed_run_resumes_bit_identical"
    ]
    helper = Killer(tmp_path_factory.mktemp("resume-all"), names)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture(scope="module")
def whole_root(killer: Killer) -> Path:
    root = killer.base / "whole"
    for source in SOURCES.values():
        load_or_run(source, root=root, device="cpu")
    return root


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ: tensors bit for bit (dtype and shape too), containers item by item, NaN equal
    to NaN; wall-clock ``seconds`` entries are skipped."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and (a.dtype, a.shape) == (b.dtype, b.shape)
            and torch.equal(a, b)
        )
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a if k != "seconds" for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length {len(a)} != {len(b)}"]
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]


def checkpoint(run: RunResult, which: str) -> dict[str, Any]:
    return torch.load(run.path / f"{which}.pt", weights_only=True)


def without_seconds(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds").reset_index(drop=True)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_killed_run_resumes_bit_identical(name: str, killer: Killer, whole_root: Path) -> None:
    config = RunConfig(**{**QUICK, **VARIANTS[name]})
    whole = load_or_run(config, root=whole_root, device="cpu")  # while the helper kills the runs
    report = killer.wait(name)
    assert report["signal"] == 9, f"{name} was to SIGKILL itself at step {KILL_AT_STEP}:\n{killer.output()}"

    folder = killer.root(name) / config.name
    assert not (folder / "result.json").exists()
    assert (folder / "lock").exists()  # left behind by the dead process: the resume takes it over
    stopped = torch.load(folder / "last.pt", weights_only=True)
    assert (stopped["epoch"], stopped["step"]) == (1, STEPS_PER_EPOCH)

    resumed = load_or_run(config, root=killer.root(name), device="cpu")
    assert not (folder / "lock").exists()
    assert resumed.metrics["epochs"] == whole.metrics["epochs"] == config.epochs

    pd.testing.assert_frame_equal(without_seconds(resumed.history), without_seconds(whole.history))
    stored, stored_whole = open_run(folder), open_run(whole.path)
    pd.testing.assert_frame_equal(without_seconds(stored.history), without_seconds(stored_whole.history))
    assert not differences(
        {**resumed.metrics, "train_seconds": None}, {**whole.metrics, "train_seconds": None}, "metrics"
    )
    assert not differences(
        {**stored.metrics, "train_seconds": None},
        {**stored_whole.metrics, "train_seconds": None},
        "result.json",
    )
    for which in ("init", "best", "last"):  # last.pt: model, optimiser, schedule, counters, callback states
        found = differences(checkpoint(resumed, which), checkpoint(whole, which), which)
        assert not found, f"{which}.pt differs from the uninterrupted run's at {found[:8]}"
