import math

import numpy as np
import pytest
import torch

from slotlab.analysis import (
    agreement,
    chance_agreement,
    chance_jaccard,
    flip_rates,
    hamming,
    jaccard,
    kept_pruned_norms,
    layer_names,
    magnitude_ranks,
    mask_similarity,
    pairwise_similarity,
    selections_of,
    similarity_matrix,
    slot_usage,
    value_histograms,
    weight_profiles,
)
from slotlab.analysis.selection import magnitude_rank, selected_values
from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers import SlotFactory
from slotlab.models import build_model
from tests.analysis_helpers import mask_model

# --- selection histograms (hand-computed) --------------------------------------------------------------------
VALUES = torch.tensor(
    [
        [[0.1, -0.5], [0.3, 0.0]],
        [[-0.2, 0.4], [-0.6, 0.05]],
        [[0.7, 0.1], [0.2, -0.9]],
    ]
)  # K = 3 values for a 2x2 weight
INDEX = torch.tensor([[2, 1], [0, 2]])  # selects 0.7, 0.4, 0.3, -0.9


def test_selected_values_and_magnitude_ranks_by_hand() -> None:
    assert torch.allclose(selected_values(VALUES, INDEX), torch.tensor([[0.7, 0.4], [0.3, -0.9]]))
    assert magnitude_rank(VALUES, INDEX).tolist() == [[2, 1], [1, 2]]
    frame = magnitude_ranks((VALUES, INDEX))
    assert frame["rank"].tolist() == [0, 1, 2]
    assert frame["count"].tolist() == [0, 2, 2] and frame["fraction"].tolist() == [0, 0.5, 0.5]
    assert frame["chance"].tolist() == pytest.approx([1 / 3] * 3)


def test_magnitude_rank_against_a_full_sort() -> None:
    gen = torch.Generator().manual_seed(3)
    values, index = torch.randn(5, 7, 6, generator=gen), torch.randint(0, 5, (7, 6), generator=gen)
    ranks = magnitude_rank(values, index)
    for i in range(7):
        for j in range(6):
            order = sorted(range(5), key=lambda k, i=i, j=j: abs(float(values[k, i, j])))
            assert ranks[i, j] == order.index(int(index[i, j]))


def test_slot_usage_by_hand() -> None:
    frame = slot_usage({"layer": (VALUES, INDEX)})
    assert frame["count"].tolist() == [1, 1, 2] and frame["fraction"].tolist() == [0.25, 0.25, 0.5]
    assert slot_usage(INDEX, k=4)["count"].tolist() == [1, 1, 2, 0]  # index tensors alone, K given
    with pytest.raises(SlotlabError, match="holds a mask, not slot indices"):
        slot_usage({"layer": INDEX > 0})  # an Edge-Popup mask is not a slot index


def test_value_histograms_by_hand() -> None:
    frame = value_histograms((VALUES, INDEX), bins=2)
    selected, initial = frame[frame["kind"] == "selected"], frame[frame["kind"] == "initial"]
    assert selected["bin_left"].tolist() == pytest.approx([-0.9, -0.1])
    assert selected["count"].tolist() == [1, 3] and initial["count"].tolist() == [4, 8]
    assert selected["density"].tolist() == pytest.approx([1 / (4 * 0.8), 3 / (4 * 0.8)])
    for part in (selected, initial):  # densities integrate to one
        assert (part["density"] * (part["bin_right"] - part["bin_left"])).sum() == pytest.approx(1)


def test_selection_analyses_read_slot_models() -> None:
    model = build_model("lenet300", SlotFactory(4), (1, 28, 28), 10)
    for _, layer in model.named_modules():
        if hasattr(layer, "values"):
            torch.nn.init.normal_(layer.values)
            torch.nn.init.normal_(layer.scores)
    ranks = magnitude_ranks(model)
    assert set(ranks["layer"]) == {"fc1 784->300", "fc2 300->100", "fc3 100->10"}
    assert ranks.groupby("layer")["count"].sum().tolist() == [784 * 300, 300 * 100, 100 * 10]
    with pytest.raises(SlotlabError, match="no slot layer"):
        magnitude_ranks(mask_model(seed=0))
    with pytest.raises(SlotlabError, match=r"values must be \(K, \*shape\)"):
        magnitude_ranks((VALUES, INDEX[:1]))


