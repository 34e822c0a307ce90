"""Mask similarity landscapes: many runs' masks as points in the plane, and per-layer similarity curves.

Following the mask-diversity study of Iterative Weight Recycling (Gorbett & Whitley 2023;
``variability_analysis.py`` in the authors' code, mattgorb/parameter_tiling_and_recycling at commit 420a2c8):
masks of many runs (score seeds, methods, densities) are compared pairwise, and the distance matrix is embedded
in 2-D with classical (Torgerson) multidimensional scaling:

    B = -1/2 J D⁽²⁾ J,  J = I - 11ᵀ/n,  D⁽²⁾ the squared distances
    X = V_d Λ_d^{1/2}    (the d largest eigenpairs of B; negative eigenvalues, from non-Euclidean
                          distances, are clipped to 0)

For Euclidean distances X reproduces D exactly (up to rotation and reflection). Distances: "hamming" is the
fraction of connections that differ (1 - agreement), "jaccard" is 1 - Jaccard of the kept sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from slotlab.analysis.similarity import pairwise_similarity, similarity_matrix
from slotlab.analysis.sources import WHOLE_NETWORK, is_run, named_sources
from slotlab.errors import SlotlabError

DISTANCES = {"hamming": "hamming_fraction", "jaccard": "jaccard"}


def classical_mds(distances: np.ndarray, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (n, dims) whose Euclidean distances best match ``distances`` (n, n), and all eigenvalues.

    The eigenvalues of B come in decreasing order; their positive share in the first ``dims`` says how much of
    the configuration the plane shows.
    """
    d = np.asarray(distances, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise SlotlabError(f"MDS needs a square distance matrix, got shape {d.shape}")
    if not np.allclose(d, d.T, atol=1e-9) or np.any(np.diag(d) != 0) or np.any(d < 0):
        raise SlotlabError("MDS needs symmetric, non-negative distances with a zero diagonal")
    n = d.shape[0]
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    b = -0.5 * centring @ (d**2) @ centring
    eigenvalues, vectors = np.linalg.eigh(b)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    coords = vectors[:, :dims] * np.sqrt(np.clip(eigenvalues[:dims], 0.0, None))
    if coords.shape[1] < dims:  # fewer points than dimensions: pad with zeros
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    return coords, eigenvalues


def distance_matrix(
    pairs: pd.DataFrame | Mapping[str, Any] | list,
    metric: str = "hamming",
    layer: str = WHOLE_NETWORK,
    which: str = "best",
) -> pd.DataFrame:
    """Square run x run distances: ``hamming`` (fraction differing) or ``jaccard`` (1 - Jaccard)."""
    if metric not in DISTANCES:
        raise SlotlabError(f"distance must be one of {', '.join(DISTANCES)}, got {metric!r}")
    similarity = similarity_matrix(pairs, DISTANCES[metric], layer, which)
    distances = similarity if metric == "hamming" else 1.0 - similarity
    distances.attrs.update(metric=metric, layer=layer)
    return distances


def _varying_config(named: dict[str, Any]) -> pd.DataFrame:
    """Config fields that differ between the runs (method, density, seeds...), one row per run."""
    if not all(is_run(s) for s in named.values()):
        return pd.DataFrame(index=list(named))
    configs = pd.DataFrame([s.config.to_dict() for s in named.values()], index=list(named))
    varying = [c for c in configs.columns if configs[c].astype(str).nunique() > 1]
    return configs[varying]


def mask_landscape(
    sources: Mapping[str, Any] | list,
    metric: str = "hamming",
    layer: str = WHOLE_NETWORK,
    which: str = "best",
    accuracy: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Runs embedded in 2-D by classical MDS on their mask distances, with their accuracy.

    Columns: run, x, y, accuracy (``accuracy[run]``, else a run's test accuracy, else NaN), then every config
    field that differs between the runs (for colouring and markers). ``attrs``: metric, layer, eigenvalues,
    explained (the share of positive eigenvalue mass in the two axes).
    """
    named = named_sources(sources)
    distances = distance_matrix(pairwise_similarity(named, which), metric, layer)
    coords, eigenvalues = classical_mds(distances.to_numpy(), dims=2)
    labels = list(distances.index)

    def accuracy_of(label: str) -> float:
        if accuracy is not None:
            return float(accuracy.get(label, np.nan))
        source = named[label]
        return float(source.metrics.get("test_accuracy", np.nan)) if is_run(source) else float("nan")

    frame = pd.DataFrame(
        {"run": labels, "x": coords[:, 0], "y": coords[:, 1], "accuracy": [accuracy_of(r) for r in labels]}
    )
    config = _varying_config(named).reindex(labels)
    frame = pd.concat([frame, config.reset_index(drop=True)], axis=1)
    positive = np.clip(eigenvalues, 0, None)
    frame.attrs.update(
        metric=metric,
        layer=layer,
        eigenvalues=eigenvalues.tolist(),
        explained=float(positive[:2].sum() / positive.sum()) if positive.sum() > 0 else float("nan"),
    )
    return frame


def layer_similarity_curves(
    pairs: pd.DataFrame | Mapping[str, Any] | list, metric: str = "jaccard", which: str = "best"
) -> pd.DataFrame:
    """Per layer (in network order), the mean, std, min and max of ``metric`` over all pairs of runs.

    ``pairs`` is the frame of ``pairwise_similarity`` or the runs. Columns: layer, position, mean, std, min,
    max, chance (the mean chance value of the metric, for agreement and jaccard), pairs.
    """
    if metric not in ("agreement", "jaccard", "hamming_fraction"):
        raise SlotlabError(f"metric must be agreement, jaccard or hamming_fraction, got {metric!r}")
    frame = pairs if isinstance(pairs, pd.DataFrame) else pairwise_similarity(pairs, which)
    frame = frame[frame["layer"] != WHOLE_NETWORK]
    order = list(dict.fromkeys(frame["layer"]))
    grouped = frame.groupby("layer", sort=False)[metric]
    out = grouped.agg(["mean", "std", "min", "max", "count"]).reindex(order)
    chance_column = {"agreement": "chance_agreement", "jaccard": "chance_jaccard"}.get(metric)
    chance = (
        frame.groupby("layer", sort=False)[chance_column].mean().reindex(order) if chance_column else np.nan
    )
    out = out.assign(chance=chance).rename(columns={"count": "pairs"}).reset_index()
    out.insert(1, "position", range(len(out)))
    out.attrs["metric"] = metric
    return out[["layer", "position", "mean", "std", "min", "max", "chance", "pairs"]]
