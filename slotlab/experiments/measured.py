"""Training hours of each reproduction as measured on the project's own machines, shipped with slotlab so that
``python -m slotlab reproduce --list`` states them on a fresh clone, before anything has run.

``measured.csv`` beside this file has one row per experiment and scale: seeds, runs, training hours, the device,
and the digest of the grid that was measured (``Experiment.grid_digest``). ``benchmarks/reproductions_report.py``
writes it together with the Reproductions section of ``benchmarks/RESULTS.md``. A row counts only while the
experiment's grid at that scale is still the one measured: once a run of the grid changes, its hours are unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from slotlab.experiments.base import Experiment
from slotlab.scales import Scale

MEASURED = Path(__file__).with_name("measured.csv")
COLUMNS = ["experiment", "scale", "seeds", "runs", "train_hours", "device", "grid"]


def read_measured(path: Path = MEASURED) -> pd.DataFrame:
    """The shipped measurements (an empty table where the file is missing)."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"grid": str})


def is_current(row: Mapping[str, Any], experiment: Experiment, scale: Scale) -> bool:
    """Whether a measured row is of ``experiment``'s grid as it is now."""
    return row["grid"] == experiment.grid_digest(scale, list(range(int(row["seeds"]))))


def measured_hours(
    experiment: Experiment, scale: Scale, measured: pd.DataFrame | None = None
) -> float | None:
    """The training hours measured for ``experiment``'s current grid at ``scale``, else None."""
    measured = read_measured() if measured is None else measured
    rows = measured[(measured["experiment"] == experiment.name) & (measured["scale"] == scale.name)]
    if rows.empty or not experiment.runnable or not is_current(rows.iloc[0], experiment, scale):
        return None
    return float(rows.iloc[0]["train_hours"])
