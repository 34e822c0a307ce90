"""Weight-flip rates: how many connections change their selection between consecutive snapshots.

Slot Machines (Aladago & Torresani, ICML 2021, comparing greedy and probabilistic selection) show the percentage
of connections whose selected slot changed between checkpoints, on a log scale, greedy against sampled
selection: sampled selection keeps switching. The same count on keep-masks measures mask churn in Edge-Popup and
Biprop.

    flip rate (layer l, snapshot t) = #{connections c of l : s_t(c) != s_{t-1}(c)} / #connections of l

The whole-network row (layer "all") divides the summed counts by all connections, so large layers weigh more.
The recorded choice is the deterministic one (``selection()``: the argmax of the scores for slots, also in a
sampled-selection run), so a flip is a change of the learned choice; the sampled draws themselves change at
every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from slotlab.analysis.recorder import Snapshots, load_snapshots
from slotlab.analysis.sources import (
    WHOLE_NETWORK,
    Selections,
    check_same_layout,
    is_run,
    per_run,
    selection_kind,
)
from slotlab.errors import SlotlabError

COLUMNS = ["step", "epoch", "from_step", "layer", "changed", "connections", "flip_rate"]


def changed_count(a: torch.Tensor, b: torch.Tensor) -> int:
    """Connections whose selection differs between ``a`` and ``b`` (same shape and kind)."""
    if a.shape != b.shape:
        raise SlotlabError(f"cannot compare selections of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if selection_kind(a) != selection_kind(b):
        raise SlotlabError("cannot compare a mask with slot indices; compare selections of one run")
    return int((a != b).sum())


def _sequence(source: Any) -> Iterator[tuple[int, int | None, Selections]]:
    """(step, epoch, selections) in order, from snapshots of a run or from a list of selections."""
    if isinstance(source, (Snapshots, str)) or is_run(source) or hasattr(source, "__fspath__"):
        for snapshot, selections in load_snapshots(source).selections():
            yield snapshot.step, snapshot.epoch, selections
        return
    if not isinstance(source, Sequence):
        raise SlotlabError(
            f"flip rates need a run with snapshots or a list of selections, got {type(source).__name__}"
        )
    for position, item in enumerate(source):
        if isinstance(item, torch.Tensor):
            item = {"layer": item}
        if not isinstance(item, Mapping):
            raise SlotlabError(
                f"item {position} is a {type(item).__name__}; pass tensors or {{layer: tensor}}"
            )
        yield position, None, {str(n): torch.as_tensor(t).detach().cpu() for n, t in item.items()}


def flip_rates(source: Any) -> pd.DataFrame:
    """Flip rate per layer and overall between consecutive snapshots.

    ``source``: a run (``RunResult`` or folder) recorded with ``Recorder``, its ``Snapshots``, or a list of
    selections (tensors or ``{layer: tensor}``; steps are then list positions). One row per (later snapshot,
    layer), plus the layer "all". Columns: step, epoch, from_step, layer, changed, connections, flip_rate.
    """
    rows = []
    previous: tuple[int, Selections] | None = None
    for step, epoch, selections in _sequence(source):
        if previous is not None:
            from_step, before = previous
            check_same_layout(before, selections, (f"snapshot {from_step}", f"snapshot {step}"))
            total_changed = total = 0
            for name in selections:
                changed = changed_count(before[name], selections[name])
                size = selections[name].numel()
                rows.append((step, epoch, from_step, name, changed, size, changed / max(size, 1)))
                total_changed, total = total_changed + changed, total + size
            rows.append(
                (step, epoch, from_step, WHOLE_NETWORK, total_changed, total, total_changed / max(total, 1))
            )
        previous = (step, selections)
    if not rows:
        raise SlotlabError("flip rates need at least two snapshots; record more often or train longer")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["epoch"] = frame["epoch"].astype("Int64")  # missing for plain lists
    return frame


def compare_flip_rates(runs: Mapping[str, Any] | Iterable) -> pd.DataFrame:
    """``flip_rates`` of several runs (e.g. {"greedy": run_a, "sampled": run_b}) with a leading ``run`` column."""
    return per_run(flip_rates, runs if isinstance(runs, Mapping) else list(runs))
