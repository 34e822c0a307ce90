"""Scales: how large the notebooks' experiments are, chosen by ``SLOTLAB_SCALE``.

| scale  | for                         | data                                         | epochs, schedule   |
|--------|-----------------------------|----------------------------------------------|--------------------|
| smoke  | CI: seconds on a CPU        | synthetic stand-ins (synthetic, -cifar)      | 1, cosine          |
| laptop | a lecture: minutes on a CPU | the real datasets                            | 6, cosine          |
| paper  | the papers' settings, a GPU | the real datasets                            | the papers'        |

A scale is data only; each method's recipe at a scale (learning rate, schedule, epochs) sits in the method's own
file (``Method.recipe``), and ``slotlab.config.scaled_config`` joins the two.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slotlab.errors import SlotlabError

ENV_VAR = "SLOTLAB_SCALE"
DEFAULT_SCALE = "laptop"


@dataclass(frozen=True)
class Scale:
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
    # sweep processes on a CPU when none are asked for; 0: one per core (``slotlab.sweep.default_workers``)
    cpu_workers: int = 0

    @property
    def is_paper(self) -> bool:
        return self.epochs is None

    def dataset(self, name: str) -> str:
        """The dataset this scale runs in place of ``name`` (the smoke scale swaps in synthetic data)."""
        return self.datasets.get(name, name)

    def short_schedule(self, epochs: int | None = None) -> dict[str, Any]:
        """The CPU scales' schedule: ``epochs`` (default: the scale's) of one cosine decay."""
        return {"epochs": epochs or self.epochs, "schedule": "cosine", "milestones": ()}


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        "smoke",
        "CI: seconds on a CPU; synthetic stand-ins for the datasets, 1 epoch",
        epochs=1,
        datasets={"mnist": "synthetic", "fashion-mnist": "synthetic", "cifar10": "synthetic-cifar"},
        ks=(1, 2, 8),
        seeds=(0, 1, 2),
        densities=(0.1, 0.5),
        cpu_workers=1,  # runs of seconds: starting a worker process would cost more than it saves
    ),
    "laptop": Scale(
        "laptop",
        "minutes on a laptop CPU: the real datasets, 6 epochs, cosine schedule",
        epochs=6,
        ks=(1, 2, 4, 8, 16),
        seeds=(0, 1, 2, 3),
        densities=(0.05, 0.1, 0.3, 0.5, 0.7),
    ),
    "paper": Scale(
        "paper",
        "the papers' settings (epochs, schedules, K up to 64): for a GPU",
        epochs=None,
        ks=(1, 2, 4, 8, 16, 32, 64),
        seeds=(0, 1, 2, 3, 4, 5, 6, 7),
        densities=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    ),
}


def get_scale(name: str | Scale | None = None) -> Scale:
    """The scale ``name``, else the one named by ``$SLOTLAB_SCALE``, else ``laptop``."""
    if isinstance(name, Scale):
        return name
    chosen = (name or os.environ.get(ENV_VAR) or DEFAULT_SCALE).strip().lower()
    if chosen not in SCALES:
        raise SlotlabError(f"unknown scale {chosen!r} (from {ENV_VAR}?); valid scales: {', '.join(SCALES)}")
    return SCALES[chosen]
