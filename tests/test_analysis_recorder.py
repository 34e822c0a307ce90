from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from slotlab.analysis import Recorder, flip_rates, load_snapshots, selections_of
from slotlab.analysis.recorder import decode, encode, pack_bits, unpack_bits
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.layers.slot import SlotLinear
from slotlab.runs import load_or_run
from tests.analysis_helpers import mask_model
from tests.interrupt import Interrupt

TINY = dict(dataset="synthetic", epochs=3, batch_size=128, train_size=256, val_size=100)  # 2 steps per epoch


@pytest.mark.parametrize("count", [1, 7, 8, 9, 1001])
def test_bit_packing_matches_numpy_and_round_trips(count: int) -> None:
    mask = torch.rand(count, generator=torch.Generator().manual_seed(count)) < 0.3
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (count + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy()))
    assert torch.equal(unpack_bits(packed, (count,)), mask)


def test_encoding_is_compact_and_lossless() -> None:
    mask = torch.rand(30, 17) < 0.5
    index = torch.randint(0, 8, (5, 3, 3, 3), dtype=torch.uint8)
    encoded = encode({"m": mask, "i": index})
    assert encoded["m"]["data"].numel() == (30 * 17 + 7) // 8  # a bit per connection
    assert encoded["i"]["data"].dtype == torch.uint8  # a byte per connection
    assert encoded["i"]["data"].numel() == index.numel()
    decoded = decode(encoded)
    assert torch.equal(decoded["m"], mask) and torch.equal(decoded["i"], index)
    wide = torch.randint(0, 300, (4, 4))  # K > 256 needs two bytes
    assert encode({"w": wide})["w"]["data"].dtype == torch.int16
    assert torch.equal(decode(encode({"w": wide}))["w"].long(), wide)


def test_slot_layers_expose_their_greedy_choice() -> None:
    layer = SlotLinear(5, 3, k=4)
    torch.nn.init.normal_(layer.scores)
    assert torch.equal(layer.selection().long(), layer.scores.detach().argmax(0))
    assert layer.selection().dtype == torch.uint8


def test_recorder_round_trip_on_a_real_slots_run(tmp_path: Path) -> None:
    recorder = Recorder(every=1, unit="epoch")
    run = load_or_run(RunConfig(**TINY), root=tmp_path, callbacks=[recorder])
    snapshots = load_snapshots(run)
    assert snapshots.frame()["step"].tolist() == [0, 2, 4, 6]
    assert snapshots.frame()["epoch"].tolist() == [0, 1, 2, 3]
    first, last = snapshots[0].read(), snapshots[-1].read()
    assert all(torch.equal(first[n], s) for n, s in selections_of(run, "init").items())
    assert all(torch.equal(last[n], s) for n, s in selections_of(run, "last").items())
    assert all(
        p.stat().st_size < 300_000 for p in snapshots.folder.iterdir()
    )  # 266k connections, a byte each
    assert not [p for p in snapshots.folder.iterdir() if p.name.endswith(".tmp")]
    assert recorder.count == 4
    # the flips between the stored snapshots are those between the checkpoints
    assert flip_rates(run).query("layer == 'all'")["changed"].iloc[-1] > 0


def test_recorder_survives_a_resume(tmp_path: Path) -> None:
    config = RunConfig(**TINY)
    whole = load_or_run(config, root=tmp_path / "whole", callbacks=[Recorder(every=1, unit="step")])
    with pytest.raises(KeyboardInterrupt):  # stops at the last step of epoch 2, snapshotted
        load_or_run(
            config, root=tmp_path / "cut", callbacks=[Recorder(every=1, unit="step"), Interrupt(at_step=4)]
        )
    cut_folder = tmp_path / "cut" / config.name / "selections"
    assert max(int(p.name[5:13]) for p in cut_folder.iterdir()) == 4  # ahead of last.pt (step 2)
    with pytest.raises(SlotlabError, match=r"recorded every 1 step"):
        load_or_run(config, root=tmp_path / "cut", callbacks=[Recorder(every=2, unit="step")])
    with pytest.raises(KeyboardInterrupt):  # resumes at step 2: the snapshots of steps 3 and 4 are stale
        load_or_run(
            config, root=tmp_path / "cut", callbacks=[Recorder(every=1, unit="step"), Interrupt(at_step=3)]
        )
    assert sorted(int(p.name[5:13]) for p in cut_folder.iterdir()) == [0, 1, 2, 3]
    resumed = load_or_run(config, root=tmp_path / "cut", callbacks=[Recorder(every=1, unit="step")])
    a, b = load_snapshots(whole), load_snapshots(resumed)
    assert a.frame().equals(b.frame()) and a.frame()["step"].tolist() == list(range(7))
    for x, y in zip(a, b, strict=True):
        first, second = x.read(), y.read()
        assert all(torch.equal(first[n], second[n]) for n in first)


def fake_trainer(model, step: int = 0, epoch: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        model=model, step=step, epoch=epoch, callbacks=[], settings=RunConfig().train_settings()
    )


def test_recorder_packs_masks_of_mask_layers(tmp_path: Path) -> None:
    model = mask_model(seed=1, density=0.25)
    recorder = Recorder(every=2, unit="step", path=tmp_path)
    trainer = fake_trainer(model)
    recorder.on_train_start(trainer)
    for step in (1, 2, 3, 4):
        trainer.step = step
        with torch.no_grad():
            model[0].scores.mul_(-1).add_(torch.randn_like(model[0].scores))  # the mask changes
        recorder.on_step_end(trainer)
        recorder.on_epoch_end(trainer)  # unit "step": epochs do not snapshot
    snapshots = load_snapshots(tmp_path)
    assert snapshots.frame()["step"].tolist() == [0, 2, 4]
    stored = snapshots[-1].read()
    assert stored["fc1 12->8"].dtype == torch.bool and torch.equal(stored["fc1 12->8"], model[0].selection())
    assert torch.equal(stored["fc2 8->4"], model[1].selection())
    assert (tmp_path / "selections").is_dir()


def test_recorder_input_errors(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match="unit must be one of epoch, step"):
        Recorder(unit="batch")
    with pytest.raises(SlotlabError, match="every must be a whole number >= 1"):
        Recorder(every=0)
    with pytest.raises(SlotlabError, match="Recorder needs a folder"):
        Recorder().on_train_start(fake_trainer(mask_model(seed=1)))
    with pytest.raises(SlotlabError, match="no layer with a selection"):
        Recorder(path=tmp_path).on_train_start(fake_trainer(torch.nn.Linear(2, 2)))
    with pytest.raises(SlotlabError, match="no selection snapshots"):
        load_snapshots(tmp_path)


def test_recorder_on_other_ranks_needs_no_folder_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("slotlab.analysis.recorder._is_main_process", lambda: False)
    recorder = Recorder(every=1, unit="step")  # the run folder exists on rank 0 only
    trainer = fake_trainer(mask_model(seed=1))
    recorder.on_train_start(trainer)
    trainer.step = 1
    recorder.on_step_end(trainer)
    assert recorder.count == 0 and recorder.folder is None
