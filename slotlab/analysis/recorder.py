"""Selection snapshots during training, stored compactly in the run folder, and read back after the run.

The flip-rate analyses of Slot Machines (Aladago & Torresani 2021: how many connections change their slot between
checkpoints, greedy versus sampled selection) and the mask dynamics of Edge-Popup/Biprop need the learned choice
over training. The released Slot Machines code (maxwell-aladago/slot-machines ``train.py``) keeps only the
materialised weights, every 10 epochs; here ``Recorder`` keeps the choice itself:

    <run folder>/selections/step-00001234-epoch-00003.pt   one file per snapshot, written atomically

holding, per selecting layer, the slot indices as uint8 (int16 when K > 256) or the mask packed as bits
(8 connections per byte, numpy ``packbits`` order). A Lenet-300-100 slot snapshot is 266 kB, a mask one 33 kB.

Resume: snapshots are named by optimiser step. When a stopped run resumes from its last checkpoint, the snapshots
taken after that checkpoint (the part of an epoch that is replayed) are deleted and taken again, so the folder
always describes one uninterrupted run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from slotlab.analysis.sources import Selections, is_run, layer_names, selecting_layers, selection_kind
from slotlab.callback import Callback
from slotlab.checkpoint import atomic_save, safe_load
from slotlab.errors import SlotlabError
from slotlab.runs import Checkpointer

SNAPSHOT_DIR = "selections"
SNAPSHOT_FORMAT = 1
UNITS = ("epoch", "step")
_NAME = re.compile(r"^step-(\d+)-epoch-(\d+)\.pt$")
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # most significant bit first, as numpy.packbits


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor of any shape as ceil(n / 8) uint8 bytes, first element in the highest bit."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of ``pack_bits``: a bool tensor of ``shape``."""
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    count = int(torch.Size(shape).numel())
    if packed.numel() != (count + 7) // 8:
        raise SlotlabError(
            f"a packed mask of {packed.numel()} bytes cannot hold shape {tuple(shape)}; the snapshot is damaged"
        )
    return ((packed.unsqueeze(1) & weights) != 0).reshape(-1)[:count].reshape(tuple(shape))


def _small_index(index: torch.Tensor) -> torch.Tensor:
    if index.dtype in (torch.uint8, torch.int16):
        return index
    return index.to(torch.uint8 if int(index.max()) < 256 and int(index.min()) >= 0 else torch.int16)


def encode(selections: Selections) -> dict[str, dict[str, Any]]:
    """Selections as compact CPU tensors plus what is needed to decode them."""
    layers = {}
    for name, selection in selections.items():
        kind = selection_kind(selection)
        data = pack_bits(selection) if kind == "mask" else _small_index(selection)
        layers[name] = {"kind": kind, "shape": list(selection.shape), "data": data.cpu().reshape(-1)}
    return layers


def decode(layers: dict[str, dict[str, Any]]) -> Selections:
    out = {}
    for name, entry in layers.items():
        shape = entry["shape"]
        if entry["kind"] == "mask":
            out[name] = unpack_bits(entry["data"], shape)
        else:
            out[name] = entry["data"].reshape(shape)
    return out


