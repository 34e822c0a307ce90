"""Iterative Weight Recycling (Gorbett & Whitley 2023, arXiv 2303.15953) and IteRand (Chijiwa et al. 2021).

Recycling (Gorbett & Whitley 2023; in the authors' code, mattgorb/parameter_tiling_and_recycling at commit
420a2c8, ``SubnetConvEdgePopup.rerandomize`` / ``SubnetConvBiprop.rerandomize`` in ``utils/conv_type.py`` with
``rerand_type: recycle``): every F epochs (or steps), in every masked layer, with n = int(rate * numel) and the
flat positions ordered by |score| ascending (stable, so ties go by position),

    W[low_i] <- W[donor_i],  low = order[:n],  donor = order[numel - n:]   (the n highest, ascending)
                                               donor = order[n:2n]         (ablation: the next-lowest n)

all donor values read before any is written. Scores, optimiser state and masks are untouched: with
n <= numel - kept the recycled positions are all pruned, so the network's function does not change at that
moment; they can re-enter the mask through later score updates.

IteRand (Chijiwa et al. 2021; ``rerandomize_`` in the released dchiji-ntt/iterand
``models/networks/sparse_modules.py``): every F epochs (or steps), each pruned weight is replaced, with
probability r, by a fresh draw from the layer's initial distribution. The generator of each event is seeded from
the weight seed and the optimiser step, so every edit is a deterministic function of seeds, step and tensors:
identical on every rank of a distributed run and on a resumed run.

Both run just before the epoch's validation (``on_before_evaluate``), after the epoch's steps, and never after
the last epoch (IWR recycles after validation; for n <= numel - kept the validated network is the same, and for
larger n this order makes the validated, checkpointed and best-kept networks one and the same).

Timing by epoch, with ``every = F``: the paper's rule edits after the F-th, 2F-th, ... epoch (counted from 1);
``timing="released"`` follows the authors' code, which tests ``epoch % F == 0 and epoch > 0`` on the 0-based
epoch index and so edits one epoch later (after the (F+1)-th, (2F+1)-th, ... epoch).

Both record, per layer, the number of distinct weight values (all, and among the kept weights) at the start
and after every event: recycling only ever copies, so the first count falls with every round, and the losses
compound (IWR's CIFAR-10 configurations recycle 10 % every 3 epochs for 250 epochs, about 80 rounds).
The records survive a resume (callback state) and are read back from a run with ``value_records(run)``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from slotlab.callback import Callback
from slotlab.checkpoint import safe_load
from slotlab.init import stream_seed
from slotlab.layers.edge_popup import MaskedLayer

RECORD_COLUMNS = ["epoch", "step", "event", "layer", "moved", "distinct", "distinct_kept"]


def masked_layers(model: nn.Module) -> list[tuple[str, MaskedLayer]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MaskedLayer)]


def recycle_plan(scores: torch.Tensor, rate: float, donor: str = "top") -> tuple[torch.Tensor, torch.Tensor]:
    """(receivers, donors): flat positions, receiver i takes donor i's value."""
    flat = scores.detach().abs().reshape(-1)
    numel = flat.numel()
    n = int(rate * numel)
    order = torch.sort(flat, stable=True).indices
    receivers = order[:n]
    donors = order[numel - n :] if donor == "top" else order[n : 2 * n]
    return receivers, donors


@torch.no_grad()
def recycle_layer(layer: MaskedLayer, rate: float, donor: str = "top") -> int:
    """Copy the donors' values onto the n lowest-|score| positions of ``layer``; returns n."""
    receivers, donors = recycle_plan(layer.scores, rate, donor)
    flat = layer.weight.view(-1)  # a view: the buffer is contiguous (an in-place write must reach the layer)
    flat[receivers] = flat[donors].clone()
    return receivers.numel()


@torch.no_grad()
def iterand_layer(layer: MaskedLayer, rate: float, generator: torch.Generator) -> int:
    """Redraw each pruned weight of ``layer`` with probability ``rate``; returns how many were redrawn."""
    pruned = ~layer.selection()
    fresh = layer.draw_values(generator).to(layer.weight.device)
    coin = torch.rand(layer.weight_shape, generator=generator).to(layer.weight.device) < rate
    replace = pruned & coin
    layer.weight[replace] = fresh[replace]
    return int(replace.sum())