# --- flip rates ---------------------------------------------------------------------------------------------------
def test_flip_rates_of_a_known_sequence() -> None:
    index = [torch.tensor([0, 1, 2, 3]), torch.tensor([1, 1, 2, 3]), torch.tensor([1, 1, 2, 0])]
    mask = [torch.zeros(8, dtype=torch.bool) for _ in range(3)]
    mask[0][0] = True
    mask[1][:2] = True
    mask[2][:2] = True
    frame = flip_rates([{"a": i, "b": m} for i, m in zip(index, mask, strict=True)])
    rate = frame.set_index(["step", "layer"])["flip_rate"]
    assert rate[(1, "a")] == 0.25 and rate[(1, "b")] == 0.125 and rate[(1, "all")] == pytest.approx(2 / 12)
    assert rate[(2, "a")] == 0.25 and rate[(2, "b")] == 0.0 and rate[(2, "all")] == pytest.approx(1 / 12)
    assert frame["from_step"].tolist() == [0, 0, 0, 1, 1, 1]


def test_flip_rates_refuse_bad_sequences() -> None:
    with pytest.raises(SlotlabError, match="at least two snapshots"):
        flip_rates([torch.zeros(3, dtype=torch.bool)])
    with pytest.raises(SlotlabError, match="different architectures") as error:
        flip_rates([torch.zeros(3, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)])
    assert "\n" not in str(error.value)


# --- mask similarity --------------------------------------------------------------------------------------------------
A = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
B = torch.tensor([1, 0, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
C = torch.tensor([1, 1, 1, 1], dtype=torch.bool)
D = torch.tensor([1, 1, 1, 0], dtype=torch.bool)


def test_agreement_jaccard_hamming_of_known_masks() -> None:
    assert agreement(A, B) == 0.75 and jaccard(A, B) == 0.5 and hamming(A, B) == 2
    assert agreement(C, D) == 0.75 and jaccard(C, D) == 0.75 and hamming(C, D) == 1
    assert jaccard(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) == 1.0


def test_chance_values() -> None:
    # two independent random masks of density k: agreement k² + (1 - k)², Jaccard ~ k / (2 - k), i.e.
    # 50 % / 0.333 at k = 0.5 and 62.5 % / 0.143 at k = 0.25
    assert chance_agreement(0.5) == 0.5 and chance_jaccard(0.5) == pytest.approx(1 / 3)
    assert chance_agreement(0.25) == 0.625 and chance_jaccard(0.25) == pytest.approx(0.142857, abs=1e-6)
    assert chance_agreement(0.3, 0.6) == pytest.approx(0.3 * 0.6 + 0.7 * 0.4)
    assert chance_jaccard(0.3, 0.6) == pytest.approx(0.18 / (0.3 + 0.6 - 0.18))


def test_chance_values_match_random_masks() -> None:
    gen = torch.Generator().manual_seed(0)
    k, n = 0.3, 400_000
    a, b = torch.rand(n, generator=gen) < k, torch.rand(n, generator=gen) < k
    assert agreement(a, b) == pytest.approx(chance_agreement(k), abs=3e-3)
    assert jaccard(a, b) == pytest.approx(chance_jaccard(k), abs=3e-3)


def test_whole_network_jaccard_is_intersection_over_union() -> None:
    frame = mask_similarity({"l1": A, "l2": C}, {"l1": B, "l2": D}).set_index("layer")
    assert frame.loc["l1", "jaccard"] == 0.5 and frame.loc["l2", "jaccard"] == 0.75
    total = frame.loc["all"]
    assert total["jaccard"] == 5 / 8  # sum of intersections over sum of unions
    assert total["jaccard"] != pytest.approx(5 / 13)  # not the reference script's I / (I + U)
    assert total["agreement"] == 9 / 12 and total["hamming"] == 3 and total["connections"] == 12
    assert frame.loc["l1", "density_a"] == 3 / 8 and total["density_a"] == 7 / 12
    assert frame.loc["l1", "chance_agreement"] == pytest.approx((3 / 8) ** 2 + (5 / 8) ** 2)
    assert frame.loc["l1", "chance_jaccard"] == pytest.approx((3 / 8) / (2 - 3 / 8))
    assert frame.loc["all", "hamming_fraction"] == 3 / 12


def test_similarity_against_an_explicit_loop() -> None:
    gen = torch.Generator().manual_seed(5)
    a, b = torch.rand(7, 9, generator=gen) < 0.4, torch.rand(7, 9, generator=gen) < 0.6
    kept_a = {i for i, x in enumerate(a.reshape(-1).tolist()) if x}
    kept_b = {i for i, x in enumerate(b.reshape(-1).tolist()) if x}
    same = sum(x == y for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist(), strict=True))
    assert jaccard(a, b) == pytest.approx(len(kept_a & kept_b) / len(kept_a | kept_b))
    assert agreement(a, b) == pytest.approx(same / 63) and hamming(a, b) == 63 - same


def test_slot_index_similarity_by_hand() -> None:
    a, b = torch.tensor([0, 1, 2, 2], dtype=torch.uint8), torch.tensor([0, 2, 2, 1], dtype=torch.uint8)
    row = mask_similarity(a, b).set_index("layer").loc["layer"]
    assert row["agreement"] == 0.5 and row["jaccard"] == pytest.approx(2 / 6) and row["hamming"] == 2
    assert row["chance_agreement"] == pytest.approx(1 / 16 + 1 / 16 + 1 / 4)
    assert math.isnan(row["density_a"])


def test_similarity_refuses_mismatched_inputs() -> None:
    with pytest.raises(SlotlabError, match="cannot compare masks of shapes") as error:
        jaccard(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool))
    assert "\n" not in str(error.value)
    with pytest.raises(SlotlabError, match="mask with slot indices"):
        agreement(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.uint8))
    lenet = build_model("lenet300", SlotFactory(2), (1, 28, 28), 10)
    conv = build_model("conv2", SlotFactory(2), (1, 28, 28), 10)
    with pytest.raises(SlotlabError, match="different architectures") as error:
        mask_similarity(lenet, conv)
    assert "\n" not in str(error.value)
    with pytest.raises(SlotlabError, match=r"only in a: \['fc1 12->8'\], only in b: \['fc1 10->8'\]"):
        mask_similarity(mask_model(seed=0), mask_model(seed=1, widths=(10, 8, 4)))
    with pytest.raises(SlotlabError, match="bool mask or an integer slot index"):
        mask_similarity(torch.zeros(3), torch.zeros(3))


