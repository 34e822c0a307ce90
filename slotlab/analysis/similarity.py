"""Mask similarity between runs: agreement, Jaccard, Hamming, and what chance gives.

The mask-landscape study of Iterative Weight Recycling (Gorbett & Whitley 2023; ``variability_analysis.py`` in the
authors' code, mattgorb/parameter_tiling_and_recycling at commit 420a2c8) trains many networks on identical
weights with different score seeds and compares their masks A, B per layer:

    agreement = #{c : A(c) = B(c)} / n             ("% same": kept and pruned both count)
    Jaccard   = |A ∩ B| / |A ∪ B|                  (on the kept sets)
    Hamming   = #{c : A(c) != B(c)} = n (1 - agreement)

Two independent random masks of densities a, b (a fraction a resp. b kept) give in expectation

    agreement = a b + (1 - a)(1 - b)  = k² + (1 - k)²   when a = b = k
    Jaccard  ~= a b / (a + b - a b)    = k / (2 - k)     when a = b = k  (ratio of expected counts)

Their Conv-6 runs at k = 0.5 (recomputed from the CSVs shipped with that code, ``figures/tables/``) agree on
50.8 % of the connections with Jaccard 0.34 for Edge-Popup and 57.8 % / 0.41 for Biprop, against 50 % / 0.333 for
chance; in the Edge-Popup runs only the first layer stands clearly above chance.

The whole-network row ("all") sums the counts over layers before dividing: Jaccard = Σ|A∩B| / Σ|A∪B|. (The
authors' ``variability_analysis.py`` adds the union into the intersection's denominator, so its ``jaccard_total``
is I / (I + U), which is too low; its per-layer Jaccards are right.)

Slot selections compare the same way: agreement is the fraction of connections on the same slot, Jaccard is taken
on the sets of (connection, slot) pairs, s / (2n - s) for s connections in agreement, and chance agreement is
Σ_k p_k q_k with the two runs' slot frequencies p, q (for a mask, the "slots" are kept and pruned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from slotlab.analysis.sources import (
    WHOLE_NETWORK,
    Selections,
    check_same_layout,
    named_sources,
    selection_kind,
    selections_of,
)
from slotlab.errors import SlotlabError

METRICS = ("agreement", "jaccard", "hamming", "hamming_fraction")
COLUMNS = [
    "layer",
    "connections",
    "density_a",
    "density_b",
    "agreement",
    "jaccard",
    "hamming",
    "hamming_fraction",
    "chance_agreement",
    "chance_jaccard",
]


def chance_agreement(density_a: float, density_b: float | None = None) -> float:
    """Expected agreement of two independent random masks: a b + (1 - a)(1 - b); k² + (1 - k)² for one k."""
    b = density_a if density_b is None else density_b
    return density_a * b + (1 - density_a) * (1 - b)


def chance_jaccard(density_a: float, density_b: float | None = None) -> float:
    """Expected |A∩B| / expected |A∪B| of two independent random masks: a b / (a + b - a b); k / (2 - k)."""
    b = density_a if density_b is None else density_b
    union = density_a + b - density_a * b
    return density_a * b / union if union > 0 else float("nan")


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise SlotlabError(
            f"cannot compare masks of shapes {tuple(a.shape)} and {tuple(b.shape)}; compare the same layer of "
            f"runs of the same model"
        )
    if selection_kind(a) != selection_kind(b):
        raise SlotlabError("cannot compare a mask with slot indices; compare masks with masks")
    return a.reshape(-1), b.reshape(-1)


def hamming(a: torch.Tensor, b: torch.Tensor) -> int:
    """Positions where the two selections differ."""
    a, b = _pair(a, b)
    return int((a != b).sum())


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of positions where the two selections agree (kept and pruned both count)."""
    a, b = _pair(a, b)
    return float((a == b).double().mean()) if a.numel() else float("nan")


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A∩B| / |A∪B| of two masks' kept sets (1 when both are empty); for slot indices s / (2n - s)."""
    counts = _counts(*_pair(a, b))
    return counts["intersection"] / counts["union"] if counts["union"] else 1.0


