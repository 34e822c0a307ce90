"""Sweeps on one machine: many runs from a grid or a list of config overrides, in parallel worker processes.

    sweep(grid={"k": [1, 2, 4, 8, 16], "seed": [0, 1, 2]}, base=RunConfig(dataset="cifar10", model="conv4"))
    python -m slotlab sweep --dataset cifar10 --model conv4 --grid k=1,2,4,8,16 seed=0,1,2

Each point is an ordinary run (``slotlab.runs.load_or_run``) in the folder named by its config hash, so

- a finished point is read back, not trained again, and a stopped sweep resumes where it was (unfinished runs
  continue from their last epoch);
- two sweeps over the same folder at once do not collide: a run being trained is claimed by its lock file, the
  other sweep waits for it (or takes over the lock of a process that died) and then reads the result;
- the summary table is built from the run folders themselves, never from a file that workers append to.

``seed`` sets all five seeds at once, as the command line's ``--seed`` does (an explicit ``weight_seed=...`` in
the same point wins). Workers are processes: one per GPU when there are several, else a bounded number sharing
the CPU cores. A failing point is reported with its error and does not stop the others.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from slotlab.config import SEED_FIELDS, RunConfig
from slotlab.errors import SlotlabError
from slotlab.locks import RunLocked
from slotlab.methods import get_method, option_specs
from slotlab.runs import load_or_run, run_dir, runs_root
from slotlab.scales import Scale, get_scale
from slotlab.train import progress_enabled

METRIC_COLUMNS = ["val_accuracy", "test_accuracy", "test_loss", "best_epoch", "epochs", "train_seconds"]
MAX_CPU_WORKERS = 4


# --- points ------------------------------------------------------------------------------------------------
def _field_types() -> dict[str, str]:
    """Every field a point may set: the common ones and every method's options."""
    common = {f.name: str(f.type) for f in fields(RunConfig) if f.name != "options"}
    return {**common, **{name: spec.type for name, spec in option_specs().items()}}


def parse_assignments(items: Sequence[str]) -> dict[str, list[str]]:
    """``["k=1,2,4", "seed=0,1"]`` -> ``{"k": ["1", "2", "4"], "seed": ["0", "1"]}``.

    Alternatives are separated by commas; for a list-valued field (``milestones``), whose values contain commas,
    by slashes: ``milestones=25,75/80`` is the two alternatives (25, 75) and (80,).
    """
    types = _field_types()
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise SlotlabError(f"sweep assignment {item!r} must look like name=value1,value2 (e.g. k=1,2,4)")
        _check_name(name)
        separator = "/" if types.get(name, "").startswith("tuple") else ","
        out[name] = [v.strip() for v in values.split(separator)]
    return out


def _check_name(name: str) -> None:
    if name != "seed" and name not in _field_types():
        valid = ", ".join(["seed", *_field_types()])
        raise SlotlabError(f"unknown config field {name!r} in the sweep; valid fields: {valid}")


def expand(
    grid: Mapping[str, Sequence[Any]] | None = None, points: Sequence[Mapping[str, Any]] = ()
) -> list[dict]:
    """The override dicts of a sweep: the cartesian product of ``grid`` (first key outermost), combined with
    each of ``points`` when both are given."""
    grid = dict(grid or {})
    for name in [*grid, *(n for p in points for n in p)]:
        _check_name(name)
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise SlotlabError(f"sweep values of {name!r} must be a non-empty list, got {values!r}")
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if not points:
        return combos
    return [{**combo, **dict(point)} for combo in combos for point in points]


