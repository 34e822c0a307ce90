"""Write the "Reproductions" section of benchmarks/RESULTS.md from what ``python -m slotlab reproduce`` wrote.

Every table of that section comes from ``<out>/<experiment>/summary.csv``, ``verdicts.csv`` and
``meta-<scale>.json``; nothing in it is typed by hand. The section lies between the two marker lines below and is
replaced whole, so the rest of RESULTS.md is left as it is. The training hours of each reproduction go to
``slotlab/experiments/measured.csv``, which ``reproduce --list`` reads on a fresh clone.

    python benchmarks/reproductions_report.py --out reproductions --scale laptop

A reproduction that ``<out>`` does not hold keeps the section (and measured row) an earlier report wrote for it,
while its grid is unchanged: that section is the record of runs made on another machine, and a report from a fresh
runs folder adds to it instead of dropping it. Experiments that can run but have no reproduction at that scale yet
are listed last, with how many of their runs the runs folder already holds and the hours the rest would take on one
worker, projected from the finished runs of the same method, model and dataset there (their training and evaluation
seconds, ``history.csv``), or where none has finished from the run's FLOPs at the median FLOP/s of the finished
runs of its dataset.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import pandas as pd
from paper_compute import run_flops_with_evaluation

from slotlab.config import RunConfig
from slotlab.experiments import EXPERIMENTS, get_experiment
from slotlab.experiments.measured import COLUMNS, MEASURED, is_current, read_measured
from slotlab.runs import read_saved_config, run_dir, runs_root
from slotlab.scales import get_scale

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- reproductions: written by benchmarks/reproductions_report.py -->"
END = "<!-- reproductions: end -->"


def _x(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: float, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def experiment_section(folder: Path, name: str, scale: str) -> str:
    """The markdown of one reproduction: what it asks, the command, the summary and the verdicts."""
    meta = json.loads((folder / f"meta-{scale}.json").read_text())
    experiment = get_experiment(name)
    summary = pd.read_csv(folder / "summary.csv")
    verdicts = pd.read_csv(folder / "verdicts.csv")
    seeds = len(meta["seeds"])
    lines = [
        f"### {name} ({scale} scale)",
        "",
        f"{experiment.paper}, {experiment.in_paper}. {experiment.question}",
        "",
        f"Command: `python -m slotlab reproduce {name} --scale {scale} --seeds {seeds}` ({meta['runs']} runs, "
        f"{meta['train_seconds'] / 60:.1f} min of training on {meta['device']}"
        + (f"; {len(meta['failed'])} did not finish" if meta["failed"] else "")
        + ").",
        "",
        f"| series | {experiment.x_label} | test % (mean ± std) | n | 95 % interval |",
        "|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        interval = "—" if math.isnan(row.low) else f"{row.low:.2f} to {row.high:.2f}"
        lines.append(
            f"| {row.series} | {_x(row.x)} | {_number(row.mean)} ± {_number(row.std)} | {row.n} | {interval} |"
        )
    lines.append("")
    stand_in = summary["series"].astype(str).str.contains("stand-in").any()
    if verdicts.empty and experiment.published and stand_in:
        lines.append(
            "No verdict: the published numbers are for the paper's own networks and data, which this scale "
            "replaces by the stand-in its series names."
        )
    elif verdicts.empty and experiment.published:
        points = "; ".join(f"{p.series} at {_x(p.x)}: {p.value:g} %" for p in experiment.published)
        lines.append(f"No verdict: this scale does not measure the published points ({points}).")
    elif verdicts.empty:
        lines.append("No published number for these points (the paper gives this result as a figure only).")
    else:
        tolerance = verdicts["tolerance"].iloc[0]
        lines += [
            f"| point | ours | published | difference | within {tolerance:g} | published under |",
            "|---|---|---|---|---|---|",
        ]
        for row in verdicts.itertuples(index=False):
            within = "yes" if row[7] else "**no**"
            lines.append(
                f"| {row.series}, {_x(row.x)} | {_number(row.ours)} ± {_number(row.std)} | {row.published:g} "
                f"({row.source}) | {row.difference:+.2f} | {within} | {row[10]} |"
            )
    if experiment.note:
        lines += ["", f"Setting: {experiment.note}"]
    return "\n".join(lines) + "\n"


def run_seconds(folder: Path) -> float:
    """Training and evaluation seconds of a finished run (every row of its history)."""
    return float(pd.read_csv(folder / "history.csv")["seconds"].sum())


def kind(name: str) -> str:
    """A run folder's method, model and dataset: its name less the hash."""
    return name.rsplit("-", 1)[0]