def test_pairwise_matrix_of_many_masks() -> None:
    models = {f"seed {s}": mask_model(seed=s, density=0.5) for s in range(4)}
    pairs = pairwise_similarity(models)
    assert len(pairs) == 6 * 3  # 6 pairs x (2 layers + all)
    matrix = similarity_matrix(pairs, "jaccard")
    assert list(matrix.index) == list(models) and np.allclose(matrix.to_numpy(), matrix.to_numpy().T)
    assert np.all(np.diag(matrix.to_numpy()) == 1)
    direct = mask_similarity(models["seed 1"], models["seed 3"]).set_index("layer")
    assert matrix.loc["seed 3", "seed 1"] == direct.loc["all", "jaccard"]
    per_layer = similarity_matrix(models, "agreement", layer="fc2 8->4")
    assert per_layer.loc["seed 0", "seed 2"] == direct_agreement(
        models, "seed 0", "seed 2", "1"
    )  # module 1 is fc2 8->4
    assert np.all(np.diag(similarity_matrix(pairs, "hamming").to_numpy()) == 0)
    with pytest.raises(SlotlabError, match="no layer 'fc'"):
        similarity_matrix(pairs, layer="fc")
    with pytest.raises(SlotlabError, match="metric must be one of"):
        similarity_matrix(pairs, "cosine")


def direct_agreement(models, first: str, second: str, layer: str) -> float:
    named = dict(models[first].named_modules())
    return agreement(named[layer].selection(), dict(models[second].named_modules())[layer].selection())


def test_layer_names_of_lenet300_and_conv4() -> None:
    lenet = build_model("lenet300", SlotFactory(4), (1, 28, 28), 10)
    assert layer_names(lenet) == {"body.1": "fc1 784->300", "body.3": "fc2 300->100", "body.5": "fc3 100->10"}
    conv4 = build_model("conv4", SlotFactory(2), (3, 32, 32), 10)
    names = layer_names(conv4)
    assert list(names.values()) == [
        "conv1 3->64",
        "conv2 64->64",
        "conv3 64->128",
        "conv4 128->128",
        "fc1 8192->256",
        "fc2 256->256",
        "fc3 256->10",
    ]
    modules = dict(conv4.named_modules())  # each name says the module's own shape
    for path, name in names.items():
        values = modules[path].values  # (K, out, in, ...)
        assert name.endswith(f" {values.shape[2]}->{values.shape[1]}")
    # the same names from the selections alone (a snapshot knows only the shapes), by module path
    by_shape = layer_names({path: modules[path].selection() for path in names})
    assert by_shape == names
    with pytest.raises(SlotlabError, match="takes a model"):
        layer_names(3)


def test_every_analysis_of_a_model_names_layers_readably() -> None:
    model = initialize(
        build_model("lenet300", SlotFactory(4), (1, 28, 28), 10), 0, 0
    )  # values, not empty memory
    expected = ["fc1 784->300", "fc2 300->100", "fc3 100->10"]
    for analysis in (value_histograms, magnitude_ranks, slot_usage, weight_profiles, kept_pruned_norms):
        assert list(dict.fromkeys(analysis(model)["layer"])) == expected, analysis.__name__
    assert list(selections_of(model)) == expected
