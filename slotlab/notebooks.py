"""The notebooks' own runs and the display of the papers' experiments, so that the notebooks stay thin.

A notebook section that reproduces a paper's figure or table calls the registry (``slotlab.experiments``) through
``slotlab.reproduce.reproduce`` and shows it with ``show``: the verdicts against the published numbers, then the
figure. What is not a paper figure (the quickstart's three networks, the recorded runs of the selection and flip
walkthrough, the random-mask baseline, the slot-machine landscape, the all-methods comparison) is a notebook config
here: ``notebook_configs("03_edge_popup", "laptop")`` gives the nested dict of configs notebook 03 trains;
``run_all`` trains (or reads back) all of them keeping the shape, and ``results_table`` lays their accuracies side
by side. Each config comes from ``slotlab.config.scaled_config``: the method's recipe at the scale
(``slotlab.scales``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML, display

from slotlab.config import RunConfig, scaled_config
from slotlab.errors import SlotlabError
from slotlab.notebook_errors import install as install_error_display
from slotlab.plot import save_figure
from slotlab.reproduce import Reproduction
from slotlab.runs import RunResult, load_or_run, open_run, runs_root
from slotlab.scales import Scale, get_scale
from slotlab.sweep import run_configs

# --- the notebooks' experiments ------------------------------------------------------------------------------

NotebookConfigs = dict[str, Any]  # name -> RunConfig, or a list / dict of RunConfigs (a sweep)

install_error_display()  # in a notebook, a SlotlabError shows as its one line, not a traceback


class _At:
    """``p.config(method, **choices)``: configs at one scale, as the notebook builders below write them."""

    def __init__(self, scale: Scale) -> None:
        self.scale = scale
        self.name, self.is_paper = scale.name, scale.is_paper
        self.ks, self.seeds, self.densities = scale.ks, scale.seeds, scale.densities

    def config(self, method: str, **choices: Any) -> RunConfig:
        return scaled_config(self.scale, method, **choices)


def _random_network(p: _At, **choices: Any) -> RunConfig:
    """K = 1: one value per connection, nothing to choose; every epoch evaluates the same network, so one will do."""
    return p.config("slots", k=1, epochs=1, **choices)


def _quickstart(p: _At) -> NotebookConfigs:
    return {
        "slots": p.config("slots", k=8),
        "random": _random_network(p),
        "dense": p.config("dense"),
    }


def _selections_and_flips(p: _At) -> NotebookConfigs:
    return {"greedy": p.config("slots", k=8), "sampled": p.config("slots", k=8, selection="sampled")}


def _mask_setting(p: _At) -> dict[str, Any]:
    """Lenet-300-100 on MNIST for CPU profiles; the mask papers' Conv-4 on CIFAR-10 (with augmentation) at paper."""
    if p.is_paper:
        return {"model": "conv4", "dataset": "cifar10", "augment": True}
    return {"model": "lenet300", "dataset": "mnist"}


def _edge_popup(p: _At) -> NotebookConfigs:
    """The plain sparse-training baseline next to Edge-Popup's density sweep: a fixed random mask, weights trained."""
    s = _mask_setting(p)
    densities = p.densities if p.is_paper else (0.1, 0.5)
    return {"random_mask": {d: p.config("random-mask", density=d, **s) for d in densities}}


def _mask_landscapes(p: _At) -> NotebookConfigs:
    """Slot machines on the same random values from different score seeds (their landscape is not a paper figure)."""
    s = _mask_setting(p)
    return {"slots": {seed: p.config("slots", k=8, score_seed=seed, **s) for seed in p.seeds[:3]}}


def _all_methods(p: _At) -> NotebookConfigs:
    """Every method on one model (Lenet-300-100 on MNIST; Conv-4 on CIFAR-10 at paper), at its own recipe."""
    s = _mask_setting(p)
    return {
        "slots K = 8": p.config("slots", k=8, **s),
        "edge-popup": p.config("edge-popup", density=0.5, **s),
        "biprop": p.config("biprop", density=0.5, **s),
        "edge-popup + recycling": p.config(
            "edge-popup", density=0.5, recycle_rate=0.1, recycle_every=3 if p.is_paper else 1, **s
        ),
        "laperm": p.config("laperm", sync_period=20, **s),
        "random mask, weights trained": p.config("random-mask", density=0.5, **s),
        "dense": p.config("dense", **s),
    }


NOTEBOOKS: dict[str, Callable[[_At], NotebookConfigs]] = {
    "00_quickstart": _quickstart,
    "02_selections_and_flips": _selections_and_flips,
    "03_edge_popup": _edge_popup,
    "06_mask_landscapes": _mask_landscapes,
    "08_all_methods": _all_methods,
}


