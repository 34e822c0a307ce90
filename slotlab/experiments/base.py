"""An experiment of a paper as an object: its question, its grid per scale, the published numbers, and a verdict.

``Experiment`` holds everything needed to reproduce one figure or table: the points it measures (a series and an
x value each, e.g. series "greedy", x = K), the config of each point at a scale (smoke, laptop, paper), the
published numbers with their source and protocol, and a tolerance. ``slotlab.reproduce`` runs it; the default
analysis turns the finished runs into a tidy table (one row per point and seed), ``summary`` gives mean, std and
a 95 % interval per point (``slotlab.stats``), ``verdicts`` sets ours against every published number, and
``plot`` draws our points with error bars and the published ones as distinct markers.

An experiment slotlab cannot run yet is listed all the same, with ``missing`` saying what it needs.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from slotlab.config import RunConfig, scaled_config
from slotlab.errors import SlotlabError
from slotlab.scales import Scale
from slotlab.stats import summarize_seeds


@dataclass(frozen=True)
class Published:
    """One number a paper (or its authors' released results) reports, in percent."""

    series: str
    x: Any
    value: float
    source: str  # "Table 1", "Fig. 3", "released results (README)"
    protocol: str = "best test epoch"  # how the paper measured it: best test epoch, last epoch, validation


@dataclass(frozen=True)
class Point:
    """One measured point: a series and an x value, and the method and choices its config is made from."""

    series: str
    x: Any
    method: str
    choices: Mapping[str, Any] = field(default_factory=dict)

    def config(self, scale: Scale, seed: int) -> RunConfig:
        seeds = {
            name: seed for name in ("weight_seed", "score_seed", "data_seed", "sample_seed", "split_seed")
        }
        return scaled_config(scale, self.method, **{**seeds, **self.choices})


Grid = Callable[[Scale], list[Point]]


@dataclass(frozen=True)
class Experiment:
    """A figure or table of one of the papers, reproducible by name (``slotlab.reproduce``)."""

    name: str  # "<paper>/<figure>", e.g. "slot-machines/k-sweep"
    paper: str  # "Aladago & Torresani 2021, Slot Machines"
    in_paper: str  # which figure or table of the paper: "Fig. 2 (left)", "Table 2"
    question: str  # one sentence
    grid: Grid | None  # the points at a scale; None: slotlab cannot run it yet
    published: tuple[Published, ...] = ()
    tolerance: float = 1.0  # percentage points between our mean and a published number that still agree
    x_label: str = "x"
    log_x: bool = False
    missing: str = ""  # for an experiment slotlab cannot run: what it needs
    seeds: Mapping[str, int] = field(default_factory=lambda: {"smoke": 1, "laptop": 3, "paper": 5})
    note: str = ""  # what the scale changes, or how our setting differs from the paper's

    def __post_init__(self) -> None:
        if (self.grid is None) != bool(self.missing):
            raise SlotlabError(
                f"experiment {self.name}: give a grid, or say what is missing to run it, not both"
            )

    @property
    def runnable(self) -> bool:
        return self.grid is not None

    @property
    def status(self) -> str:
        return "runs" if self.runnable else f"cannot run yet: {self.missing}"

    def points(self, scale: Scale) -> list[Point]:
        if self.grid is None:
            raise SlotlabError(f"experiment {self.name} cannot run yet: {self.missing}")
        return self.grid(scale)

    def configs(self, scale: Scale, seeds: Sequence[int]) -> list[tuple[Point, int, RunConfig]]:
        """Every run of the experiment at ``scale``: (point, seed, config)."""
        return [(p, s, p.config(scale, s)) for p in self.points(scale) for s in seeds]

    def grid_digest(self, scale: Scale, seeds: Sequence[int]) -> str:
        """A digest of the run names (config hashes) at ``scale``: it changes whenever a run of the grid does."""
        names = sorted(config.name for _, _, config in self.configs(scale, seeds))
        return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]

    # --- analysis -----------------------------------------------------------------------------------------
    @staticmethod
    def table(runs: Sequence[tuple[Point, int, Any]]) -> pd.DataFrame:
        """One row per finished run: series, x, seed, test and validation accuracy in percent, run name."""
        rows = [
            {
                "series": point.series,
                "x": point.x,
                "seed": seed,
                "test %": 100 * run.metrics["test_accuracy"],
                "val %": 100 * run.metrics["val_accuracy"],
                "protocol": run.config.protocol,
                "run": run.path.name,
            }
            for point, seed, run in runs
        ]
        return pd.DataFrame(rows, columns=["series", "x", "seed", "test %", "val %", "protocol", "run"])

    @staticmethod
    def summary(table: pd.DataFrame) -> pd.DataFrame:
        """Per point: mean, std, n and the 95 % interval of the test accuracy over seeds."""
        rows = []
        for (series, x), group in table.groupby(["series", "x"], sort=False):
            s = summarize_seeds(group["test %"])
            rows.append(
                {
                    "series": series,
                    "x": x,
                    "mean": s.mean,
                    "std": s.std,
                    "n": s.n,
                    "low": s.low,
                    "high": s.high,
                }
            )
        return pd.DataFrame(rows, columns=["series", "x", "mean", "std", "n", "low", "high"])

    def verdicts(self, summary: pd.DataFrame, judged: bool = True) -> pd.DataFrame:
        """Ours (mean ± std over seeds, n) against every published number of a point we measured; ``judged``
        False (runs on synthetic data) leaves "within tolerance" empty: such a difference is no verdict."""
        rows = []
        for p in self.published:
            ours = summary[(summary["series"] == p.series) & (summary["x"] == p.x)]
            if ours.empty:
                continue
            o = ours.iloc[0]
            difference = o["mean"] - p.value
            rows.append(
                {
                    "series": p.series,
                    "x": p.x,
                    "ours": o["mean"],
                    "std": o["std"],
                    "n": int(o["n"]),
                    "published": p.value,
                    "difference": difference,
                    "within tolerance": bool(abs(difference) <= self.tolerance) if judged else None,
                    "tolerance": self.tolerance,
                    "source": p.source,
                    "published protocol": p.protocol,
                }
            )
        columns = [
            "series",
            "x",
            "ours",
            "std",
            "n",
            "published",
            "difference",
            "within tolerance",
            "tolerance",
        ]
        return pd.DataFrame(rows, columns=[*columns, "source", "published protocol"])

    def plot(self, summary: pd.DataFrame, title: str = "") -> Figure:
        """Our points with error bars (std over seeds) and the published numbers as open markers, in the colour
        of our series they belong to (a stand-in's series, "X (Lenet-300-100 stand-in)", is X's; a number that
        several series are set against, black). With a single x value (one setting, several series) the series
        are the categories of the x axis."""
        fig = Figure(figsize=(6, 3.6), layout="constrained")
        ax = fig.subplots()
        ours = list(dict.fromkeys(summary["series"]))
        # one x of ours and of the paper's: the series are the categories (a stand-in's one x set against the
        # paper's models is not: those models get their own ticks)
        single = (
            summary["x"].nunique() == 1
            and len(ours) > 1
            and all(p.x == summary["x"].iloc[0] for p in self.published)
        )
        # every x of the figure, ours first: a categorical published x we did not run still gets its own place
        every_x = pd.Series([*summary["x"].tolist(), *(p.x for p in self.published)])
        colours = {}
        for i, (series, group) in enumerate(summary.groupby("series", sort=False)):
            xs = [i] if single else _positions(group["x"], every_x)
            err = np.nan_to_num(group["std"].to_numpy(dtype=float))
            line = ax.errorbar(xs, group["mean"], yerr=err, marker="o", capsize=3, label=f"{series} (ours)")
            colours[series] = line[0].get_color()
        unmatched = [
            s for s in dict.fromkeys(p.series for p in self.published) if _our_series(s, ours) is None
        ]
        # one paper number set against several of our series (e.g. two inits): drawn once, in black
        holders: dict[tuple[Any, float], set[str]] = {}
        for p in self.published:
            holders.setdefault((p.x, p.value), set()).add(p.series)
        shared = set() if single else {key for key, names in holders.items() if len(names) > 1}
        if shared:
            xs_shared, ys_shared = zip(*sorted(shared, key=lambda key: (str(key[0]), key[1])), strict=True)
            ax.plot(
                _positions(pd.Series(list(xs_shared)), every_x),
                list(ys_shared),
                linestyle="none",
                marker="D",
                markerfacecolor="none",
                markersize=7,
                color="black",
                label="published",
            )
        for series in dict.fromkeys(p.series for p in self.published):
            mine = _our_series(series, ours)
            points = [p for p in self.published if p.series == series and (p.x, p.value) not in shared]
            if not points:
                continue
            label = f"{series} (published)"
            if mine is None and len(unmatched) > 3:  # many series of the paper's own models: one legend entry
                label = f"published, {len(unmatched)} series of the paper" if series == unmatched[0] else "_"
            if single:
                if mine is None:
                    continue  # a published series we did not measure has no category to stand in
                xs = [ours.index(mine)] * len(points)
            else:
                xs = _positions(pd.Series([p.x for p in points]), every_x)
            ax.plot(
                xs,
                [p.value for p in points],
                linestyle="none",
                marker="D",
                markerfacecolor="none",
                markersize=7,
                color=colours.get(mine, "black"),
                label=label,
            )
        if single:
            ax.set_xticks(range(len(ours)), [textwrap.fill(s, 18) for s in ours], fontsize="small")
            ax.set_xlim(-0.5, len(ours) - 0.5)
            ax.set_xlabel(f"{self.x_label}: {summary['x'].iloc[0]}")
        else:
            self._x_axis(ax, summary, every_x)
            ax.set_xlabel(self.x_label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title or f"{self.name}: {self.in_paper}", loc="left", fontsize="medium")
        ax.grid(alpha=0.3)
        if single:  # the categories name the series: the legend only tells ours from published
            handles = [
                Line2D(
                    [], [], color="0.3", marker="o", linestyle="none", label="ours (mean ± std over seeds)"
                ),
                Line2D(
                    [],
                    [],
                    color="0.3",
                    marker="D",
                    markerfacecolor="none",
                    linestyle="none",
                    label="published",
                ),
            ]
            ax.legend(handles=handles[: 1 + bool(self.published)], fontsize="small", loc="best")
        elif len(ax.get_legend_handles_labels()[0]) > 5:
            fig.set_size_inches(9.5, 3.6)  # many entries would cover the points: beside the axes, wider
            fig.legend(fontsize="small", loc="outside right upper")
        else:
            ax.legend(fontsize="small", loc="best")
        return fig

    def _x_axis(self, ax, summary: pd.DataFrame, every_x: pd.Series) -> None:
        if self.log_x and _numeric(summary["x"]):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())  # 2, 4, 8 rather than 2^1, 2^2, 2^3
            published = {float(p.x) for p in self.published if _is_number(p.x) and p.x > 0}
            xs = sorted({float(x) for x in summary["x"]} | published)
            # every x as a tick where they are few and far apart (K, widths); else the axis's own ticks
            if len(xs) <= 8 and all(b / a >= 1.3 for a, b in zip(xs, xs[1:], strict=False) if a > 0):
                ax.set_xticks(xs)
        if not _numeric(summary["x"]):
            order = list(dict.fromkeys(every_x.tolist()))
            ax.set_xticks(range(len(order)), [str(x) for x in order])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _our_series(published: str, ours: list[str]) -> str | None:
    """Our series a published one belongs to: the same name, or the name with a stand-in's tag after it."""
    if published in ours:
        return published
    return next((s for s in ours if s.startswith(f"{published} (")), None)


def _numeric(values: pd.Series) -> bool:
    return all(_is_number(v) for v in values)


def _positions(xs: pd.Series, all_xs: pd.Series) -> list[Any]:
    """Numeric x as it is; categorical x as its index among every x of the figure."""
    if _numeric(all_xs) and _numeric(xs):
        return list(xs)
    order = list(dict.fromkeys(all_xs.tolist()))
    return [order.index(x) for x in xs]
