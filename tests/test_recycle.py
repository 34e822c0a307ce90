from pathlib import Path

import pytest
import torch

from slotlab.callback import Callback
from slotlab.config import RunConfig
from slotlab.data import make_splits
from slotlab.errors import SlotlabError
from slotlab.layers.edge_popup import EdgePopupLayer
from slotlab.recycle import IteRand, WeightRecycling, iterand_layer, recycle_layer, value_records
from slotlab.runs import initial_network, load_or_run, make_trainer
from tests.interrupt import Interrupt
from tests.test_edge_popup import masked_layers


def fresh_layer(
    seed: int, ties: bool = False, init: str = "kn", density: float = 0.5, device: torch.device | str = "cpu"
) -> EdgePopupLayer:
    """Drawn on the CPU (the same layer on every device), then moved to ``device``."""
    layer = EdgePopupLayer((9, 7), density=density, init=init)
    layer.init_values(torch.Generator().manual_seed(seed))
    layer.init_scores(torch.Generator().manual_seed(seed + 100))
    if ties:
        with torch.no_grad():
            layer.scores.copy_(
                torch.randint(-3, 4, (9, 7), generator=torch.Generator().manual_seed(seed)).float()
            )
    return layer.to(device)


def reference_recycle(weight: list[float], scores: list[float], rate: float, donor: str) -> list[float]:
    """The rule written out: positions by (|s|, index) ascending; low i <- donor i, donors read first."""
    n = int(rate * len(weight))
    order = sorted(range(len(weight)), key=lambda i: (abs(scores[i]), i))
    donors = order[len(weight) - n :] if donor == "top" else order[n : 2 * n]
    out = list(weight)
    for low, high in zip(order[:n], donors, strict=True):
        out[low] = weight[high]
    return out


@pytest.mark.parametrize("donor", ["top", "next-lowest"])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5])
@pytest.mark.parametrize("ties", [False, True])
def test_recycling_moves_exactly_n_values_from_the_right_donors(
    donor: str, rate: float, ties: bool, device: torch.device
) -> None:
    for seed in range(5):
        layer = fresh_layer(seed, ties, device=device)
        weight, scores = layer.weight.reshape(-1).tolist(), layer.scores.detach().reshape(-1).tolist()
        scores_before = layer.scores.detach().clone()
        moved = recycle_layer(layer, rate, donor)
        assert moved == int(rate * 63)
        assert layer.weight.reshape(-1).tolist() == reference_recycle(weight, scores, rate, donor)
        assert torch.equal(layer.scores.detach(), scores_before)  # scores untouched
        changed = int((layer.weight.reshape(-1) != torch.tensor(weight, device=device)).sum())
        assert changed == moved  # continuous init: every receiver changes, nothing else does


def test_recycling_at_most_the_pruned_fraction_leaves_the_function_unchanged(device: torch.device) -> None:
    layer = fresh_layer(0, density=0.6, device=device)
    x = torch.randn(5, 7).to(device)
    before = layer(x).detach()
    recycle_layer(layer, 0.4, "top")
    assert torch.equal(layer(x).detach(), before)


