"""LaPerm, training by reconnecting: Qiu & Suda, "Train-by-Reconnect: Decoupling Locations of Weights from
their Values", NeurIPS 2020 (arXiv 2003.02570), Algorithm 1 (lookahead permutation).

An inner optimizer (Adam in the paper) updates the weights every step. Every ``k`` steps each weight tensor is
*synced*: per output unit (Linear (out, in): row = one output unit's ``in`` weights; Conv (out, in, kh, kw): row =
one output channel's ``in * kh * kw`` weights; a 1-D tensor is a single row), the row is overwritten with that
row's *initial* values, sorted and put in the rank order of the current row:

    sync(w)[i, j] = sorted(w0[i])[rank of w[i, j] within w[i]]

so every row is a permutation of its initial row whose order follows the inner weights. The inner optimizer's
state (Adam's moments) is kept across syncs, as in the authors' code (``train_by_reconnect/LaPerm.py``).

Ties: ranks are those of a stable ascending sort, so equal values are ranked by their position in the row (the
lower index gets the lower rank); NaN ranks above every number (``torch.sort``). The result is a deterministic
function of the tensors alone, identical on every rank of a distributed run.

What is permuted: weight tensors (two or more dimensions). Biases and normalisation parameters (BatchNorm,
GroupNorm, LayerNorm) are skipped by default and trained freely by the inner optimizer, as in the authors' code;
``permute_bias`` / ``permute_norm`` constrain them too (each 1-D tensor as one row).

Two ways to use it:

* ``LaPerm(model, optimizer, sync_period=k)``: a drop-in wrapper around any PyTorch optimizer, for any model;
* ``LaPermSync``: the trainer callback behind ``--method laperm``, which also syncs before every evaluation, so
  every reported number and every checkpoint belongs to a network whose rows are permutations of the initial ones
  (the authors' notebooks, ihsuy/Train-by-Reconnect, validate every 250 batches but sync every 1000 for Conv2,
  Conv4 and Conv13, so three of four evaluated, and possibly best-kept, networks are unsynced inner weights).

Initial variants (Qiu & Suda 2020, §5.4 and §5.5; ``random_prune`` and ``agnosticize`` in the released
``train_by_reconnect/weight_utils.py``), applied by ``--method laperm`` before training: random sparse
initialisation (``sparsify``: a random fraction of each weight tensor set to zero; the zeros are then moved
around like any value) and weight-agnostic networks (``agnosticize``: every weight one shared value, then the
same random zeros).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from slotlab.callback import Callback
from slotlab.checkpoint import safe_load
from slotlab.errors import SlotlabError
from slotlab.init import random_weight_layers, stream_seed

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


# --- the permutation ----------------------------------------------------------------------------------------
def as_rows(tensor: torch.Tensor) -> torch.Tensor:
    """(rows, row length) view of a weight: one row per output unit (dim 0); a 1-D tensor is one row."""
    if tensor.dim() == 1:
        return tensor.reshape(1, -1)
    return tensor.reshape(tensor.shape[0], -1)


def sorted_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every row of ``tensor`` sorted ascending: (rows, row length)."""
    return torch.sort(as_rows(tensor).detach(), dim=1).values.contiguous()