class Recorder(Callback):
    """Snapshots every selecting layer's ``selection()`` every ``every`` epochs or optimiser steps.

    Also takes one snapshot before the first step, so the first flip rate is measured from the initial
    selection. The folder is ``path`` if given, else the run folder of ``load_or_run``:

        load_or_run(config, callbacks=[Recorder(every=1, unit="epoch")])

    ``seconds`` accumulates the time spent snapshotting (for the overhead benchmark).
    """

    def __init__(self, every: int = 1, unit: str = "epoch", path: str | Path | None = None) -> None:
        if unit not in UNITS:
            raise SlotlabError(f"Recorder unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if not isinstance(every, int) or every < 1:
            raise SlotlabError(f"Recorder every must be a whole number >= 1, got {every!r}")
        self.every, self.unit = every, unit
        self.path = Path(path) if path is not None else None
        self.folder: Path | None = None
        self.seconds = 0.0
        self.count = 0

    # --- trainer hooks -----------------------------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        if not selecting_layers(trainer.model):
            raise SlotlabError(
                f"Recorder found no layer with a selection in the {trainer.settings.label} model; "
                f"record slots, Edge-Popup or Biprop runs"
            )
        if not _is_main_process():  # rank 0 alone writes snapshots, and alone has the run folder
            return
        self.folder = self._run_folder(trainer) / SNAPSHOT_DIR
        # an interrupted epoch is replayed from the last checkpoint: its snapshots are taken again
        for step, _, path in _snapshot_files(self.folder):
            if step > trainer.step:
                path.unlink()
        if trainer.step == 0:
            self.snapshot(trainer)

    def on_step_end(self, trainer) -> None:
        if self.unit == "step" and trainer.step % self.every == 0:
            self.snapshot(trainer)

    def on_epoch_end(self, trainer) -> None:
        if self.unit == "epoch" and trainer.epoch % self.every == 0:
            self.snapshot(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"every": self.every, "unit": self.unit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state.get("every"), state.get("unit")) != (self.every, self.unit):
            raise SlotlabError(
                f"this run was recorded every {state.get('every')} {state.get('unit')}(s); resume it with "
                f"Recorder(every={state.get('every')}, unit={state.get('unit')!r}) so the snapshots stay even"
            )

    # --- work --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self, trainer) -> Path | None:
        if not _is_main_process():  # every rank holds the same selection; one writes it
            return None
        start = time.perf_counter()
        selections = {name: layer.selection() for name, layer in selecting_layers(trainer.model)}
        state = {
            "format": SNAPSHOT_FORMAT,
            "step": trainer.step,
            "epoch": trainer.epoch,
            "layers": encode(selections),
        }
        path = self.folder / f"step-{trainer.step:08d}-epoch-{trainer.epoch:05d}.pt"
        atomic_save(state, path)
        self.seconds += time.perf_counter() - start
        self.count += 1
        return path

    def _run_folder(self, trainer) -> Path:
        if self.path is not None:
            return self.path
        folders = [cb.path for cb in trainer.callbacks if isinstance(cb, Checkpointer)]
        if not folders:
            raise SlotlabError(
                "Recorder needs a folder: pass it to load_or_run(config, callbacks=[Recorder()]) or give "
                "Recorder(path=...)"
            )
        return Path(folders[0])


def _is_main_process() -> bool:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


def _snapshot_files(folder: Path) -> list[tuple[int, int, Path]]:
    """(step, epoch, path) of the snapshots in ``folder``, by step; temporary files do not match."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), int(m.group(2)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


@dataclass(frozen=True)
class Snapshot:
    """One stored snapshot; ``read()`` loads its selections."""

    step: int
    epoch: int
    path: Path

    def read(self) -> Selections:
        state = safe_load(self.path)
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise SlotlabError(f"{self.path} is not a slotlab selection snapshot; delete it")
        selections = decode(state["layers"])  # stored by module path; read by readable name
        names = layer_names(selections)
        return {names[path]: selection for path, selection in selections.items()}


class Snapshots(Sequence):
    """The snapshots of one run, in step order. Items are ``Snapshot``; iterate to read them one at a time."""

    def __init__(self, items: list[Snapshot], folder: Path) -> None:
        self.items, self.folder = items, folder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def selections(self) -> Iterator[tuple[Snapshot, Selections]]:
        """(snapshot, selections) pairs, read lazily so that a long run never sits in memory whole."""
        for item in self.items:
            yield item, item.read()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"step": [s.step for s in self.items], "epoch": [s.epoch for s in self.items]}, dtype="int64"
        )


def load_snapshots(source: Any) -> Snapshots:
    """The snapshots of a run (``RunResult``, run folder, or the ``selections`` folder itself)."""
    if isinstance(source, Snapshots):
        return source
    if is_run(source):
        folder = Path(source.path)
    elif isinstance(source, (str, Path)):
        folder = Path(source)
    else:
        raise SlotlabError(f"expected a run or a run folder, got {type(source).__name__}")
    if folder.name != SNAPSHOT_DIR:
        folder = folder / SNAPSHOT_DIR
    files = _snapshot_files(folder)
    if not files:
        raise SlotlabError(
            f"no selection snapshots in {folder}; train the run with callbacks=[Recorder()] (a finished run "
            f"is read back from its folder, so record in a fresh run folder)"
        )
    return Snapshots([Snapshot(step, epoch, path) for step, epoch, path in files], folder)
