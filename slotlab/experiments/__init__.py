"""The papers' experiments, reproducible by name: ``python -m slotlab reproduce NAME`` (``slotlab.reproduce``).

One module per paper lists its figures and tables as ``Experiment`` objects (``slotlab.experiments.base``),
those slotlab cannot run yet included, marked with what they need.
"""

from __future__ import annotations

from slotlab.errors import SlotlabError
from slotlab.experiments import biprop, edge_popup, iwr, laperm, slot_machines
from slotlab.experiments.base import Experiment, Point, Published

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for module in (slot_machines, edge_popup, biprop, iwr, laperm) for e in module.EXPERIMENTS
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise SlotlabError(
            f"unknown experiment {name!r}; `python -m slotlab reproduce --list` lists them: {', '.join(EXPERIMENTS)}"
        )
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "Experiment", "Point", "Published", "get_experiment"]