def notebook_configs(notebook: str, scale: str | Scale | None = None) -> NotebookConfigs:
    """All the configs notebook ``notebook`` (its file stem, e.g. ``"00_quickstart"``) runs at ``scale``."""
    if notebook not in NOTEBOOKS:
        raise SlotlabError(f"no configs for notebook {notebook!r}; known notebooks: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook](_At(get_scale(scale)))


def run_all(configs: Any, run: Callable[[RunConfig], Any] | None = None) -> Any:
    """``load_or_run`` (or ``run``) over every config of a nested dict or list, keeping its shape; without
    ``run``, the unfinished runs train first in parallel workers (``slotlab.sweep.run_configs``)."""
    if run is None:
        found: list[RunConfig] = []
        _map_configs(configs, found.append)
        run_configs(found)
        run = load_or_run
    return _map_configs(configs, run)


def _map_configs(configs: Any, run: Callable[[RunConfig], Any]) -> Any:
    if isinstance(configs, RunConfig):
        return run(configs)
    if isinstance(configs, Mapping):
        return {key: _map_configs(value, run) for key, value in configs.items()}
    if isinstance(configs, (list, tuple)):
        return [_map_configs(value, run) for value in configs]
    raise SlotlabError(f"expected configs in dicts or lists, got {type(configs).__name__}")


def results_table(runs: Mapping[Any, Any], label: str = "run") -> pd.DataFrame:
    """One row per run of ``{label value: RunResult}``: the label, what varies, and the accuracies in percent."""
    rows = []
    for key, result in runs.items():
        c, m = result.config, result.metrics
        rows.append(
            {
                label: key,
                "method": c.method,
                "val %": round(100 * m["val_accuracy"], 2),
                "test %": round(100 * m["test_accuracy"], 2),
                "best epoch": m["best_epoch"],
                "epochs": m["epochs"],
            }
        )
    return pd.DataFrame(rows)


# --- the papers' experiments in a notebook -------------------------------------------------------------------


def show(reproduction: Reproduction, save: str | Path | None = None) -> None:
    """Display a reproduction: which figure of which paper, our mean against each published number (in percent),
    the experiment's note (what the scale or our setting changes), the figure; ``save`` (a path stem) also writes
    the figure as PDF, SVG and PNG."""
    e = reproduction.experiment
    seeds = len(reproduction.seeds)
    head = (
        f"<p><b>{html.escape(e.paper)}</b>, {html.escape(e.in_paper)}<br>{html.escape(e.question)}<br>"
        f"<code>{e.name}</code> at scale <code>{reproduction.scale.name}</code>, "
        f"{seeds} seed{'s' if seeds > 1 else ''} per point</p>"
    )
    if reproduction.failed:
        head += "<p>not finished: " + "; ".join(reproduction.failed) + "</p>"
    display(HTML(head))
    if len(reproduction.verdicts):
        shown = (
            reproduction.verdicts.drop(columns=["tolerance"])
            .fillna({"within tolerance": "not judged"})
            .rename(
                columns={"ours": "ours %", "published": "published %", "difference": "difference (points)"}
            )
        )
        display(shown.round(2))
        if reproduction.caveat:
            display(HTML(f"<p><i>{html.escape(reproduction.caveat)}</i></p>"))
    else:
        display(HTML("<p>no published number to compare with</p>"))
    if e.note:
        display(HTML(f"<p><i>{html.escape(e.note)}</i></p>"))
    if save is not None:
        save_figure(reproduction.figure, save)
    display(reproduction.figure)


def reproduction_runs(reproduction: Reproduction, root: str | Path | None = None) -> pd.DataFrame:
    """The finished runs of a reproduction, one row each: series, x, seed and the ``RunResult`` (column ``run``),
    for the analyses that need the networks themselves (similarity, value histograms, weight profiles)."""
    table = reproduction.table[["series", "x", "seed"]].copy()
    table["run"] = [open_run(runs_root(root) / name) for name in reproduction.table["run"]]
    return table


def runs_of(reproduction: Reproduction, series: str, root: str | Path | None = None) -> dict[Any, RunResult]:
    """``{(x, seed): RunResult}`` of one series of a reproduction."""
    rows = reproduction_runs(reproduction, root)
    rows = rows[rows["series"] == series]
    if rows.empty:
        known = ", ".join(dict.fromkeys(reproduction.table["series"]))
        raise SlotlabError(f"no series {series!r} in {reproduction.experiment.name}; its series: {known}")
    return {(r.x, r.seed): r.run for r in rows.itertuples()}
