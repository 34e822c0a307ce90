import math
from pathlib import Path

import pytest
import torch

from slotlab.analysis import kept_pruned_norms, weight_profiles
from slotlab.analysis.profiles import sorted_profiles
from slotlab.analysis.selection import selected_values
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.layers import SlotFactory
from slotlab.models import build_model
from slotlab.runs import load_or_run
from tests.analysis_helpers import mask_model


def test_profiles_sort_each_neurons_incoming_weights() -> None:
    weight = torch.tensor([[3.0, 1.0, 2.0], [0.0, -1.0, 5.0]])  # Linear (out=2, in=3)
    assert sorted_profiles(weight).tolist() == [[1, 2, 3], [-1, 0, 5]]
    frame = weight_profiles({"fc": weight})
    first = frame[frame["neuron"] == 0]
    assert first["value"].tolist() == [1, 2, 3] and first["quantile"].tolist() == [0, 0.5, 1]
    assert set(frame["checkpoint"]) == {"tensor"} and len(frame) == 6
    conv = torch.arange(8.0).flip(0).reshape(2, 1, 2, 2)  # Conv (out=2, in=1, 2, 2): rows of 4
    assert sorted_profiles(conv).tolist() == [[4, 5, 6, 7], [0, 1, 2, 3]]
    kept = weight_profiles(torch.randn(5, 4), max_neurons=2)
    assert sorted(set(kept["neuron"])) == [0, 4]
    with pytest.raises(SlotlabError, match="needs a \\(out, in, ...\\) weight"):
        weight_profiles(torch.randn(5))


def test_profiles_of_a_run_before_and_after_training(tmp_path: Path) -> None:
    run = load_or_run(RunConfig(dataset="synthetic", epochs=1, train_size=256, val_size=100), root=tmp_path)
    frame = weight_profiles(run, max_neurons=3)
    assert list(dict.fromkeys(frame["checkpoint"])) == ["init", "best"]
    layer = dict(run.model("init").named_modules())["body.5"]  # 100 -> 10
    chosen = selected_values(layer.values, layer.selection().long()).sort(dim=1).values
    rows = frame.query("checkpoint == 'init' and layer == 'fc3 100->10' and neuron == 9")
    assert torch.allclose(torch.tensor(rows["value"].to_numpy()), chosen[9])


def test_kept_and_pruned_norms_by_hand() -> None:
    weight = torch.tensor([3.0, 4.0, 1.0, 2.0])
    mask = torch.tensor([True, True, False, False])
    row = kept_pruned_norms((weight, mask)).iloc[0]
    assert (row["kept"], row["pruned"]) == (2, 2)
    assert row["kept_norm"] == 5.0 and row["pruned_norm"] == pytest.approx(math.sqrt(5))
    assert row["kept_rms"] == pytest.approx(5 / math.sqrt(2))
    with pytest.raises(SlotlabError, match="bool keep-mask of the same shape"):
        kept_pruned_norms((weight, mask[:3]))


def test_kept_and_pruned_norms_of_mask_and_slot_models() -> None:
    model = mask_model(seed=2, density=0.25)
    frame = kept_pruned_norms(model).set_index("layer")
    mask, weight = model[0].selection(), model[0].weight.detach()
    assert frame.loc["fc1 12->8", "kept_norm"] == pytest.approx(float(weight[mask].norm()))
    assert frame.loc["fc1 12->8", "pruned_norm"] == pytest.approx(float(weight[~mask].norm()))
    assert frame.loc["fc1 12->8", "kept"] == 24 and frame.loc["fc1 12->8", "pruned"] == 72
    slots = build_model("lenet300", SlotFactory(4), (1, 28, 28), 10)
    for module in slots.modules():
        if hasattr(module, "values"):
            torch.nn.init.normal_(module.values)
            torch.nn.init.normal_(module.scores)
    frame = kept_pruned_norms(slots).set_index("layer")
    layer = slots.body[5]
    chosen = selected_values(layer.values, layer.selection().long())
    assert frame.loc["fc3 100->10", "kept_norm"] == pytest.approx(float(chosen.norm()), rel=1e-6)
    total = float(layer.values.norm())
    assert frame.loc["fc3 100->10", "pruned_norm"] == pytest.approx(
        math.sqrt(total**2 - float(chosen.norm()) ** 2)
    )
    assert (frame.loc["fc3 100->10", "kept"], frame.loc["fc3 100->10", "pruned"]) == (1000, 3000)