def point_config(base: RunConfig | Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """``base`` with ``overrides`` applied; ``seed`` fills the five seeds that are not given explicitly.

    Fields neither given in ``base`` (a dict, or a RunConfig's non-default fields) nor in ``overrides`` take the
    point's method's own defaults first (laperm trains with Adam), as on the command line. A point that changes
    the method keeps only the base's options that its method has (``--k 4 --grid method=slots,laperm``: K for
    slots, nothing for laperm); options the point itself gives are always checked.
    """
    given = base.changed_fields() if isinstance(base, RunConfig) else dict(base)
    base_method = given.get("method", "slots")
    if overrides.get("method", base_method) != base_method:
        own = set(get_method(str(overrides["method"])).options_type.names())
        given = {n: v for n, v in given.items() if n not in option_specs() or n in own}
    values = {k: v for k, v in overrides.items() if k != "seed"}
    if "seed" in overrides:
        for name in SEED_FIELDS:
            values.setdefault(name, overrides["seed"])
    merged = {**given, **values}
    unknown = sorted(set(merged) - set(_field_types()))
    if unknown:
        raise SlotlabError(f"unknown config fields {unknown}; valid fields: {', '.join(_field_types())}")
    return RunConfig(**merged)


# --- workers -----------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(devices, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["device"] = devices.get() if devices is not None else None
    # a worker outlives a sweep process that is killed (a notebook kernel restarted): it would go on training
    # its run for minutes or hours, holding the run's lock. It stops instead, unwinding the run so that the lock
    # is released (the run resumes from its last checkpoint next time).
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()


class _SweepProcessGone(BaseException):
    """Raised in a worker told to stop; not an ``Exception``, so no handler of the run's own catches it."""


def _on_sigterm(signum: int, frame: object) -> None:
    if not _WORKER.get("busy"):
        os._exit(128 + signum)
    raise _SweepProcessGone


def _stop_when_orphaned(parent: int, poll_seconds: float = 1.0, grace_seconds: float = 30.0) -> None:
    """Once this worker's parent ``parent`` has died (it is then re-parented: getppid changes), stop the run with
    SIGTERM and exit as soon as it has unwound (``_run_point``), or after ``grace_seconds`` in any case: code
    inside a run (torch.compile's tracing) may turn the unwinding into an ordinary error."""
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    _WORKER["orphaned"] = True
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_seconds)
    os._exit(128 + signal.SIGTERM)


def _run_point(config_dict: dict, root: str, device: str | None, data_root: str | None) -> dict[str, Any]:
    """Train (or read back) one point; never raises: the outcome carries the error."""
    start = time.perf_counter()
    device = _WORKER.get("device") or device
    try:
        _WORKER["busy"] = True
        config = RunConfig.from_dict(config_dict)
        if (run_dir(config, root) / "result.json").is_file():
            return {"status": "cached", "error": "", "seconds": 0.0}
        load_or_run(config, root=root, device=device, progress=False, data_root=data_root)
        status, error = "done", ""
    except RunLocked as locked:
        status, error = "locked", str(locked)
    except SlotlabError as bad:
        status, error = "failed", str(bad)
    except Exception as crash:  # a bug or a resource error in one point must not stop the sweep
        status, error = "failed", f"{type(crash).__name__}: {crash}".splitlines()[0]
    except _SweepProcessGone:  # the run has unwound (its lock released); nobody waits for its outcome
        os._exit(128 + signal.SIGTERM)
    finally:
        _WORKER["busy"] = False
        if _WORKER.get("orphaned"):  # however the run ended, it has unwound by now
            os._exit(128 + signal.SIGTERM)
    return {"status": status, "error": error, "seconds": time.perf_counter() - start}


def default_workers(device: str | None, scale: Scale | str | None = None) -> int:
    """One per GPU; on a CPU the scale's ``cpu_workers`` where it sets them (smoke: 1, its runs last seconds and a
    worker process would cost more), else one per core, up to 4. ``scale`` None: the one ``$SLOTLAB_SCALE``
    names."""
    import torch

    if (device in (None, "auto") and torch.cuda.is_available()) or str(device).startswith("cuda"):
        return max(torch.cuda.device_count(), 1)
    return max(1, min(MAX_CPU_WORKERS, get_scale(scale).cpu_workers or usable_cores()))


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's limit), else ``os.cpu_count``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _gpu_assignment(device: str | None, workers: int) -> list[str] | None:
    """One GPU per worker (round robin) when the device is left to us and several GPUs are there."""
    import torch

    if device not in (None, "auto") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    return [f"cuda:{i % torch.cuda.device_count()}" for i in range(workers)]


