"""Finetuning from the selection at epoch E (Slot Machines Sec. 4.4): kept selections and --source-epoch."""

from pathlib import Path

import pytest
import torch

from slotlab.callback import Callback
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.layers.slot import SlotLayer, greedy_index
from slotlab.runs import initial_network, load_or_run

TINY = dict(dataset="synthetic", train_size=256, val_size=100, batch_size=64)


class RecordChoices(Callback):
    def __init__(self) -> None:
        self.choices: dict[int, list[torch.Tensor]] = {}

    def on_epoch_end(self, trainer) -> None:
        layers = [m for m in trainer.model.modules() if isinstance(m, SlotLayer)]
        # trainer.epoch counts the epochs completed, this one included
        self.choices[trainer.epoch] = [greedy_index(m.scores.detach()).cpu() for m in layers]


def test_a_finetune_from_epoch_e_starts_from_the_selection_the_run_had_then(tmp_path: Path) -> None:
    probe = RecordChoices()
    config = RunConfig(k=4, epochs=3, keep_epochs="2,1", lr=0.5, **TINY)
    assert config.options.keep_epochs == "1,2"  # one spelling, one hash
    source = load_or_run(config, root=tmp_path, progress=False, callbacks=[probe])
    # the choices moved between the kept epochs, so keeping the right epoch matters
    assert any(not torch.equal(a, b) for a, b in zip(probe.choices[1], probe.choices[3], strict=True))
    for epoch in (1, 2):
        finetune = RunConfig(
            method="finetune", source=source.config.hash, source_epoch=epoch, epochs=2, **TINY
        )
        start = initial_network(finetune, (1, 28, 28), 10, tmp_path)
        found = source.model("best")
        slot_layers = [m for m in found.modules() if isinstance(m, SlotLayer)]
        plain = [m for m in start.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        assert len(plain) == len(slot_layers) == 3
        for layer, dense, index in zip(slot_layers, plain, probe.choices[epoch], strict=True):
            # the value each connection had chosen at that epoch, gathered by hand
            expected = layer.values.detach().gather(0, index.unsqueeze(0)).squeeze(0)
            assert torch.equal(dense.weight.detach(), expected)
    trained = load_or_run(
        RunConfig(method="finetune", source=source.config.hash, source_epoch=2, epochs=1, **TINY),
        root=tmp_path,
        progress=False,
    )
    assert len(trained.history[trained.history["split"] == "val"]) == 1  # total budget: 3 = 2 + 1


def test_an_epoch_the_source_did_not_keep_is_a_one_line_error(tmp_path: Path) -> None:
    source = load_or_run(RunConfig(k=2, epochs=2, keep_epochs="1", **TINY), root=tmp_path, progress=False)
    finetune = RunConfig(method="finetune", source=source.config.hash, source_epoch=2, **TINY)
    with pytest.raises(SlotlabError, match="kept the selections of epochs 1, not 2"):
        initial_network(finetune, (1, 28, 28), 10, tmp_path)
    with pytest.raises(SlotlabError, match="lie beyond the run's 2 epochs"):
        RunConfig(k=2, epochs=2, keep_epochs="3", **TINY)
    with pytest.raises(SlotlabError, match="whole epochs separated by commas"):
        RunConfig(keep_epochs="ten")