class _PeriodicWeightEdit(Callback):
    """Runs ``edit`` on every masked layer every ``every`` epochs or steps and records distinct values."""

    event = "edit"

    def __init__(
        self, rate: float, every: int, unit: str = "epoch", warmup: int = 0, timing: str = "paper"
    ) -> None:
        self.rate, self.every, self.unit, self.warmup, self.timing = rate, every, unit, warmup, timing
        self.records: list[dict[str, Any]] = []

    def edit(self, trainer: Any, name: str, layer: MaskedLayer) -> int:
        raise NotImplementedError

    def _record(self, trainer: Any, event: str, moved: dict[str, int]) -> None:
        for name, layer in masked_layers(trainer.model):
            kept = layer.selection()
            self.records.append(
                {
                    "epoch": trainer.epoch if event == "init" else self._count(trainer),
                    "step": trainer.step,
                    "event": event,
                    "layer": name,
                    "moved": moved.get(name, 0),
                    "distinct": int(torch.unique(layer.weight).numel()),
                    "distinct_kept": int(torch.unique(layer.weight[kept]).numel()),
                }
            )

    def _count(self, trainer: Any) -> int:
        """Epochs completed, counting the current one once its steps are done."""
        return trainer.epoch + 1 if self.unit == "epoch" else trainer.epoch

    def _run(self, trainer: Any) -> None:
        moved = {name: self.edit(trainer, name, layer) for name, layer in masked_layers(trainer.model)}
        self._record(trainer, self.event, moved)

    def on_train_start(self, trainer: Any) -> None:
        if not self.records:
            self._record(trainer, "init", {})

    def on_step_end(self, trainer: Any) -> None:
        if self.unit == "step" and trainer.step % self.every == 0 and trainer.step > self.warmup:
            self._run(trainer)

    def on_before_evaluate(self, trainer: Any) -> None:
        done = trainer.epoch + 1
        if self.unit == "epoch" and done < trainer.settings.epochs and self._due_after(done):
            self._run(trainer)

    def _due_after(self, done: int) -> bool:
        """Whether an edit follows the ``done``-th epoch (1-based)."""
        count = done if self.timing == "paper" else done - 1  # released: the 0-based index of that epoch
        return count > 0 and count % self.every == 0 and count > self.warmup

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=RECORD_COLUMNS)

    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self.records)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = list(state["records"])


class WeightRecycling(_PeriodicWeightEdit):
    """IWR: copy the values of the top-|score| (or, ``donor="next-lowest"``, the next-lowest) weights onto the
    n = int(rate * numel) lowest-|score| positions of every masked layer."""

    event = "recycle"

    def __init__(
        self,
        rate: float,
        every: int,
        unit: str = "epoch",
        donor: str = "top",
        warmup: int = 0,
        timing: str = "paper",
    ) -> None:
        super().__init__(rate, every, unit, warmup, timing)
        self.donor = donor

    def edit(self, trainer: Any, name: str, layer: MaskedLayer) -> int:
        return recycle_layer(layer, self.rate, self.donor)


class IteRand(_PeriodicWeightEdit):
    """IteRand: redraw each pruned weight from its init distribution with probability ``rate``."""

    event = "iterand"

    def __init__(
        self,
        rate: float,
        every: int,
        unit: str = "epoch",
        seed: int = 0,
        warmup: int = 0,
        timing: str = "paper",
    ) -> None:
        super().__init__(rate, every, unit, warmup, timing)
        self.seed = seed

    def _run(self, trainer: Any) -> None:
        # one generator per event, walked over the layers in module order: a function of (seed, step) only
        self.generator = torch.Generator().manual_seed(stream_seed(f"iterand-step-{trainer.step}", self.seed))
        super()._run(trainer)

    def edit(self, trainer: Any, name: str, layer: MaskedLayer) -> int:
        return iterand_layer(layer, self.rate, self.generator)


def value_records(run) -> pd.DataFrame:
    """The distinct-value records of a finished run (``RunResult``) with recycling or IteRand, else empty."""
    saved = safe_load(run.path / "last.pt").get("callbacks", {})
    rows = [
        row
        for key, state in saved.items()
        if key.split("#")[0] in ("WeightRecycling", "IteRand")
        for row in state.get("records", [])
    ]
    return pd.DataFrame(rows, columns=RECORD_COLUMNS).drop_duplicates(ignore_index=True)  # init rows, once