# --- the sweep ---------------------------------------------------------------------------------------------
@dataclass
class Point:
    """One point of a sweep: its overrides, its config (None if the overrides were invalid) and outcome."""

    index: int
    overrides: dict[str, Any]
    config: RunConfig | None
    status: str = "pending"  # cached | done | failed | locked
    error: str = ""
    seconds: float = 0.0


@dataclass
class SweepResult:
    points: list[Point]
    root: Path
    varying: list[str] = field(default_factory=list)  # the config fields that differ between points

    @property
    def failed(self) -> list[Point]:
        return [p for p in self.points if p.status == "failed"]

    def summary(self) -> pd.DataFrame:
        """One row per point, from the run folders: status, config fields, final metrics."""
        rows = []
        for p in self.points:
            row: dict[str, Any] = {"point": p.index, "status": p.status, "error": p.error}
            if p.config is not None:
                row.update(run_row(run_dir(p.config, self.root), p.config))
            else:
                row.update({k: str(v) for k, v in p.overrides.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """The summary reduced to what a reader compares: varying fields, status and accuracies."""
        frame = self.summary()
        keep = ["point", *self.varying, "status", "val_accuracy", "test_accuracy", "error"]
        return frame[[c for c in keep if c in frame.columns]]


def run_row(path: Path, config: RunConfig | None = None) -> dict[str, Any]:
    """One summary row of a run folder: name, hash, path, every config field, final metrics (NaN if unfinished)."""
    if config is None:
        config = RunConfig.from_dict(json.loads((path / "config.json").read_text())["config"])
    row: dict[str, Any] = {"name": config.name, "hash": config.hash, "path": str(path)}
    row.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in config.to_dict().items()})
    metrics = json.loads((path / "result.json").read_text()) if (path / "result.json").is_file() else {}
    row["finished"] = bool(metrics)
    for name in METRIC_COLUMNS:
        row[name] = metrics.get(name, float("nan"))
    row["protocol"] = metrics.get("protocol", config.protocol)
    return row


def summarize(root: str | Path | None = None) -> pd.DataFrame:
    """Every run folder under ``root`` (default: the runs root) as one row, in name order."""
    rows = []
    for folder in sorted(p.parent for p in runs_root(root).glob("*/config.json")):
        try:
            rows.append(run_row(folder))
        except (SlotlabError, ValueError, KeyError) as error:  # a folder of an older or foreign config
            rows.append({"name": folder.name, "path": str(folder), "finished": False, "error": str(error)})
    return pd.DataFrame(rows)


