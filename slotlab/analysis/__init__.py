"""Analyses of found networks; each returns a tidy pandas DataFrame (one row per observation).

| module        | what                                                                | paper                      |
|---------------|---------------------------------------------------------------------|----------------------------|
| recorder      | ``Recorder`` callback: selection snapshots in the run folder        |                            |
| selection     | selected values vs the initial distribution, magnitude rank, slots  | Slot Machines              |
| flips         | fraction of connections whose selection changed between snapshots   | Slot Machines              |
| similarity    | agreement, Jaccard, Hamming between runs, chance baselines           | Iterative Weight Recycling |
| landscape     | classical MDS of mask distances, per-layer similarity curves         | Iterative Weight Recycling |
| profiles      | sorted incoming-weight profiles; norms of kept and pruned weights    | LaPerm; IWR                |

Every analysis takes a run (``RunResult`` or run folder), a model, or plain tensors, and names layers as
``layer_names`` does ("fc1 784->300", "conv2 64->64"; convolutions and linear layers numbered apart), the
snapshots of the recorder too. Figures: ``slotlab.plot``.
"""

from slotlab.analysis.flips import compare_flip_rates, flip_rates
from slotlab.analysis.landscape import classical_mds, distance_matrix, layer_similarity_curves, mask_landscape
from slotlab.analysis.profiles import kept_pruned_norms, weight_profiles
from slotlab.analysis.recorder import Recorder, Snapshots, load_snapshots
from slotlab.analysis.selection import magnitude_ranks, slot_usage, value_histograms
from slotlab.analysis.similarity import (
    agreement,
    chance_agreement,
    chance_jaccard,
    hamming,
    jaccard,
    mask_similarity,
    pairwise_similarity,
    similarity_matrix,
)
from slotlab.analysis.sources import layer_names, per_run, selections_of

__all__ = [
    "Recorder",
    "Snapshots",
    "agreement",
    "chance_agreement",
    "chance_jaccard",
    "classical_mds",
    "compare_flip_rates",
    "distance_matrix",
    "flip_rates",
    "hamming",
    "jaccard",
    "kept_pruned_norms",
    "layer_names",
    "layer_similarity_curves",
    "load_snapshots",
    "magnitude_ranks",
    "mask_landscape",
    "mask_similarity",
    "pairwise_similarity",
    "per_run",
    "selections_of",
    "similarity_matrix",
    "slot_usage",
    "value_histograms",
    "weight_profiles",
]