@functools.cache
def _flops(config: RunConfig) -> int:
    return run_flops_with_evaluation(config)


def finished_runs(runs: Path) -> dict[RunConfig, float]:
    """Every finished run in ``runs``: its config and its training and evaluation seconds."""
    return {
        RunConfig.from_dict(read_saved_config(result.parent)["config"]): run_seconds(result.parent)
        for result in runs.glob("*/result.json")
    }


def flop_rate(finished: dict[RunConfig, float], dataset: str) -> float:
    """The median FLOP/s of the finished runs of ``dataset`` (training and evaluation FLOPs over seconds)."""
    rates = [_flops(config) / seconds for config, seconds in finished.items() if config.dataset == dataset]
    return float(pd.Series(rates).median()) if rates else math.nan


def missing_section(done: list[str], scale: str, runs: Path, seeds: int) -> str:
    """The runnable experiments without a reproduction at ``scale``: runs cached, runs left, projected hours."""
    finished = finished_runs(runs)
    measured: dict[str, list[float]] = {}
    for config, seconds in finished.items():
        measured.setdefault(kind(config.name), []).append(seconds)
    rates: dict[str, float] = {}
    rows: list[str] = []
    lines = [
        f"### Not yet reproduced at {scale} scale",
        "",
        f"Runs of `--seeds {seeds}` already in the runs folder, and the hours the others would take on one worker: "
        "a run of a method, model and dataset that has finished runs there takes their mean seconds; any other "
        "its training and evaluation FLOPs (`benchmarks/paper_compute.py`) at the median FLOP/s of the finished "
        "runs of its dataset (marked ~: these rates vary about 2x with the model and the load). Two workers take "
        "about half.",
        "",
        "| experiment | runs | cached | left | projected hours, one worker |",
        "|---|---|---|---|---|",
    ]
    for experiment in EXPERIMENTS.values():
        if not experiment.runnable or experiment.name in done:
            continue
        planned = experiment.configs(get_scale(scale), list(range(seeds)))
        left = [c for _, _, c in planned if not (run_dir(c, runs) / "result.json").is_file()]
        seconds, from_flops = 0.0, False
        for config in left:
            if kind(config.name) in measured:
                seconds += sum(measured[kind(config.name)]) / len(measured[kind(config.name)])
                continue
            if config.dataset not in rates:
                rates[config.dataset] = flop_rate(finished, config.dataset)
            seconds += _flops(config) / rates[config.dataset]
            from_flops = True
        hours = "?" if math.isnan(seconds) else f"{'~' * from_flops}{seconds / 3600:.1f}"
        rows.append(
            f"| {experiment.name} | {len(planned)} | {len(planned) - len(left)} | {len(left)} | {hours} |"
        )
    if not rows:
        return f"### Not yet reproduced at {scale} scale\n\nNone: every runnable experiment has a reproduction.\n"
    return "\n".join(lines + rows) + "\n"


def earlier_sections(previous: str, scale: str) -> dict[str, str]:
    """The reproduction sections of an earlier report's text, by experiment name."""
    sections: dict[str, str] = {}
    suffix = f" ({scale} scale)"
    for chunk in previous.split("\n### ")[1:]:
        header, _, _ = chunk.partition("\n")
        if header.endswith(suffix):
            sections[header.removesuffix(suffix)] = f"### {chunk.rstrip()}\n"
    return sections