def stable_order(rows: torch.Tensor) -> torch.Tensor:
    """Per row, the columns in stable ascending order: ``torch.sort(rows, dim=1, stable=True).indices``.

    On the CPU, float32 rows take a faster path with the same result: each value's bits become an order-preserving
    integer, the column index goes in the low 32 bits, and numpy sorts these int64 keys by value (no indirect
    comparisons; about 10x faster than torch's CPU argsort). -0.0 is made +0.0 and every NaN the same positive
    NaN first, so that they tie, and rank, as in ``torch.sort``. Every key is distinct (it holds its column), so
    the unstable quicksort gives the stable order; the keys are edited in place to save passes.

    (Sorting from the previous sync's order, nearly sorted, with numpy's run-detecting stable sort was measured
    and is slower after one Adam step: every weight moves by a few neighbours' spacings, so the runs are short.)
    """
    if rows.device.type != "cpu" or rows.dtype != torch.float32 or rows.shape[1] >= 2**31:
        return torch.sort(rows, dim=1, stable=True).indices
    values = rows.detach().numpy() + np.float32(0)  # -0.0 -> +0.0, in a copy we may edit
    nan = np.isnan(values)
    if nan.any():
        values[nan] = np.float32(np.nan)
    bits = values.view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negatives: flip the magnitude bits
    keys = bits.astype(np.int64)
    keys <<= 32
    keys |= np.arange(rows.shape[1], dtype=np.int64)
    keys.sort(axis=1)
    keys &= 0xFFFFFFFF
    return torch.from_numpy(keys)


def permute_rows(current: torch.Tensor, sorted_initial: torch.Tensor) -> torch.Tensor:
    """The values of ``sorted_initial`` (rows, n) placed in the rank order of ``current`` (rows, n).

    Entry (i, j) receives ``sorted_initial[i, r]`` where r is the rank of ``current[i, j]`` in its row under a
    stable ascending sort (ties ranked by position).
    """
    order = stable_order(current)  # order[i, r] = column of rank r
    return torch.empty_like(sorted_initial).scatter_(1, order, sorted_initial)


# --- which tensors ------------------------------------------------------------------------------------------
def parameter_kinds(model: nn.Module) -> list[tuple[str, nn.Parameter, str]]:
    """(name, parameter, kind) for every parameter of ``model``, kind one of weight, bias, norm, scalar."""
    out = []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if param.dim() == 0:
                kind = "scalar"  # nothing to permute
            elif isinstance(module, NORM_TYPES):
                kind = "norm"
            elif name == "bias" or param.dim() == 1:
                kind = "bias"
            else:
                kind = "weight"
            out.append((full, param, kind))
    return out


def _plain_name(name: str) -> str:
    """Parameter names without DistributedDataParallel's ``module.`` prefix, so states move between wrappings."""
    while name.startswith("module."):
        name = name[len("module.") :]
    return name


