"""Profiles: how large the notebooks' experiments are, chosen by ``SLOTLAB_PROFILE``.

| profile | for                         | data                                         | epochs, schedule   |
|---------|-----------------------------|----------------------------------------------|--------------------|
| smoke   | CI: seconds on a CPU        | synthetic stand-ins (synthetic, -cifar)      | 1, cosine          |
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
from slotlab.methods import METHODS

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
    densities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)  # densities of a mask sweep (fraction kept)

    @property
    def is_paper(self) -> bool:
        return self.epochs is None

    def dataset(self, name: str) -> str:
        """The dataset this profile runs in place of ``name`` (the smoke profile swaps in synthetic data)."""
        return self.datasets.get(name, name)

    def config(self, method: str = "slots", **choices: Any) -> RunConfig:
        """A full config for ``method`` with ``choices`` (model, dataset, k, seeds...) at this profile's scale.

        What the caller leaves out comes from the method's recipe here, else from the method's own defaults
        (``Method.defaults``, where a method declares them); the dataset is swapped where the profile does so.
        """
        known = {f.name for f in fields(RunConfig)}
        unknown = sorted(set(choices) - known)
        if unknown:
            raise SlotlabError(f"unknown config fields {unknown}; valid fields: {', '.join(sorted(known))}")
        chosen = {"model": "lenet300", "dataset": "mnist", **choices, "method": method}
        chosen["dataset"] = self.dataset(chosen["dataset"])
        scale: dict[str, Any] = {"train_size": self.train_size, "val_size": self.val_size}
        defaults = dict(getattr(METHODS.get(method), "defaults", None) or {})
        return RunConfig(**{**scale, **defaults, **recipe(method, self, chosen), **chosen})


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "CI: seconds on a CPU; synthetic stand-ins for the datasets, 1 epoch",
        epochs=1,
        datasets={"mnist": "synthetic", "fashion-mnist": "synthetic", "cifar10": "synthetic-cifar"},
        ks=(1, 2, 8),
        seeds=(0, 1, 2),
        densities=(0.1, 0.5),
    ),
    "laptop": Profile(
        "laptop",
        "minutes on a laptop CPU: the real datasets, 6 epochs, cosine schedule",
        epochs=6,
        ks=(1, 2, 4, 8, 16),
        seeds=(0, 1, 2, 3),
        densities=(0.05, 0.1, 0.3, 0.5, 0.7),
    ),
    "paper": Profile(
        "paper",
        "the papers' settings (epochs, schedules, K up to 64): for a GPU",
        epochs=None,
        ks=(1, 2, 4, 8, 16, 32, 64),
        seeds=(0, 1, 2, 3, 4, 5, 6, 7),
        densities=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
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
    """Edge-Popup / Biprop (REFERENCE §2.4, §3.4): SGD lr 0.1, momentum 0.9, wd 1e-4 on the scores, cosine,
    100 epochs (250 with recycling, as Iterative Weight Recycling trains); binary activations: Adam lr 0.1 without
    weight decay (the reference code's Adam branch passes none)."""
    common: dict[str, Any] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
    if chosen.get("binary_activations"):
        common = {"lr": 0.1, "weight_decay": 0.0, "optimizer": "adam"}
    if profile.is_paper:
        recycled = chosen.get("recycle_rate", 0) or chosen.get("iterand_rate", 0)
        return {**common, "schedule": "cosine", "milestones": (), "epochs": 250 if recycled else 100}
    return {**common, **_short(profile)}


def _random_mask_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The weights trained under a fixed random mask: the dense baselines' recipe (REFERENCE §2.4: lr 0.01, cosine,
    100 epochs; lr 0.05 for the short profiles)."""
    common = {"momentum": 0.9, "weight_decay": 1e-4, "optimizer": "sgd"}
    if profile.is_paper:
        return {**common, "lr": 0.01, "schedule": "cosine", "milestones": (), "epochs": 100}
    return {**common, **_short(profile), "lr": 0.05}


def _laperm_recipe(profile: Profile, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """LaPerm (REFERENCE §5.4): Adam lr 1e-3 inside; F2 25 epochs at batch 128, Lenet and conv 45 epochs at
    batch 50 (cosine in place of the notebooks' 0.95^epoch decay)."""
    common: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3}
    if profile.is_paper:
        f2 = chosen.get("model") == "f2"
        return {
            **common,
            "schedule": "cosine",
            "milestones": (),
            "epochs": 25 if f2 else 45,
            "batch_size": 128 if f2 else 50,
        }
    return {**common, **_short(profile)}


RECIPES: dict[str, Recipe] = {
    "edge-popup": _mask_recipe,
    "biprop": _mask_recipe,
    "random-mask": _random_mask_recipe,
    "laperm": _laperm_recipe,
    "slots": _slots_recipe,
    "dense": _dense_recipe,
    "learned": _dense_recipe,
    "finetune": _finetune_recipe,
}


# The method-specific choices the Explorer offers; fields a method ignores stay at their defaults, so that they do
# not change its config hash. A method missing here gets the choices every method has (model, data, seeds).
METHOD_CHOICES: dict[str, tuple[str, ...]] = {
    "slots": ("k", "selection"),
    "learned": ("k",),
    "finetune": ("source",),
    "dense": (),
    "laperm": (),
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


def _selections_and_flips(p: Profile) -> NotebookConfigs:
    return {"greedy": p.config("slots", k=8), "sampled": p.config("slots", k=8, selection="sampled")}


def _cifar10_gpu(p: Profile) -> NotebookConfigs:
    """Slot Machines' CIFAR-10 models: Conv-2/4/6 (valid padding, dropout) at paper; Conv-2 on a subset else."""
    models = ("conv2-sm", "conv4-sm", "conv6-sm") if p.is_paper else ("conv2-sm",)
    scale = {"paper": {}, "smoke": {"train_size": 256, "val_size": 100}}.get(p.name, {"train_size": 5000})
    # K = 2 under smoke: a K = 8 Conv-2 writes ~0.7 GB of checkpoints per run, too slow for CI
    common = {"dataset": "cifar10", "augment": True, "k": 2 if p.name == "smoke" else 8, **scale}
    return {
        "slots": {m: p.config("slots", model=m, **common) for m in models},
        "learned": {m: p.config("learned", model=m, **common) for m in models},
    }


def _mask_setting(p: Profile) -> dict[str, Any]:
    """Lenet-300-100 on MNIST for CPU profiles; the mask papers' Conv-4 on CIFAR-10 (with augmentation) at paper."""
    if p.is_paper:
        return {"model": "conv4", "dataset": "cifar10", "augment": True}
    return {"model": "lenet300", "dataset": "mnist"}


def _edge_popup(p: Profile) -> NotebookConfigs:
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


def _biprop(p: Profile) -> NotebookConfigs:
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


def _recycling(p: Profile) -> NotebookConfigs:
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


def _mask_landscapes(p: Profile) -> NotebookConfigs:
    s = _mask_setting(p)
    return {
        method: {seed: p.config(method, density=0.5, score_seed=seed, **s) for seed in p.seeds}
        for method in ("edge-popup", "biprop")
    } | {"slots": {seed: p.config("slots", k=8, score_seed=seed, **s) for seed in p.seeds}}


def _laperm(p: Profile) -> NotebookConfigs:
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


def _all_methods(p: Profile) -> NotebookConfigs:
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


NOTEBOOKS: dict[str, Callable[[Profile], NotebookConfigs]] = {
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