def verdict_counts(section: str) -> tuple[int, int]:
    """Published numbers reached within tolerance and missed, read off a section's verdict table."""
    within = missed = 0
    in_table = False
    for line in section.splitlines():
        if line.startswith("| point | ours | published |"):
            in_table = True
        elif in_table and line.startswith("| ") and not line.startswith("|---"):
            cell = line.split(" | ")[4].strip()
            within += cell == "yes"
            missed += cell == "**no**"
        elif not line.startswith("|"):
            in_table = False
    return within, missed


def measured_row(folder: Path, name: str, scale: str) -> dict[str, object]:
    """The ``slotlab/experiments/measured.csv`` row of a reproduction in ``folder``."""
    meta = json.loads((folder / f"meta-{scale}.json").read_text())
    return {
        "experiment": name,
        "scale": scale,
        "seeds": len(meta["seeds"]),
        "runs": meta["runs"],
        "train_hours": round(meta["train_seconds"] / 3600, 3),
        "device": meta["device"],
        "grid": get_experiment(name).grid_digest(get_scale(scale), meta["seeds"]),
    }


def report(
    out: Path,
    scale: str,
    runs: Path | None = None,
    seeds: int = 3,
    previous: str = "",
    measured: pd.DataFrame | None = None,
) -> tuple[str, pd.DataFrame]:
    """Every reproduction under ``out`` at ``scale``, and the sections of ``previous`` (an earlier report) for
    the experiments that ``out`` does not hold, in name order; with the measured hours of each (``measured``:
    the earlier ``slotlab/experiments/measured.csv``). An earlier section is kept only while its experiment's
    grid is the one it measured: after a change of grid its numbers are of other runs."""
    measured = read_measured() if measured is None else measured
    rows = {(r["experiment"], r["scale"]): r for r in measured.to_dict("records")}
    sections = {}
    for name, text in earlier_sections(previous, scale).items():
        row = rows.get((name, scale))
        if name in EXPERIMENTS and row is not None and is_current(row, EXPERIMENTS[name], get_scale(scale)):
            sections[name] = text
    for folder in sorted(path.parent for path in out.glob(f"*/*/meta-{scale}.json")):
        name = str(folder.relative_to(out))
        sections[name] = experiment_section(folder, name, scale)
        rows[(name, scale)] = measured_row(folder, name, scale)
    names = sorted(sections)
    counts = [verdict_counts(sections[name]) for name in names]
    head = (
        f"{len(names)} experiments measured at {scale} scale; {sum(w for w, _ in counts)} published numbers "
        f"reached within tolerance, {sum(m for _, m in counts)} missed. Mean ± std over seeds with the 95 % t "
        "interval; our numbers use the default protocol (validation selects the epoch, the test set is evaluated "
        "once).\n"
    )
    body = [sections[name] for name in names]
    if runs is not None:
        body.append(missing_section(names, scale, runs, seeds))
    kept = [row for (name, row_scale), row in rows.items() if row_scale != scale or name in sections]
    table = pd.DataFrame(kept, columns=COLUMNS).sort_values(["experiment", "scale"], ignore_index=True)
    return "\n".join([head, *body]), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reproductions", help="reproduce's output folder")
    parser.add_argument("--scale", default="laptop")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument(
        "--runs", type=Path, default=None, help="runs folder (default: $SLOTLAB_RUNS or runs/)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point of the missing experiments")
    args = parser.parse_args()
    text = args.results.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.results} has no reproductions markers; add the lines {BEGIN!r} and {END!r}")
    before, rest = text.split(BEGIN, 1)
    current, after = rest.split(END, 1)
    section, measured = report(args.out, args.scale, args.runs or runs_root(), args.seeds, previous=current)
    args.results.write_text(f"{before}{BEGIN}\n{section}{END}{after}")
    measured.to_csv(MEASURED, index=False)
    print(f"wrote the reproductions section of {args.results} and the measured hours in {MEASURED}")


if __name__ == "__main__":
    main()
