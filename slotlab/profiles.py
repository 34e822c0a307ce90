"""Profiles: how large the notebooks' experiments are, chosen by ``SLOTLAB_PROFILE``.

| profile | for                         | data                                         | epochs, schedule   |
|---------|-----------------------------|----------------------------------------------|--------------------|
| smoke   | CI: seconds on a CPU        | synthetic stand-ins (synthetic, -cifar)      | 2, cosine          |
| laptop  | a lecture: minutes on a CPU | the real datasets                            | 6, cosine          |
| paper   | the papers' settings, a GPU | the real datasets                            | the papers'        |

A profile turns "a slot machine with K = 8 on Lenet-300-100" into a full ``RunConfig``: it fills in the method's
recipe (learning rate, weight decay, schedule, epochs) at its scale and swaps the dataset where it must. Fields the
caller names always win. ``notebook_configs(notebook)`` gives a notebook all the configs it runs, so that the
experiments live here and the notebooks stay thin.

Recipes (REFERENCE §1.4, §7.5). Paper, Slot Machines (Aladago & Torresani 2021, as in the paper rather than the
released code): SGD momentum 0.9, weight decay 1e-4 on the scores, greedy lr 0.2 (K <= 8) or 0.1 (K > 8),
sampled lr 25, warm restarts at epochs 25 and 75, 200 epochs (220 for VGG-19); the learned baseline and
finetuning use lr 0.01 (released code). Laptop and smoke keep the learning rates of the slots and shorten the
run to a cosine schedule; dense and learned baselines use lr 0.05 there, which converges in a few epochs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from slotlab.config import RunConfig
from slotlab.errors import SlotlabError

ENV_VAR = "SLOTLAB_PROFILE"
DEFAULT_PROFILE = "laptop"


@dataclass(frozen=True)
class Profile:
    """The scale of a notebook's runs: data, epochs, the values swept, and the seeds repeated."""

    name: str
    description: str
    epochs: int | None  # None: each method's paper epochs
    datasets: Mapping[str, str] = field(default_factory=dict)  # dataset substitutions (smoke: synthetic)
    train_size: int = 0  # 0: the whole training split
    val_size: int = -1  # -1: the dataset's default
    ks: tuple[int, ...] = (1, 2, 4, 8, 16)  # K values of a sweep
    seeds: tuple[int, ...] = (0, 1)  # seeds of repeated runs (score seeds in a mask landscape)

    @property
    def is_paper(self) -> bool:
        return self.epochs is None

    def dataset(self, name: str) -> str:
        """The dataset this profile runs in place of ``name`` (the smoke profile swaps in synthetic data)."""
        return self.datasets.get(name, name)

    def config(self, method: str = "slots", **choices: Any) -> RunConfig:
        """A full config for ``method`` with ``choices`` (model, dataset, k, seeds...) at this profile's scale.

        The method's recipe supplies what the caller leaves out; the dataset is swapped where the profile does so.
        """
        known = {f.name for f in fields(RunConfig)}
        unknown = sorted(set(choices) - known)
        if unknown:
            raise SlotlabError(f"unknown config fields {unknown}; valid fields: {', '.join(sorted(known))}")
        chosen = {"model": "lenet300", "dataset": "mnist", **choices, "method": method}
        chosen["dataset"] = self.dataset(chosen["dataset"])
        scale: dict[str, Any] = {"train_size": self.train_size, "val_size": self.val_size}
        return RunConfig(**{**scale, **recipe(method, self, chosen), **chosen})


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "CI: seconds on a CPU; synthetic stand-ins for the datasets, 2 epochs",
        epochs=2,
        datasets={"mnist": "synthetic", "fashion-mnist": "synthetic", "cifar10": "synthetic-cifar"},
        ks=(1, 2, 8),
        seeds=(0, 1),
    ),
    "laptop": Profile(
        "laptop",
        "minutes on a laptop CPU: the real datasets, 6 epochs, cosine schedule",
        epochs=6,
        ks=(1, 2, 4, 8, 16),
        seeds=(0, 1, 2),
    ),
    "paper": Profile(
        "paper",
        "the papers' settings (epochs, schedules, K up to 64): for a GPU",
        epochs=None,
        ks=(1, 2, 4, 8, 16, 32, 64),
        seeds=(0, 1, 2, 3, 4),
    ),
}


def get_profile(name: str | Profile | None = None) -> Profile:
    """The profile ``name``, else the one named by ``$SLOTLAB_PROFILE``, else ``laptop``."""
    if isinstance(name, Profile):
        return name
    chosen = (name or os.environ.get(ENV_VAR) or DEFAULT_PROFILE).strip().lower()
    if chosen not in PROFILES:
        raise SlotlabError(
            f"unknown profile {chosen!r} (from {ENV_VAR}?); valid profiles: {', '.join(PROFILES)}"
        )
    return PROFILES[chosen]


# --- recipes: the hyperparameters of each method at a profile -----------------------------------------------

Recipe = Callable[[Profile, Mapping[str, Any]], dict[str, Any]]


def _paper_epochs(model: str, slots: bool) -> int:
    """Slot Machines paper: 200 epochs for slot machines (220 VGG-19); learned baselines 200 Lenet, 330 Conv-2/4/6,
    320 VGG-19."""
    if slots:
        return 220 if model == "vgg19" else 200
    if model == "lenet300":
        return 200
    return 320 if model == "vgg19" else 330


def _short(profile: Profile, epochs: int | None = None) -> dict[str, Any]:
    return {"epochs": epochs or profile.epochs, "schedule": "cosine", "milestones": ()}