def sweep(
    grid: Mapping[str, Sequence[Any]] | None = None,
    points: Sequence[Mapping[str, Any]] = (),
    base: RunConfig | Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    workers: int | None = None,
    device: str | None = None,
    progress: bool | None = None,
    wait_for_locks: bool = True,
    poll_seconds: float = 2.0,
    data_root: str | Path | None = None,
) -> SweepResult:
    """Run every point of ``grid`` x ``points`` over ``base`` (a RunConfig or a dict of fields); returns the
    outcomes and the summary.

    ``workers``: processes (default: one per GPU, else one per CPU core, up to 4, one thread each; 1 runs the
    points in this process). With ``wait_for_locks``, points locked by another live process are retried every
    ``poll_seconds`` until that process finishes them (then they are read back) or dies (then this sweep takes
    them over).
    """
    base = base if base is not None else {}
    root = runs_root(root)
    overrides = expand(grid, points)
    if not overrides:
        raise SlotlabError("the sweep has no points; give a grid (k=1,2,4) or a list of points")
    todo: list[Point] = []
    for i, o in enumerate(overrides):
        try:
            todo.append(Point(i, dict(o), point_config(base, o)))
        except SlotlabError as bad:
            todo.append(Point(i, dict(o), None, "failed", str(bad)))
    varying = _varying_fields([p.config for p in todo if p.config is not None])
    for p in todo:
        if p.config is not None and (run_dir(p.config, root) / "result.json").is_file():
            p.status = "cached"
    result = SweepResult(todo, root, varying)
    waiting = [p for p in todo if p.status == "pending"]
    bar = None
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(todo), initial=len(todo) - len(waiting), desc="sweep", unit="run", dynamic_ncols=True
        )
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise SlotlabError(
            f"workers must be a whole number >= 1 (1: one point after another), got {workers!r}"
        )
    workers = workers or default_workers(device)
    try:
        while waiting:
            _run_batch(waiting, root, workers, device, data_root, bar)
            waiting = [p for p in waiting if p.status == "locked"]
            if not (waiting and wait_for_locks):
                break
            time.sleep(poll_seconds)
    finally:
        if bar is not None:
            bar.close()
    return result


def run_configs(
    configs: Sequence[RunConfig],
    root: str | Path | None = None,
    workers: int | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> None:
    """Train every run of ``configs`` not yet finished under ``root``, in parallel workers (``sweep``); runs that
    start from another run (finetuning) go once their sources are finished. Read them back with
    ``load_or_run``."""
    todo = {c.name: c for c in configs if not (run_dir(c, root) / "result.json").is_file()}.values()
    sourced = [c for c in todo if c.method_rule.source_of(c)]
    for stage in ([c for c in todo if not c.method_rule.source_of(c)], sourced):
        if stage:
            points = [config.changed_fields() for config in stage]
            sweep(points=points, root=root, workers=workers, device=device, progress=progress)


def _run_batch(points: list[Point], root: Path, workers: int, device, data_root, bar) -> None:
    def record(point: Point, outcome: dict[str, Any]) -> None:
        point.status, point.error, point.seconds = outcome["status"], outcome["error"], outcome["seconds"]
        if bar is not None and point.status != "locked":
            bar.update(1)
            bar.set_postfix(failed=sum(1 for p in points if p.status == "failed"), refresh=False)

    args = lambda p: (p.config.to_dict(), str(root), device, None if data_root is None else str(data_root))  # noqa: E731
    workers = max(1, min(workers, len(points)))
    if workers == 1:
        for p in points:
            record(p, _run_point(*args(p)))
        return
    import multiprocessing

    gpus = _gpu_assignment(device, workers)
    # spawn, not fork, also for CPU workers: a process where torch.compile has run (slotlab's CPU slot kernels)
    # or that uses CUDA cannot be forked safely, and autograd refuses such children
    context = multiprocessing.get_context("spawn")
    queue = None
    if gpus is not None:
        queue = context.Manager().Queue()
        for gpu in gpus:
            queue.put(gpu)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(queue, threads)
    ) as pool:
        futures = {pool.submit(_run_point, *args(p)): p for p in points}
        for future in as_completed(futures):
            point = futures[future]
            try:
                record(point, future.result())
            except Exception as crash:  # the worker process itself died (out of memory, a signal)
                record(
                    point,
                    {"status": "failed", "error": f"worker died: {type(crash).__name__}", "seconds": 0.0},
                )


def _varying_fields(configs: list[RunConfig]) -> list[str]:
    if not configs:
        return []
    dicts = [c.to_dict() for c in configs]  # configs of different methods hold different options
    names = list(dict.fromkeys(name for d in dicts for name in d))
    return [
        name
        for name in names
        if any(json.dumps(d.get(name)) != json.dumps(dicts[0].get(name)) for d in dicts)
    ]
