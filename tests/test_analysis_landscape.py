from pathlib import Path

import numpy as np
import pytest
import torch

from slotlab.analysis import (
    classical_mds,
    distance_matrix,
    layer_similarity_curves,
    mask_landscape,
    mask_similarity,
    pairwise_similarity,
)
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.plot import plot_landscape
from slotlab.runs import load_or_run
from tests.analysis_helpers import mask_model


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    return np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("dims", [2, 3])
def test_mds_recovers_the_distances_of_a_known_configuration(dims: int) -> None:
    points = np.random.default_rng(dims).normal(size=(7, dims)) * [3.0, 1.0, 0.5][:dims]
    distances = pairwise_distances(points)
    coords, eigenvalues = classical_mds(distances, dims=dims)
    assert coords.shape == (7, dims)
    assert np.allclose(pairwise_distances(coords), distances, atol=1e-9)
    assert np.all(eigenvalues[:dims] > 1e-6) and np.allclose(eigenvalues[dims:], 0, atol=1e-9)


def test_mds_of_a_square() -> None:
    distances = pairwise_distances(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float))
    coords, _ = classical_mds(distances)
    assert np.allclose(pairwise_distances(coords), distances, atol=1e-9)
    assert np.allclose(coords.mean(0), 0)  # centred


def test_mds_refuses_what_is_not_a_distance_matrix() -> None:
    with pytest.raises(SlotlabError, match="square distance matrix"):
        classical_mds(np.zeros((2, 3)))
    with pytest.raises(SlotlabError, match="symmetric, non-negative"):
        classical_mds(np.array([[0.0, 1.0], [2.0, 0.0]]))


def test_landscape_of_stand_in_masks_reproduces_their_distances() -> None:
    models = {f"m{s}": mask_model(seed=s, density=0.5) for s in range(3)}
    frame = mask_landscape(models, metric="hamming", accuracy={"m0": 0.9, "m1": 0.8})
    assert frame["run"].tolist() == ["m0", "m1", "m2"]
    assert frame["accuracy"].tolist()[:2] == [0.9, 0.8] and np.isnan(frame["accuracy"].iloc[2])
    # three points with the triangle inequality embed exactly in the plane
    distances = distance_matrix(models, "hamming")
    expected = 1 - mask_similarity(models["m0"], models["m2"]).set_index("layer").loc["all", "agreement"]
    assert distances.loc["m0", "m2"] == pytest.approx(expected)
    coords = frame[["x", "y"]].to_numpy()
    assert np.allclose(pairwise_distances(coords), distances.to_numpy(), atol=1e-9)
    assert frame.attrs["explained"] == pytest.approx(1.0)
    jaccard = distance_matrix(models, "jaccard")
    assert jaccard.loc["m0", "m1"] == pytest.approx(
        1 - mask_similarity(models["m0"], models["m1"]).set_index("layer").loc["all", "jaccard"]
    )
    with pytest.raises(SlotlabError, match="distance must be one of hamming, jaccard"):
        distance_matrix(models, "cosine")


def test_layer_similarity_curves_summarise_pairs() -> None:
    models = [mask_model(seed=s, density=0.25) for s in range(4)]
    pairs = pairwise_similarity(models)
    curves = layer_similarity_curves(pairs, "jaccard")
    assert curves["layer"].tolist() == ["fc1 12->8", "fc2 8->4"] and curves["position"].tolist() == [0, 1]
    first = pairs[pairs["layer"] == "fc1 12->8"]["jaccard"]
    row = curves.iloc[0]
    assert (
        row["mean"] == pytest.approx(first.mean()) and row["min"] == first.min() and row["max"] == first.max()
    )
    assert row["pairs"] == 6 and row["chance"] == pytest.approx(0.25 / 1.75)


def test_landscape_of_real_runs_with_different_score_seeds(tmp_path: Path) -> None:
    runs = [
        load_or_run(
            RunConfig(dataset="synthetic", epochs=1, train_size=256, val_size=100, k=2, score_seed=seed),
            root=tmp_path,
        )
        for seed in range(3)
    ]
    values = [dict(r.model().named_buffers())["body.1.values"] for r in runs]
    assert torch.equal(values[0], values[1])  # same weights: only the selections differ
    frame = mask_landscape(runs)
    assert frame["run"].tolist() == [r.path.name for r in runs]
    assert frame["accuracy"].tolist() == [r.test_accuracy for r in runs]
    assert frame["score_seed"].tolist() == [0, 1, 2] and "weight_seed" not in frame.columns
    curves = layer_similarity_curves(runs, "agreement")
    assert curves["layer"].tolist() == ["fc1 784->300", "fc2 300->100", "fc3 100->10"]
    assert ((curves["mean"] > 0.45) & (curves["mean"] < 1)).all()  # K = 2: about half agree by chance


def test_a_slot_machine_landscape_is_a_figure_of_slot_index_distances() -> None:
    gen = torch.Generator().manual_seed(5)
    runs = {f"slots {s}": torch.randint(0, 4, (30, 20), generator=gen) for s in range(3)}
    runs = {name: {"fc1 20->30": index} for name, index in runs.items()}
    frame = mask_landscape(runs, metric="hamming")
    names = list(runs)
    for i, a in enumerate(
        names
    ):  # distances of the embedding: the fraction of connections choosing otherwise
        for b in names[i + 1 :]:
            differ = sum(
                int(runs[a]["fc1 20->30"][r, c] != runs[b]["fc1 20->30"][r, c])
                for r in range(30)
                for c in range(20)
            )
            pa, pb = frame.set_index("run").loc[a, ["x", "y"]], frame.set_index("run").loc[b, ["x", "y"]]
            assert float(np.hypot(*(pa - pb))) == pytest.approx(
                differ / 600, abs=1e-6
            )  # 3 points of a metric: exact in 2-D
    fig = plot_landscape(frame)
    assert len(fig.axes[0].collections[0].get_offsets()) == 3