def _counts(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Counts of one layer and the expected counts of independent choices with the same frequencies."""
    n = a.numel()
    same = int((a == b).sum())
    if a.dtype == torch.bool:
        ones_a, ones_b = int(a.sum()), int(b.sum())
        intersection = int((a & b).sum())
        union = ones_a + ones_b - intersection
        da, db = (ones_a / n, ones_b / n) if n else (float("nan"),) * 2
        expected_same = n * chance_agreement(da, db)
        expected_intersection, expected_union = n * da * db, n * (da + db - da * db)
    else:  # (connection, slot) pairs: each selection holds n of them, s shared
        intersection, union = same, 2 * n - same
        k = int(max(a.max(), b.max())) + 1 if n else 1
        p = torch.bincount(a.long(), minlength=k).double() / max(n, 1)
        q = torch.bincount(b.long(), minlength=k).double() / max(n, 1)
        expected_same = n * float((p * q).sum())
        expected_intersection, expected_union = expected_same, 2 * n - expected_same
        da = db = float("nan")
    return {
        "n": n,
        "same": same,
        "intersection": intersection,
        "union": union,
        "density_a": da,
        "density_b": db,
        "expected_same": expected_same,
        "expected_intersection": expected_intersection,
        "expected_union": expected_union,
    }


def _row(layer: str, c: dict[str, float]) -> tuple:
    n = c["n"]
    return (
        layer,
        n,
        c["density_a"],
        c["density_b"],
        c["same"] / n if n else float("nan"),
        c["intersection"] / c["union"] if c["union"] else 1.0,
        n - c["same"],
        (n - c["same"]) / n if n else float("nan"),
        c["expected_same"] / n if n else float("nan"),
        c["expected_intersection"] / c["expected_union"] if c["expected_union"] else float("nan"),
    )


def compare_selections(a: Selections, b: Selections, names: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """Similarity of two sets of selections, per layer and for the whole network (layer "all")."""
    check_same_layout(a, b, names)
    rows, total = [], None
    for name in a:
        counts = _counts(*_pair(a[name], b[name]))
        rows.append(_row(name, counts))
        total = dict(counts) if total is None else {key: total[key] + counts[key] for key in counts}
    if total is None:
        raise SlotlabError("no layers to compare")
    n = total["n"]
    is_mask = all(selection_kind(t) == "mask" for t in a.values())
    # densities over the whole network; sums of per-layer densities mean nothing
    total["density_a"] = sum(int(t.sum()) for t in a.values()) / n if is_mask and n else float("nan")
    total["density_b"] = sum(int(t.sum()) for t in b.values()) / n if is_mask and n else float("nan")
    rows.append(_row(WHOLE_NETWORK, total))
    return pd.DataFrame(rows, columns=COLUMNS)


def mask_similarity(a: Any, b: Any, which: str = "best") -> pd.DataFrame:
    """Per-layer and whole-network similarity of two runs' (or models', or tensors') selections.

    Columns: layer, connections, density_a, density_b, agreement, jaccard, hamming, hamming_fraction,
    chance_agreement, chance_jaccard.
    """
    return compare_selections(selections_of(a, which), selections_of(b, which))


def pairwise_similarity(sources: Mapping[str, Any] | list, which: str = "best") -> pd.DataFrame:
    """``mask_similarity`` for every pair of runs (each pair once, a before b in the given order).

    ``sources``: a list of runs (labelled by folder name) or ``{label: run}``. Columns: run_a, run_b, then
    those of ``mask_similarity``.
    """
    named = named_sources(sources)
    if len(named) < 2:
        raise SlotlabError(f"pairwise similarity needs at least two runs, got {len(named)}")
    loaded = {label: selections_of(source, which) for label, source in named.items()}
    labels = list(loaded)
    frames = []
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            frame = compare_selections(loaded[first], loaded[second], (first, second))
            frames.append(frame.assign(run_a=first, run_b=second))
    frame = pd.concat(frames, ignore_index=True)
    return frame[["run_a", "run_b", *COLUMNS]]


def similarity_matrix(
    pairs: pd.DataFrame | Mapping[str, Any] | list,
    metric: str = "jaccard",
    layer: str = WHOLE_NETWORK,
    which: str = "best",
) -> pd.DataFrame:
    """A square run x run table of ``metric`` for ``layer`` (default: the whole network), for heat-maps.

    ``pairs`` is the frame of ``pairwise_similarity`` or the runs themselves. The diagonal holds a run compared
    with itself (1 for agreement and Jaccard, 0 for Hamming).
    """
    if metric not in METRICS:
        raise SlotlabError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    frame = pairs if isinstance(pairs, pd.DataFrame) else pairwise_similarity(pairs, which)
    rows = frame[frame["layer"] == layer]
    if rows.empty:
        known = ", ".join(dict.fromkeys(frame["layer"]))
        raise SlotlabError(f"no layer {layer!r} in the pairs; layers: {known}")
    labels = list(dict.fromkeys([*rows["run_a"], *rows["run_b"]]))
    same = 0.0 if metric.startswith("hamming") else 1.0
    matrix = pd.DataFrame(np.full((len(labels), len(labels)), same), index=labels, columns=labels)
    for run_a, run_b, value in zip(rows["run_a"], rows["run_b"], rows[metric], strict=True):
        matrix.loc[run_a, run_b] = matrix.loc[run_b, run_a] = value
    matrix.index.name, matrix.columns.name = "run", "run"
    matrix.attrs.update(metric=metric, layer=layer)
    return matrix