def _restarts() -> dict[str, Any]:
    return {"schedule": "restarts", "milestones": (25, 75)}


def _slots_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    k = int(chosen.get("k", RunConfig.k))
    sampled = chosen.get("selection", "greedy") == "sampled"
    lr = 25.0 if sampled else (0.2 if k <= 8 else 0.1)
    common = {"lr": lr, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
    if profile.is_paper:
        return {**common, **_restarts(), "epochs": _paper_epochs(chosen["model"], slots=True)}
    return {**common, **_short(profile)}


def _dense_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    common = {"momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
    if profile.is_paper:
        return {**common, **_restarts(), "lr": 0.01, "epochs": _paper_epochs(chosen["model"], slots=False)}
    return {**common, **_short(profile), "lr": 0.05}


def _finetune_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    common = {"momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd", "lr": 0.01}
    if profile.is_paper:
        return {**common, **_restarts(), "epochs": _paper_epochs(chosen["model"], slots=False) // 2}
    return {**common, **_short(profile, max(1, profile.epochs // 2))}


def _mask_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Edge-Popup / Biprop (REFERENCE §2.4, §3.4): SGD 0.1, momentum 0.9, wd 1e-4 on the scores, cosine, 100
    epochs in the papers."""
    common = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
    if profile.is_paper:
        return {**common, "schedule": "cosine", "milestones": (), "epochs": 100}
    return {**common, **_short(profile)}


RECIPES: dict[str, Recipe] = {
    "slots": _slots_recipe,
    "dense": _dense_recipe,
    "learned": _dense_recipe,
    "finetune": _finetune_recipe,
    "edge-popup": _mask_recipe,
    "biprop": _mask_recipe,
    "random-mask": _dense_recipe,
}


# The method-specific choices the Explorer offers; fields a method ignores stay at their defaults, so that they do
# not change its config hash. A method missing here gets the choices every method has (model, data, seeds).
METHOD_CHOICES: dict[str, tuple[str, ...]] = {
    "slots": ("k", "selection"),
    "learned": ("k",),
    "finetune": ("source",),
    "dense": (),
    "edge-popup": ("density",),
    "biprop": ("density",),
    "random-mask": ("density",),
}


def method_choices(method: str) -> tuple[str, ...]:
    """The method-specific fields (``k``, ``density``, ``selection``, ``source``...) that ``method`` uses."""
    known = {f.name for f in fields(RunConfig)}
    return tuple(name for name in METHOD_CHOICES.get(method, ()) if name in known)


def recipe(method: str, profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The fields ``method``'s recipe sets at ``profile``; a method without a recipe gets the profile's epochs."""
    if method in RECIPES:
        return RECIPES[method](profile, chosen)
    return {} if profile.is_paper else _short(profile)


# --- the notebooks' experiments ------------------------------------------------------------------------------

NotebookConfigs = dict[str, Any]  # name -> RunConfig, or a list / dict of RunConfigs (a sweep)


def _random_network(p: Profile, **choices: Any) -> RunConfig:
    """K = 1: one value per connection, nothing to choose; every epoch evaluates the same network, so one will do."""
    return p.config("slots", k=1, epochs=1, **choices)


def _quickstart(p: Profile) -> NotebookConfigs:
    return {
        "slots": p.config("slots", k=8),
        "random": _random_network(p),
        "dense": p.config("dense"),
    }


def _slot_machines_mnist(p: Profile) -> NotebookConfigs:
    source = p.config("slots", k=8)
    return {
        "greedy": {k: p.config("slots", k=k) if k > 1 else _random_network(p) for k in p.ks},
        "sampled": {k: p.config("slots", k=k, selection="sampled") for k in p.ks if k > 1},
        "dense": p.config("dense"),
        "learned": p.config("learned", k=8),
        "source": source,
        "finetune": p.config("finetune", source=source.hash),
    }


def _cifar10_gpu(p: Profile) -> NotebookConfigs:
    """Slot Machines' CIFAR-10 models: Conv-2/4/6 (valid padding, dropout) at paper; Conv-2 on a subset else."""
    models = ("conv2-sm", "conv4-sm", "conv6-sm") if p.is_paper else ("conv2-sm",)
    scale = {"paper": {}, "smoke": {"train_size": 256, "val_size": 100}}.get(p.name, {"train_size": 5000})
    common = {"dataset": "cifar10", "augment": True, "k": 8, **scale}
    return {
        "slots": {m: p.config("slots", model=m, **common) for m in models},
        "learned": {m: p.config("learned", model=m, **common) for m in models},
    }


NOTEBOOKS: dict[str, Callable[[Profile], NotebookConfigs]] = {
    "00_quickstart": _quickstart,
    "01_slot_machines_mnist": _slot_machines_mnist,
    "09_cifar10_gpu": _cifar10_gpu,
}


def notebook_configs(notebook: str, profile: str | Profile | None = None) -> NotebookConfigs:
    """All the configs notebook ``notebook`` (its file stem, e.g. ``"00_quickstart"``) runs at ``profile``."""
    if notebook not in NOTEBOOKS:
        raise SlotlabError(f"no configs for notebook {notebook!r}; known notebooks: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook](get_profile(profile))


def run_all(configs: Any, run: Callable[[RunConfig], Any] | None = None) -> Any:
    """``load_or_run`` (or ``run``) over every config of a nested dict or list, keeping its shape."""
    if run is None:
        from slotlab.runs import load_or_run as run
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
