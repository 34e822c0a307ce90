"""Reproduce a paper's figure or table by name: run its grid, then write the table, the figure and the verdicts.

    python -m slotlab reproduce slot-machines/k-sweep --scale laptop --seeds 3
    python -m slotlab reproduce --list

The runs go through the sweep machinery (``slotlab.sweep``): cached by config hash, resumable, locked, in
parallel workers. ``reproductions/<name>/`` then holds ``table.csv`` (one row per run), ``summary.csv`` (mean,
std and 95 % interval per point), ``verdicts.csv`` (ours against each published number, within tolerance or
not), the figure as PDF, SVG and PNG, and ``meta.json`` (scale, seeds, the measured training time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from slotlab.checkpoint import atomic_write_json, atomic_write_text
from slotlab.data import is_synthetic
from slotlab.device import pick_device
from slotlab.errors import SlotlabError
from slotlab.experiments import EXPERIMENTS, Experiment, get_experiment
from slotlab.experiments.measured import measured_hours, read_measured
from slotlab.plot import save_figure
from slotlab.runs import open_run, run_dir, runs_root
from slotlab.scales import SCALES, Scale, get_scale
from slotlab.sweep import default_workers, run_configs

OUT = Path("reproductions")


@dataclass
class Reproduction:
    """A finished reproduction: what ran, the tables and the figure."""

    experiment: Experiment
    scale: Scale
    seeds: list[int]
    table: pd.DataFrame
    summary: pd.DataFrame
    verdicts: pd.DataFrame
    figure: Figure
    folder: Path | None
    failed: list[str]  # one line per run that did not finish
    caveat: str  # why the verdicts judge nothing (runs on synthetic data), else empty

    def _repr_html_(self) -> str:
        e = self.experiment
        head = f"<p><b>{e.name}</b> ({e.paper}, {e.in_paper}) at scale <code>{self.scale.name}</code>: {e.question}</p>"
        if self.caveat and len(self.verdicts):
            head += f"<p><i>{self.caveat}</i></p>"
        return head + self.verdicts.to_html(index=False, float_format=lambda v: f"{v:.2f}")


def reproduce(
    name: str,
    scale: str | Scale | None = None,
    seeds: int | None = None,
    workers: int | None = None,
    root: str | Path | None = None,
    out: str | Path | None = OUT,
    device: str | None = None,
    progress: bool | None = None,
) -> Reproduction:
    """Run experiment ``name`` at ``scale`` over ``seeds`` seeds (default: the experiment's for that scale) and
    write ``out/<name>/`` (``out`` None: write nothing)."""
    experiment = get_experiment(name)
    scale = get_scale(scale)
    count = experiment.seeds.get(scale.name, 3) if seeds is None else seeds
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise SlotlabError(f"seeds must be a whole number >= 1 (how many seeds per point), got {count!r}")
    seed_list = list(range(int(count)))
    planned = experiment.configs(scale, seed_list)
    start = time.perf_counter()
    run_configs(
        [config for _, _, config in planned],
        root=root,
        workers=workers or default_workers(device, scale),
        device=device,
        progress=progress,
    )
    finished, failed = [], []
    for point, seed, config in planned:
        if (run_dir(config, root) / "result.json").is_file():
            finished.append((point, seed, open_run(run_dir(config, root))))
        else:
            failed.append(f"{point.series} x={point.x} seed {seed}: run {config.name} did not finish")
    table = experiment.table(finished)
    summary = experiment.summary(table)
    synthetic = sorted({c.dataset for _, _, c in planned if is_synthetic(c.dataset)})
    caveat = (
        f"trained on synthetic data ({', '.join(synthetic)}): the differences from the papers' numbers check the "
        "machinery, not the method; --scale laptop or paper gives verdicts"
        if synthetic
        else ""
    )
    verdicts = experiment.verdicts(summary, judged=not synthetic)
    figure = experiment.plot(
        summary, title=f"{experiment.name} ({scale.name} scale, {count} seed{'s' * (count != 1)})"
    )
    folder = None
    if out is not None:
        folder = Path(out) / experiment.name
        atomic_write_text(table.to_csv(index=False), folder / "table.csv")
        atomic_write_text(summary.to_csv(index=False), folder / "summary.csv")
        atomic_write_text(verdicts.to_csv(index=False), folder / "verdicts.csv")
        save_figure(figure, folder / "figure")
        meta: dict[str, Any] = {
            "experiment": experiment.name,
            "scale": scale.name,
            "seeds": seed_list,
            "runs": len(planned),
            "failed": failed,
            "train_seconds": float(sum(run.metrics.get("train_seconds", 0.0) for _, _, run in finished)),
            "wall_seconds": time.perf_counter() - start,
            "runs_root": str(runs_root(root)),
            "device": str(pick_device(device)),
        }
        atomic_write_json(meta, folder / f"meta-{scale.name}.json")
    return Reproduction(
        experiment, scale, seed_list, table, summary, verdicts, figure, folder, failed, caveat
    )


# training images per epoch of the full datasets (the training split less the default validation split)
TRAIN_IMAGES = {"mnist": 50_000, "fashion-mnist": 50_000, "cifar10": 45_000, "imagenet": 1_271_167}
# the throughput table's method labels (benchmarks/gpu_check.py); methods that train plain weights run as dense
THROUGHPUT_METHOD = {
    "slots": "slots K=8",
    "random-slots": "slots K=8",
    "learned": "dense",
    "finetune": "dense",
}


def read_throughput(path: str | Path) -> dict[tuple[str, str, int], float]:
    """``benchmarks/gpu_check.py``'s throughput.csv: images per second by (method label, model, batch)."""
    try:
        frame = pd.read_csv(path)
        return {
            (str(r.method), str(r.model), int(r.batch)): float(r.images_per_second)
            for r in frame.itertuples()
        }
    except (OSError, ValueError, AttributeError, pd.errors.ParserError) as error:
        raise SlotlabError(
            f"cannot read throughput table {path} ({type(error).__name__}); make one with benchmarks/gpu_check.py"
        ) from None


def estimated_hours(
    experiment: Experiment, scale: Scale, rates: dict[tuple[str, str, int], float]
) -> float | None:
    """Training hours of ``experiment`` at ``scale`` from measured throughput; None where a model or method of
    the grid was not measured (evaluation passes are not counted)."""
    seeds = range(experiment.seeds.get(scale.name, 3))
    seconds = 0.0
    for _, _, config in experiment.configs(scale, list(seeds)):
        label = THROUGHPUT_METHOD.get(config.method, config.method)
        batches = sorted({b for (m, model, b) in rates if m == label and model == config.model})
        if not batches:
            return None
        batch = min(batches, key=lambda b: abs(b - config.batch_size))
        images = config.train_size or TRAIN_IMAGES.get(config.dataset, 50_000)
        seconds += config.epochs * images / rates[(label, config.model, batch)]
    return seconds / 3600


def experiment_list(out: str | Path = OUT, throughput: str | Path | None = None) -> pd.DataFrame:
    """Every experiment: name, figure, question, runs per scale, training hours where measured (here, under
    ``out``, else as shipped in ``slotlab/experiments/measured.csv``), status; with a throughput table, the
    hours the paper scale would take on the machine that measured it."""
    rates = read_throughput(throughput) if throughput is not None else None
    measured = read_measured()
    rows = []
    for e in EXPERIMENTS.values():
        row: dict[str, Any] = {"name": e.name, "in the paper": e.in_paper, "question": e.question}
        for scale in SCALES.values():
            runs = len(e.points(scale)) * e.seeds.get(scale.name, 3) if e.runnable else 0
            meta = Path(out) / e.name / f"meta-{scale.name}.json"
            hours = ""
            if meta.is_file():
                saved = pd.read_json(meta, typ="series")
                hours = f"{float(saved['train_seconds']) / 3600:.2f} h"
            elif (shipped := measured_hours(e, scale, measured)) is not None:
                hours = f"{shipped:.2f} h"
            row[f"{scale.name} runs"] = runs
            row[f"{scale.name} measured"] = hours
        if rates is not None:
            hours = estimated_hours(e, SCALES["paper"], rates) if e.runnable else None
            row["paper hours (est.)"] = "?" if hours is None else f"{hours:.1f}"
        row["status"] = e.status
        rows.append(row)
    return pd.DataFrame(rows)
