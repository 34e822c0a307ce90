"""Sanity controls of slot machines and LaPerm networks: they change what they say, keep what they should, are
reproducible from a seed and differ across seeds."""

import pytest
import torch

from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.layers import DenseFactory, SlotFactory
from slotlab.layers.slot import SlotLayer
from slotlab.models import build_model
from slotlab.sanity import (
    controls,
    permutation_controls,
    random_row_permutation,
    random_selection,
    shuffled_layer_values,
    shuffled_selection,
)

SHAPE = (1, 28, 28)


def slot_machine(sharing: str = "none") -> torch.nn.Module:
    return initialize(build_model("f2", SlotFactory(4, sharing=sharing), SHAPE, 10), 0, 1).eval()


def dense() -> torch.nn.Module:
    return initialize(build_model("f2", DenseFactory(), SHAPE, 10), 0, 1)


def slot_layers(model: torch.nn.Module) -> list[SlotLayer]:
    return [m for m in model.modules() if isinstance(m, SlotLayer)]


@pytest.mark.parametrize("sharing", ["none", "layer"])
def test_random_selection_keeps_the_values_and_picks_among_them(sharing: str) -> None:
    model = slot_machine(sharing)
    a, b, again = random_selection(model, 1), random_selection(model, 2), random_selection(model, 1)
    for layer, la, lb, lc in zip(*(slot_layers(m) for m in (model, a, b, again)), strict=True):
        assert torch.equal(la.values, layer.values)
        chosen = la.effective_weight().detach()
        # explicit: each connection's value is one of its own K values
        assert (chosen.unsqueeze(0) == layer.values).any(dim=0).all()
        assert not torch.equal(la.selection(), layer.selection())
        assert not torch.equal(la.selection(), lb.selection()) and torch.equal(la.selection(), lc.selection())
        share = (la.selection() == layer.selection()).float().mean()
        assert 0.15 < share < 0.35  # about 1 / K agree by chance


def test_shuffled_selection_keeps_each_layers_values_as_a_multiset() -> None:
    model = slot_machine()
    found = [layer.effective_weight().detach() for layer in slot_layers(model)]
    a, b, again = shuffled_selection(model, 1), shuffled_selection(model, 2), shuffled_selection(model, 1)
    weights = [[m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)] for net in (a, b, again)]
    for w, wa, wb, wc in zip(found, *weights, strict=True):
        assert torch.equal(w.flatten().sort().values, wa.flatten().sort().values)
        assert not torch.equal(w, wa) and not torch.equal(wa, wb) and torch.equal(wa, wc)


def test_permutation_controls_keep_rows_or_layers_and_follow_the_seed() -> None:
    model = dense()
    rows_a, rows_b, rows_c = (random_row_permutation(model, s) for s in (1, 2, 1))
    shuf_a, shuf_b = shuffled_layer_values(model, 1), shuffled_layer_values(model, 2)
    for p, ra, rb, rc, sa, sb in zip(
        *(m.parameters() for m in (model, rows_a, rows_b, rows_c, shuf_a, shuf_b)), strict=True
    ):
        for i in range(p.shape[0]):  # explicit: each row holds the same values
            assert sorted(p[i].tolist()) == sorted(ra[i].tolist())
        assert not torch.equal(ra, p) and not torch.equal(ra, rb) and torch.equal(ra, rc)
        assert torch.equal(p.flatten().sort().values, sa.flatten().sort().values)
        assert not torch.equal(sa, sb)
        changed_rows = [sorted(p[i].tolist()) != sorted(sa[i].tolist()) for i in range(p.shape[0])]
        assert all(changed_rows)  # values crossed between rows
    assert set(permutation_controls(model)) == {"found", "random row permutation", "shuffled layer values"}


def test_controls_dispatches_and_bad_input_is_one_line() -> None:
    assert set(controls(slot_machine())) == {"found", "random selection", "shuffled selection"}
    with pytest.raises(SlotlabError, match="slot controls need a slot machine"):
        random_selection(dense())