def optimized_permutable(
    model: nn.Module, optimizer: torch.optim.Optimizer, permute_bias: bool, permute_norm: bool
) -> list[tuple[str, nn.Parameter]]:
    """The parameters a sync permutes: those of the chosen kinds that ``optimizer`` updates, in model order."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    kinds = parameter_kinds(model)
    if not any(id(p) in held for _, p, _ in kinds):
        raise SlotlabError(
            "LaPerm: the optimizer holds none of the model's parameters; build it from this model's parameters"
        )
    check_permutable_kinds(model, permute_bias, permute_norm)
    wanted = {"weight"} | ({"bias"} if permute_bias else set()) | ({"norm"} if permute_norm else set())
    chosen = [(_plain_name(n), p) for n, p, kind in kinds if kind in wanted and id(p) in held]
    if not chosen:
        raise SlotlabError(
            "LaPerm: the optimizer updates none of the model's weight tensors, so there is nothing to permute; "
            "pass an optimizer over the weights (or permute_bias/permute_norm for 1-D parameters)"
        )
    return chosen


def check_permutable_kinds(model: nn.Module, permute_bias: bool, permute_norm: bool) -> None:
    """Refuse an option that would change nothing: permute_bias on a model without biases, permute_norm on one
    without normalisation parameters."""
    kinds = {kind for _, _, kind in parameter_kinds(model)}
    if permute_bias and "bias" not in kinds:
        raise SlotlabError(
            f"permute_bias: this {type(model).__name__} has no biases, so it would change nothing; leave it out"
        )
    if permute_norm and "norm" not in kinds:
        raise SlotlabError(
            f"permute_norm: this {type(model).__name__} has no normalisation scales or shifts (no affine "
            "BatchNorm/GroupNorm/LayerNorm), so it would change nothing; leave it out"
        )


def check_sync_period(sync_period: int) -> int:
    if isinstance(sync_period, bool) or int(sync_period) != sync_period or sync_period < 1:
        raise SlotlabError(f"LaPerm sync period k must be a whole number >= 1, got {sync_period!r}")
    return int(sync_period)


# --- the state a sync needs ---------------------------------------------------------------------------------
@dataclass
class _Tracked:
    name: str
    param: nn.Parameter
    shape: torch.Size
    sorted_initial: torch.Tensor  # (rows, row length), ascending
    # (rows, row length) int64: the column order of the last sync (the reference of the moved count); None:
    # unknown (after a load)
    order: torch.Tensor | None = None


class InitialRows:
    """The sorted initial rows of a set of parameters, and the sync that writes permutations of them back."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]) -> None:
        self.tracked = []
        for name, p in named:
            rows = as_rows(p).detach()
            order = stable_order(rows)
            # the initial rows in that order: sorted ascending (the same values as ``sorted_rows``)
            self.tracked.append(_Tracked(name, p, p.shape, torch.gather(rows, 1, order).contiguous(), order))

    @torch.no_grad()
    def sync(self, count_moved: bool = False) -> dict[str, int] | None:
        """Overwrite every tracked parameter with its initial rows in the rank order of its current rows.

        ``count_moved``: also return, per parameter, how many entries now hold a different value than after the
        previous sync (connections that moved; an exchange of equal values is no move); entries of a parameter
        whose previous sync is unknown (after ``load_state_dict``) are not counted.
        """
        moved: dict[str, int] = {}
        for t in self.tracked:
            if t.param.shape != t.shape:
                raise SlotlabError(
                    f"LaPerm: parameter {t.name} has shape {tuple(t.param.shape)} but its initial rows were "
                    f"recorded with shape {tuple(t.shape)}; create LaPerm again after changing the model"
                )
            rows = as_rows(t.param)
            order = stable_order(rows)  # order[i, r] = column of rank r
            if count_moved and t.order is not None:
                before = torch.empty_like(t.sorted_initial).scatter_(1, t.order, t.sorted_initial)
            if t.param.is_contiguous():  # rows is a view: write the permutation straight into the weights
                rows.scatter_(1, order, t.sorted_initial)
            else:
                t.param.copy_(
                    torch.empty_like(t.sorted_initial).scatter_(1, order, t.sorted_initial).view(t.shape)
                )
            if count_moved and t.order is not None:
                moved[t.name] = int(torch.ne(as_rows(t.param), before).sum())
            t.order = order
        return moved if count_moved else None

    def sizes(self) -> dict[str, int]:
        """Entries per tracked parameter."""
        return {t.name: t.param.numel() for t in self.tracked}

    def state_dict(self, orders: bool = False) -> dict[str, Any]:
        """Names and sorted initial rows; ``orders``: also each tensor's column order of the last sync (int32),
        the reference of the next moved count when the saved weights are not the last sync's."""
        state: dict[str, Any] = {
            "names": [t.name for t in self.tracked],
            "sorted_initial": [t.sorted_initial for t in self.tracked],
        }
        if orders:
            state["orders"] = [None if t.order is None else t.order.to(torch.int32) for t in self.tracked]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = [t.name for t in self.tracked]
        if list(state["names"]) != names:
            raise SlotlabError(
                f"LaPerm state is for parameters {list(state['names'])[:3]}..., not this model's {names[:3]}...; "
                f"load the state of the same model"
            )
        for t, rows in zip(self.tracked, state["sorted_initial"], strict=True):
            expected = tuple(as_rows(torch.empty(t.shape, device="meta")).shape)
            if tuple(rows.shape) != expected:
                raise SlotlabError(
                    f"LaPerm state holds rows of shape {tuple(rows.shape)} for {t.name}, which needs {expected}; "
                    f"load the state of the same model"
                )
            t.sorted_initial = rows.to(device=t.param.device, dtype=t.param.dtype).contiguous()
            t.order = None
        for t, order in zip(self.tracked, state.get("orders") or [None] * len(self.tracked), strict=True):
            if order is not None:
                t.order = order.to(device=t.param.device, dtype=torch.int64)

    def assume_synced(self) -> None:
        """Take the parameters as they are for the last sync (a run resumed right after a sync): the reference of
        the next moved count."""
        for t in self.tracked:
            t.order = stable_order(as_rows(t.param).detach())