def test_iterand_touches_only_pruned_positions_and_is_seeded(device: torch.device) -> None:
    layer = EdgePopupLayer((60, 50), density=0.3, init="sc")
    layer.init_values(torch.Generator().manual_seed(0))
    layer.init_scores(torch.Generator().manual_seed(1))
    layer.to(device)
    before, kept = layer.weight.clone(), layer.selection()
    # IteRand's generator is a CPU one on every device (slotlab.recycle.IteRand): the same edit everywhere
    redrawn = iterand_layer(layer, 0.5, torch.Generator().manual_seed(7))
    changed = layer.weight != before
    assert not changed[kept].any()
    pruned = int((~kept).sum())
    # a redraw of a signed constant changes the value when the sign flips: half of the redrawn ones
    assert abs(redrawn / pruned - 0.5) < 0.05 and abs(int(changed.sum()) / redrawn - 0.5) < 0.08
    assert set(layer.weight.abs().unique().tolist()) == set(
        before.abs().unique().tolist()
    )  # same distribution
    # the same edit on the CPU: the device does not change it
    again = EdgePopupLayer((60, 50), density=0.3, init="sc")
    again.load_state_dict({"weight": before.cpu(), "scores": layer.scores.detach().cpu()})
    iterand_layer(again, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(again.weight, layer.weight.cpu())


class RecordWeights(Callback):
    def __init__(self) -> None:
        self.epochs = []

    def on_epoch_end(self, trainer) -> None:
        self.epochs.append([m.weight.clone() for m in masked_layers(trainer.model)])


QUICK = dict(dataset="synthetic", epochs=5, train_size=256, val_size=100, batch_size=64)


def test_recycling_runs_every_f_epochs_but_not_after_the_last_and_counts_distinct_values(
    device: torch.device,
) -> None:
    config = RunConfig(method="edge-popup", init="kn-scaled", recycle_rate=0.2, recycle_every=2, **QUICK)
    splits = make_splits("synthetic", 100, 0, 256)
    model = initial_network(config, splits.info.input_shape, splits.info.num_classes)
    initial = [m.weight.clone() for m in masked_layers(model)]
    probe = RecordWeights()
    trainer = make_trainer(config, model, splits, device, [probe], progress=False)
    recycler = next(cb for cb in trainer.callbacks if isinstance(cb, WeightRecycling))
    trainer.fit()
    changes = [
        any(not torch.equal(a.cpu(), b.cpu()) for a, b in zip(prev, cur, strict=True))
        for prev, cur in zip([initial, *probe.epochs], probe.epochs, strict=False)
    ]
    assert changes == [False, True, False, True, False]  # after epochs 2 and 4 of 5
    history = recycler.history
    assert (
        history["event"].tolist().count("recycle") == 2 * 3 and history["event"].tolist().count("init") == 3
    )
    numels = {name: m.weight.numel() for name, m in model.named_modules() if m in masked_layers(model)}
    for name, rows in history.groupby("layer"):
        distinct, moved = rows["distinct"].tolist(), rows["moved"].tolist()
        n = int(0.2 * numels[name])
        assert moved == [0, n, n]
        # copies add no value; the n receivers' values (nearly all distinct in float32 Kaiming normal) go
        assert distinct[0] - n <= distinct[1] <= distinct[0] - 0.99 * n
        assert distinct[1] - n <= distinct[2] < distinct[1]


@pytest.mark.parametrize("unit, every", [("epoch", 1), ("step", 3)])
def test_recycling_and_iterand_resume_bit_identical(
    unit: str, every: int, tmp_path: Path, device: torch.device, deterministic
) -> None:
    config = RunConfig(
        method="biprop",
        recycle_rate=0.1,
        iterand_rate=0.2,
        recycle_every=every,
        recycle_unit=unit,
        **{**QUICK, "epochs": 3},
    )
    whole = load_or_run(config, root=tmp_path / "whole", device=device)
    with pytest.raises(KeyboardInterrupt):  # 4 steps per epoch
        load_or_run(config, root=tmp_path / "cut", device=device, callbacks=[Interrupt(at_step=4 + 2)])
    resumed = load_or_run(config, root=tmp_path / "cut", device=device)
    a, b = whole.model("last").state_dict(), resumed.model("last").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records_whole, records_resumed = value_records(whole), value_records(resumed)
    assert records_whole.equals(records_resumed)
    assert set(records_whole["event"]) == {"init", "recycle", "iterand"}
    init = whole.model("init")
    for start, end in zip(masked_layers(init), masked_layers(whole.model("last")), strict=True):
        assert not torch.equal(start.weight, end.weight)


def test_iterand_only_is_a_method_option() -> None:
    iterand = RunConfig(method="edge-popup", iterand_rate=0.1)
    assert [type(cb) for cb in iterand.method_rule.callbacks(iterand)] == [IteRand]
    plain = RunConfig(method="edge-popup")
    assert plain.method_rule.callbacks(plain) == []


class _CountRounds(WeightRecycling):
    def _run(self, trainer) -> None:
        self.rounds.append(trainer.epoch)


@pytest.mark.parametrize("every, warmup, epochs", [(3, 0, 12), (2, 0, 7), (3, 4, 20), (1, 0, 4)])
def test_recycle_timing_released_follows_the_authors_epoch_test(every: int, warmup: int, epochs: int) -> None:
    class Trainer:
        settings = type("S", (), {"epochs": epochs})

    rounds = {}
    for timing in ("paper", "released"):
        callback = _CountRounds(0.1, every, warmup=warmup, timing=timing)
        callback.rounds = []
        trainer = Trainer()
        for epoch in range(epochs):
            trainer.epoch = epoch
            callback.on_before_evaluate(trainer)
        rounds[timing] = callback.rounds
    # the authors' loop: after 0-based epoch e when e % F == 0, e > 0, e > warmup, and e is not the last
    released = [e for e in range(epochs) if e % every == 0 and e > 0 and e > warmup and e < epochs - 1]
    # the paper: after every F-th epoch counted from 1, none after the last
    paper = [e for e in range(epochs) if (e + 1) % every == 0 and e + 1 > warmup and e < epochs - 1]
    assert rounds == {"paper": paper, "released": released}
    assert every == 1 or rounds["paper"] != rounds["released"]


def test_recycle_timing_is_refused_where_it_would_do_nothing() -> None:
    with pytest.raises(SlotlabError, match="recycle_timing applies to rounds by epoch"):
        RunConfig(method="edge-popup", recycle_rate=0.1, recycle_unit="step", recycle_timing="released")
    with pytest.raises(SlotlabError, match="recycling and IteRand are off"):
        RunConfig(method="edge-popup", recycle_timing="released")
