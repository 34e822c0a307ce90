"""The notebooks' experiments: every config a notebook runs, at each scale, so that the notebooks stay thin.

``notebook_configs("03_edge_popup", "laptop")`` gives the nested dict of configs notebook 03 trains; ``run_all``
trains (or reads back) all of them keeping the shape, and ``results_table`` lays their accuracies side by side.
Each config comes from ``slotlab.config.scaled_config``: the method's recipe at the scale (``slotlab.scales``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from slotlab.config import RunConfig, scaled_config
from slotlab.errors import SlotlabError
from slotlab.notebook_errors import install as install_error_display
from slotlab.runs import load_or_run
from slotlab.scales import Scale, get_scale

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


def _slot_machines_mnist(p: _At) -> NotebookConfigs:
    source = p.config("slots", k=8)
    return {
        "greedy": {k: p.config("slots", k=k) if k > 1 else _random_network(p) for k in p.ks},
        "sampled": {k: p.config("slots", k=k, selection="sampled") for k in p.ks if k > 1},
        "dense": p.config("dense"),
        "learned": p.config("learned", k=8),
        "source": source,
        "finetune": p.config("finetune", source=source.hash),
    }


def _selections_and_flips(p: _At) -> NotebookConfigs:
    return {"greedy": p.config("slots", k=8), "sampled": p.config("slots", k=8, selection="sampled")}


def _cifar10_gpu(p: _At) -> NotebookConfigs:
    """Slot Machines' CIFAR-10 models: Conv-2/4/6 (valid padding, dropout) at paper; Conv-2 on a subset else."""
    models = ("conv2-sm", "conv4-sm", "conv6-sm") if p.is_paper else ("conv2-sm",)
    scale = {"paper": {}, "smoke": {"train_size": 256, "val_size": 100}}.get(p.name, {"train_size": 5000})
    # K = 2 under smoke: a K = 8 Conv-2 writes ~0.7 GB of checkpoints per run, too slow for CI
    common = {"dataset": "cifar10", "augment": True, "k": 2 if p.name == "smoke" else 8, **scale}
    return {
        "slots": {m: p.config("slots", model=m, **common) for m in models},
        "learned": {m: p.config("learned", model=m, **common) for m in models},
    }


def _mask_setting(p: _At) -> dict[str, Any]:
    """Lenet-300-100 on MNIST for CPU profiles; the mask papers' Conv-4 on CIFAR-10 (with augmentation) at paper."""
    if p.is_paper:
        return {"model": "conv4", "dataset": "cifar10", "augment": True}
    return {"model": "lenet300", "dataset": "mnist"}


def _edge_popup(p: _At) -> NotebookConfigs:
    s = _mask_setting(p)
    return {
        "density": {d: p.config("edge-popup", density=d, **s) for d in p.densities},
        "init": {
            i: p.config("edge-popup", density=0.5, init=i, **s)
            for i in ("kn", "kn-scaled", "sc", "sc-scaled")
        },
        "random_mask": {d: p.config("random-mask", density=d, **s) for d in p.densities},
        "dense": p.config("dense", **s),
    }


def _biprop(p: _At) -> NotebookConfigs:
    s = _mask_setting(p)
    return {
        "density": {d: p.config("biprop", density=d, **s) for d in p.densities},
        "edge_popup": {d: p.config("edge-popup", density=d, **s) for d in p.densities},
        "variants": {
            "MPT-1/32 (binary weights)": p.config("biprop", density=0.5, **s),
            "MPT-1/32 +BN": p.config("biprop", density=0.5, learned_bn=True, **s),
            "MPT-1/1 (binary activations)": p.config("biprop", density=0.5, binary_activations=True, **s),
            "MPT-1/1 +BN": p.config("biprop", density=0.5, binary_activations=True, learned_bn=True, **s),
        },
        "dense": p.config("dense", **s),
    }


def _recycling(p: _At) -> NotebookConfigs:
    s = _mask_setting(p)
    recycle = {"recycle_rate": 0.1, "recycle_every": 3 if p.is_paper else 1}
    out: NotebookConfigs = {}
    for method in ("edge-popup", "biprop"):
        out[method] = {
            "plain": p.config(method, density=0.5, **s),
            "recycling": p.config(method, density=0.5, **recycle, **s),
            "recycling, next-lowest donors": p.config(
                method, density=0.5, recycle_donor="next-lowest", **recycle, **s
            ),
            "IteRand": p.config(method, density=0.5, iterand_rate=0.1, recycle_every=1, **s),
        }
    out["density"] = {
        d: {
            "plain": p.config("edge-popup", density=d, **s),
            "recycling": p.config("edge-popup", density=d, **recycle, **s),
        }
        for d in p.densities
    }
    return out


def _mask_landscapes(p: _At) -> NotebookConfigs:
    s = _mask_setting(p)
    return {
        method: {seed: p.config(method, density=0.5, score_seed=seed, **s) for seed in p.seeds}
        for method in ("edge-popup", "biprop")
    } | {"slots": {seed: p.config("slots", k=8, score_seed=seed, **s) for seed in p.seeds}}


def _laperm(p: _At) -> NotebookConfigs:
    periods = {"smoke": (1, 20), "laptop": (1, 20, 100, 1000)}.get(p.name, (1, 20, 100, 500, 1000))
    adam = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine", "milestones": ()}
    return {
        "adam": p.config("dense", **adam, **({"epochs": 45, "batch_size": 50} if p.is_paper else {})),
        "sync_period": {k: p.config("laperm", sync_period=k) for k in periods},
        "sparse": {d: p.config("laperm", sync_period=20, init_density=str(d)) for d in (0.5, 0.1)},
        "weight_agnostic": p.config(
            "laperm",
            model="f2",
            sync_period=250,
            shared_value=0.03,
            init_density="1/15,1/7,1/3",
            weight_decay=2e-4,
        ),
    }


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
    "01_slot_machines_mnist": _slot_machines_mnist,
    "02_selections_and_flips": _selections_and_flips,
    "03_edge_popup": _edge_popup,
    "04_biprop": _biprop,
    "05_weight_recycling": _recycling,
    "06_mask_landscapes": _mask_landscapes,
    "07_laperm": _laperm,
    "08_all_methods": _all_methods,
    "09_cifar10_gpu": _cifar10_gpu,
}


def notebook_configs(notebook: str, scale: str | Scale | None = None) -> NotebookConfigs:
    """All the configs notebook ``notebook`` (its file stem, e.g. ``"00_quickstart"``) runs at ``scale``."""
    if notebook not in NOTEBOOKS:
        raise SlotlabError(f"no configs for notebook {notebook!r}; known notebooks: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook](_At(get_scale(scale)))


def run_all(configs: Any, run: Callable[[RunConfig], Any] | None = None) -> Any:
    """``load_or_run`` (or ``run``) over every config of a nested dict or list, keeping its shape."""
    run = load_or_run if run is None else run
    if isinstance(configs, RunConfig):
        return run(configs)
    if isinstance(configs, Mapping):
        return {key: run_all(value, run) for key, value in configs.items()}
    if isinstance(configs, (list, tuple)):
        return [run_all(value, run) for value in configs]
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