# --- the optimizer wrapper ----------------------------------------------------------------------------------
class LaPerm(torch.optim.Optimizer):
    """Lookahead permutation around any optimizer: ``inner.step()`` every step, a sync every ``sync_period``.

    ``optimizer`` defaults to Adam (lr 1e-3, the paper's) over the model's parameters. The initial values are
    those of the model when the wrapper is created. Learning-rate schedulers may be given either this wrapper or
    the inner optimizer (they share ``param_groups``). ``state_dict`` holds the inner optimizer's state, the step
    counter and the sorted initial rows, so a resumed training continues exactly.

        opt = LaPerm(model, torch.optim.Adam(model.parameters(), 1e-3), sync_period=20)
        for x, y in batches:
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        opt.sync()  # before evaluating between sync points
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        sync_period: int = 20,
        permute_bias: bool = False,
        permute_norm: bool = False,
    ) -> None:
        self.sync_period = check_sync_period(sync_period)
        if optimizer is None:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.optimizer = optimizer
        self.rows = InitialRows(optimized_permutable(model, optimizer, permute_bias, permute_norm))
        self.steps = 0  # inner steps taken
        self.synced_at = 0  # step of the last sync (0: the initial network, a trivial sync)
        # Optimizer.__init__ is not called: groups, state and defaults are the inner optimizer's (see below),
        # so schedulers and zero_grad act on it, also after its load_state_dict replaces them.

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self):  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    def step(self, closure=None):  # type: ignore[override]
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.sync_period == 0:
            self.sync()
        return loss

    def sync(self) -> None:
        """Sync now (e.g. before evaluating between sync points); a no-op right after one."""
        if self.synced_at != self.steps:
            self.rows.sync()
            self.synced_at = self.steps

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "synced_at": self.synced_at,
            "rows": self.rows.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self.synced_at = int(state["steps"]), int(state["synced_at"])
        self.rows.load_state_dict(state["rows"])

    def __repr__(self) -> str:
        return f"LaPerm(sync_period={self.sync_period}, inner={self.optimizer.__class__.__name__})"


# --- the trainer callback -----------------------------------------------------------------------------------
MOVED_COLUMNS = ["step", "epoch", "layer", "moved", "size", "fraction"]


class LaPermSync(Callback):
    """Syncs the trainer's model every ``sync_period`` optimiser steps, and before every evaluation.

    The trainer's own optimizer is the inner optimizer. The step counter is the trainer's (restored on resume);
    the sorted initial rows are recorded at the start of a fresh run and kept in the callback state, so a resumed
    run syncs against the same values. Syncing before evaluation means an epoch end is always a sync point:
    with a period longer than an epoch, or one that does not divide it, the network is also synced there.

    ``sync_at_evaluation=False`` is the released code's behaviour (ihsuy/Train-by-Reconnect: the notebooks sync
    every k batches, whatever the epoch): syncs happen at multiples of k only, and an evaluation (and the best or
    last checkpoint) between two sync points sees the inner weights, which are not a permutation of the initial
    ones. The checkpoint then also holds the last sync's column orders, so a resumed run counts moves exactly.

    Every sync records, per permuted tensor, how many of its connections moved (hold another value than after
    the previous sync): the trajectory of the run, kept in the callback state (``moved_history``, and
    ``moved_records(run)`` for a finished run).
    """

    def __init__(
        self,
        sync_period: int,
        permute_bias: bool = False,
        permute_norm: bool = False,
        sync_at_evaluation: bool = True,
    ) -> None:
        self.sync_period = check_sync_period(sync_period)
        self.permute_bias, self.permute_norm = permute_bias, permute_norm
        self.sync_at_evaluation = sync_at_evaluation
        self.rows: InitialRows | None = None
        self._loaded: dict[str, Any] | None = None
        self.synced_at = 0
        # per sync: step, epoch (1-based, the one the sync belongs to) and moved count per tensor (model order)
        self.moved: dict[str, list] = {"step": [], "epoch": [], "counts": []}

    def on_train_start(self, trainer) -> None:
        self.rows = InitialRows(
            optimized_permutable(trainer.model, trainer.optimizer, self.permute_bias, self.permute_norm)
        )
        if self._loaded is not None:
            self.rows.load_state_dict(self._loaded)
            if self.sync_at_evaluation:
                self.rows.assume_synced()  # a run resumes right after a pre-evaluation sync
            self.moved = {key: list(value) for key, value in self._loaded.get("moved", self.moved).items()}
        elif trainer.step > 0:
            raise SlotlabError(
                f"LaPerm: resuming at step {trainer.step} without the initial rows in the checkpoint; "
                "start the run again in a fresh run folder"
            )
        # runs start at init, and resume right after a pre-evaluation sync or (released) at an epoch end whose
        # weights are the inner ones: the next sync is at the next multiple of k either way
        self.synced_at = trainer.step

    def on_step_end(self, trainer) -> None:
        if trainer.step % self.sync_period == 0:
            self._sync(trainer)

    def on_before_evaluate(self, trainer) -> None:
        if self.sync_at_evaluation:
            self._sync(trainer)

    def _sync(self, trainer) -> None:
        if self.rows is None:
            raise SlotlabError("LaPerm: sync before on_train_start; let the Trainer call its callbacks")
        if self.synced_at != trainer.step:
            counts = self.rows.sync(count_moved=True) or {}
            self.synced_at = trainer.step
            self.moved["step"].append(int(trainer.step))
            self.moved["epoch"].append(int(trainer.epoch) + 1)
            self.moved["counts"].append([counts.get(t.name, -1) for t in self.rows.tracked])

    @property
    def moved_history(self) -> pd.DataFrame:
        """One row per sync and permuted tensor: step, epoch, layer, moved (count), size, fraction moved."""
        if self.rows is None:
            return pd.DataFrame(columns=MOVED_COLUMNS)
        return moved_frame(self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        if self.rows is None:
            return dict(self._loaded or {})
        return {
            **self.rows.state_dict(orders=not self.sync_at_evaluation),
            "sizes": list(self.rows.sizes().values()),
            "moved": self.moved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = dict(state) if state else None


def moved_frame(state: dict[str, Any]) -> pd.DataFrame:
    """The moved-connections trajectory of a ``LaPermSync`` state: one row per sync and permuted tensor."""
    moved = state.get("moved", {"step": [], "epoch": [], "counts": []})
    rows = [
        {"step": step, "epoch": epoch, "layer": name, "moved": count, "size": size, "fraction": count / size}
        for step, epoch, counts in zip(moved["step"], moved["epoch"], moved["counts"], strict=True)
        for name, size, count in zip(state["names"], state["sizes"], counts, strict=True)
        if count >= 0  # -1: the previous sync was unknown (a resumed run of an older checkpoint)
    ]
    return pd.DataFrame(rows, columns=MOVED_COLUMNS)


def moved_records(run) -> pd.DataFrame:
    """The moved-connections trajectory of a finished LaPerm run (a ``RunResult``): one row per sync and permuted
    tensor; empty for a run of another method."""
    saved = safe_load(run.path / "last.pt").get("callbacks", {})
    state = saved.get("LaPermSync")
    return moved_frame(state) if state else pd.DataFrame(columns=MOVED_COLUMNS)


# --- baselines: a random permutation of each row (no learning) -----------------------------------------------
def permutable_parameters(
    model: nn.Module, permute_bias: bool = False, permute_norm: bool = False
) -> list[tuple[str, nn.Parameter]]:
    """The parameters LaPerm would permute in ``model`` (weights; biases, norms when asked), in model order."""
    wanted = {"weight"} | ({"bias"} if permute_bias else set()) | ({"norm"} if permute_norm else set())
    return [(_plain_name(n), p) for n, p, kind in parameter_kinds(model) if kind in wanted]


@torch.no_grad()
def randomly_permute_rows(
    model: nn.Module, seed: int, permute_bias: bool = False, permute_norm: bool = False
) -> nn.Module:
    """Every row of every permutable tensor of ``model`` replaced, in place, by a uniformly random permutation of
    itself (Qiu & Suda 2020: what a permutation without learning gives). Seeded on its own stream; returns
    ``model``."""
    generator = torch.Generator().manual_seed(stream_seed("laperm-random-permutation", seed))
    for _, param in permutable_parameters(model, permute_bias, permute_norm):
        rows = as_rows(param)
        order = torch.rand(rows.shape, generator=generator).argsort(dim=1).to(param.device)
        param.copy_(torch.gather(rows, 1, order).view(param.shape))
    return model


# --- initial variants (Qiu & Suda 2020, §5.4-5.5) -----------------------------------------------------------
def parse_densities(text: str) -> list[float]:
    """``"0.08"`` or per layer ``"1/15,1/7,1/3"`` -> densities in (0, 1]; ``""`` -> [] (dense)."""
    out = []
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        try:
            value = float(Fraction(item))
        except (ValueError, ZeroDivisionError):
            raise SlotlabError(
                f"init_density must be numbers or fractions in (0, 1], e.g. 0.08 or 1/15,1/7,1/3; got {text!r}"
            ) from None
        if not 0 < value <= 1:
            raise SlotlabError(
                f"init_density values must be in (0, 1] (fraction of weights kept), got {item}"
            )
        out.append(value)
    return out


def weight_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The weights slotlab draws (one per Linear/Conv layer of the factory), in module order."""
    return [(name, layer.weight) for name, layer in random_weight_layers(model)]


@torch.no_grad()
def sparsify(model: nn.Module, densities: Iterable[float], seed: int) -> None:
    """Zero all but ``round(density * n)`` randomly chosen entries of each weight tensor, in place.

    One density for every layer, or one per layer in module order. The kept positions come from a generator
    seeded by ``seed`` (the run's weight seed, on its own stream), so they are part of the initial network.
    """
    weights = weight_tensors(model)
    densities = list(densities)
    if len(densities) == 1:
        densities *= len(weights)
    if len(densities) != len(weights):
        raise SlotlabError(
            f"init_density gives {len(densities)} densities but the model has {len(weights)} weight layers; "
            f"give one density, or one per layer"
        )
    generator = torch.Generator().manual_seed(stream_seed("laperm-sparse", seed))
    for (_, weight), density in zip(weights, densities, strict=True):
        n = weight.numel()
        keep = round(density * n)
        if keep < 1:
            raise SlotlabError(f"init_density {density} keeps no weight of a layer of {n}; raise it")
        dropped = torch.randperm(n, generator=generator)[keep:]
        weight.view(-1)[dropped.to(weight.device)] = 0.0


@torch.no_grad()
def agnosticize(model: nn.Module, value: float) -> None:
    """Set every weight of every weight tensor to one shared ``value`` (weight-agnostic networks, paper §5.5)."""
    if not math.isfinite(value) or value == 0:
        raise SlotlabError(f"shared_value must be a finite non-zero number, got {value}")
    for _, weight in weight_tensors(model):
        weight.fill_(value)
