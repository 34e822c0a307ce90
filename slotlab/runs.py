"""Run folders and the result cache: ``load_or_run(config)`` trains once and then returns the stored result.

A run's folder is ``<runs root>/<method>-<model>-<dataset>-<hash>/`` and holds

    config.json    the full config, its hash and the slotlab version        (written first)
    init.pt        the initial state (random values and scores) of the network
    last.pt        trainer state after the last completed epoch           (atomic, every epoch)
    best.pt        the model of the best epoch so far                     (atomic)
    history.csv    epoch, split, loss, accuracy, lr, seconds
    result.json    final metrics                                           (written last: the run is done)
    lock           while a process trains the run: its host and pid        (removed when it stops)

An interrupted run resumes from ``last.pt`` and ends exactly as if it had never stopped. A run being trained is
claimed by its lock (``slotlab.locks``): a second process asking for it gets ``RunLocked`` instead of training it
twice, and the lock of a process that died is taken over.

Under torchrun every rank trains and rank 0 alone takes the lock and writes the folder; the folder must be
visible to every rank (one node, or a shared filesystem) for a stopped distributed run to resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from slotlab import __version__, distributed
from slotlab.callback import Callback
from slotlab.checkpoint import (
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    remove_temporaries,
    safe_load,
)
from slotlab.config import RunConfig
from slotlab.data import Splits, dataset_info, make_splits
from slotlab.dataset_files import one_line
from slotlab.device import pick_device
from slotlab.errors import ResourceError, RunFileError, SlotlabError, disk_error
from slotlab.locks import RunLock, RunLocked
from slotlab.methods import SourceNetwork
from slotlab.optim import make_optimizer, make_scheduler
from slotlab.train import Trainer, trainable_parameters


def runs_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$SLOTLAB_RUNS``, else ``runs/`` in the working directory."""
    return Path(root or os.environ.get("SLOTLAB_RUNS") or "runs")


def run_dir(config: RunConfig, root: str | Path | None = None) -> Path:
    return runs_root(root) / config.name


@dataclass
class RunResult:
    """A finished (or stored) run: its config, folder, metrics and history; models load on demand."""

    config: RunConfig
    path: Path
    metrics: dict[str, Any]
    history: pd.DataFrame

    def model(self, which: str = "best", device: str | torch.device = "cpu") -> nn.Module:
        """The network of checkpoint ``which`` (best, last or init), rebuilt from the config and loaded."""
        if which not in ("best", "last", "init"):
            raise SlotlabError(f"checkpoint must be best, last or init, got {which!r}")
        state = _load_checked(self.path / f"{which}.pt", self.config, device)
        info = dataset_info(self.config.dataset)
        model = self.config.method_rule.architecture(self.config, info.input_shape, info.num_classes)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    @property
    def test_accuracy(self) -> float:
        return self.metrics["test_accuracy"]

    def summary(self) -> pd.DataFrame:
        """The final table: best validation and test accuracy, with the protocol that chose them."""
        m = self.metrics
        rows = [
            {"split": "val", "accuracy": m["val_accuracy"], "epoch": m["best_epoch"]},
            {"split": "test", "accuracy": m["test_accuracy"], "epoch": m["best_epoch"]},
        ]
        frame = pd.DataFrame(rows).set_index("split")
        frame.attrs["note"] = m.get("note", "")
        return frame


ADVICE = {
    "last.pt": "delete it and run the same command again: the run trains again from its first epoch",
    "best.pt": "delete the run folder and run it again",
    "init.pt": "delete the run folder and run it again",
}


def _load_checked(path: Path, config: RunConfig, device: str | torch.device = "cpu") -> dict[str, Any]:
    state = safe_load(path, map_location=device, advice=ADVICE.get(path.name, ""))
    if not isinstance(state, dict) or "config_hash" not in state:
        raise SlotlabError(f"{path} is not a slotlab checkpoint; delete it or point at a run folder")
    if state["config_hash"] != config.hash:
        raise SlotlabError(
            f"{path} was written by config {state['config_hash']}, not {config.hash}; "
            f"use the matching config or a fresh run folder"
        )
    return state


MIN_HASH_PREFIX = 4


def find_run(path_or_hash: str | Path, root: str | Path | None = None) -> Path:
    """The folder of a run given as its folder or as (a prefix of at least 4 digits of) its hash."""
    path = Path(path_or_hash)
    if path.exists():
        return path
    text = str(path_or_hash).strip()
    folders = sorted(runs_root(root).glob("*/config.json")) if runs_root(root).is_dir() else []
    if len(text) < MIN_HASH_PREFIX or any(c not in "0123456789abcdef" for c in text):
        raise SlotlabError(
            f"no run folder {text!r}; pass a run folder or at least {MIN_HASH_PREFIX} digits of a run's hash "
            f"(runs root {runs_root(root)})"
        )
    matches = [f.parent for f in folders if f.parent.name.rpartition("-")[2].startswith(text)]
    if not matches:
        raise SlotlabError(
            f"no run under {runs_root(root)} has a hash starting with {text!r}; pass a folder made by "
            f"`python -m slotlab train`, or --runs for another runs root"
        )
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise SlotlabError(f"{text!r} matches {len(matches)} runs ({names}); give more digits of the hash")
    return matches[0]


def open_run(path_or_hash: str | Path, root: str | Path | None = None) -> RunResult:
    """A finished run, by folder path or by hash (searched in the runs root)."""
    path = find_run(path_or_hash, root)
    if not (path / "config.json").is_file():
        raise SlotlabError(
            f"{path} is not a slotlab run folder (no config.json); pass a folder made by "
            f"`python -m slotlab train`"
        )
    config = RunConfig.from_dict(read_saved_config(path)["config"])
    if not (path / "result.json").is_file():
        raise SlotlabError(f"run {path} has not finished (no result.json); run it again to resume it")
    finish_again = (
        f"delete {path / 'result.json'} and run the same command again: the run finishes from last.pt"
    )
    metrics = _read_json(path / "result.json", finish_again)
    try:
        history = pd.read_csv(path / "history.csv")
    except (OSError, ValueError, pd.errors.ParserError) as error:  # EmptyDataError is a ValueError
        raise RunFileError(f"{path / 'history.csv'} is damaged ({one_line(error)}); {finish_again}") from None
    if not isinstance(metrics, dict) or "test_accuracy" not in metrics:
        raise RunFileError(f"{path / 'result.json'} holds no test accuracy; {finish_again}")
    return RunResult(config, path, metrics, history)


def _read_json(path: Path, advice: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(f"{path} is damaged ({one_line(error)}); {advice}") from None


def read_saved_config(path: Path) -> dict[str, Any]:
    """A run folder's config.json: its hash, name, slotlab version and config."""
    saved = _read_json(
        path / "config.json",
        "move the folder away (its checkpoints cannot be matched to a config without it) and train the run again",
    )
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise RunFileError(
            f"{path / 'config.json'} holds no config; move the folder away and train the run again"
        )
    return saved


class Checkpointer(Callback):
    """Writes last.pt every epoch and best.pt when the epoch is the new best, both atomically.

    ``initial_state``, where given, makes the network's initial state for ``init.pt``, written at the end of the
    first epoch rather than before it: a run that fails in its first epoch (a damaged image, say) leaves no large
    file behind, and the seeds rebuild the same state (a run that starts from a source writes init.pt at once).
    """

    def __init__(
        self,
        path: Path,
        config: RunConfig,
        initial_state: Callable[[], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        self.path, self.config, self.initial_state = path, config, initial_state

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.initial_state is not None and not (self.path / "init.pt").is_file():
            atomic_save(
                {"config_hash": self.config.hash, "model": self.initial_state()}, self.path / "init.pt"
            )
        if trainer.improved:
            atomic_save(
                {
                    "config_hash": self.config.hash,
                    "epoch": trainer.epoch,
                    "model": trainer.model.state_dict(),
                },
                self.path / "best.pt",
            )
        atomic_save({"config_hash": self.config.hash, **trainer.state_dict()}, self.path / "last.pt")
        atomic_write_text(trainer.history.to_csv(index=False), self.path / "history.csv")


def memory_needed(config: RunConfig) -> int:
    """Bytes of tensors a run of ``config`` holds while it trains, estimated from its architecture built on the
    meta device (no memory): the network and the copy of its best epoch, and for each trained parameter its
    gradient and the optimiser's state (SGD's momentum, Adam's two moments)."""
    info = dataset_info(config.dataset)
    with torch.device("meta"):
        model = config.method_rule.memory_model(config, info.input_shape, info.num_classes)
    stored = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = 2 if config.optimizer == "adam" else (1 if config.momentum > 0 else 0)
    return 2 * stored + trained * (1 + state)


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device``: the GPU's free memory, or the host's MemAvailable; None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(config: RunConfig, device: torch.device) -> None:
    """Refuse, before a run folder exists, a run that would not fit in the memory there is."""
    needed, free = memory_needed(config), available_memory(device)
    if free is not None and needed > free:
        raise ResourceError(
            f"run {config.name} needs about {needed / 2**30:.1f} GiB on {device.type} and {free / 2**30:.1f} GiB "
            f"is free; choose a smaller model, K or batch, or a machine with more memory"
        )


def make_trainer(
    config: RunConfig,
    model: nn.Module,
    splits: Splits,
    device: torch.device,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
) -> Trainer:
    """The trainer of ``config``: its method's callbacks (recycling, syncs) before ``callbacks``, and the
    optimiser and schedule over what the method trains (none for a method that learns nothing)."""
    model = model.to(device)
    parameters = trainable_parameters(model)
    optimizer = make_optimizer(config, parameters, model) if parameters else None
    scheduler = make_scheduler(config, optimizer) if optimizer is not None else None
    return Trainer(
        config.train_settings(),
        model,
        splits,
        device,
        optimizer,
        scheduler,
        [*config.method_rule.callbacks(config), *callbacks],
        progress,
    )


def initial_network(
    config: RunConfig, input_shape: tuple[int, int, int], num_classes: int, root: str | Path | None = None
) -> nn.Module:
    """The network ``config`` starts from; a method that starts from another run (finetune) finds that run's
    found network under the same runs root."""
    method = config.method_rule
    source_hash = method.source_of(config)
    if not source_hash:
        return method.initial_network(config, input_shape, num_classes)
    run = open_run(source_hash, root)
    if run.config.method not in method.source_methods:
        raise SlotlabError(
            f"{method.name} starts from a {' or '.join(method.source_methods)} run; {run.path.name} is a "
            f"{run.config.method} run"
        )
    source = SourceNetwork(
        run.path.name, run.config.method, run.config.model, run.config.dataset, run.model("best"), run.path
    )
    return method.initial_network(config, input_shape, num_classes, source)


def load_or_run(
    config: RunConfig,
    root: str | Path | None = None,
    device: str | torch.device | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    data_root: str | Path | None = None,
) -> RunResult:
    """The result of ``config``: read from its run folder when finished, else trained (resuming if stopped).

    Raises ``RunLocked`` when another live process is training the same run, ``ResourceError`` before anything
    is written when the run would not fit in memory, and ``DiskError`` when its folder cannot be written. Under
    torchrun (see ``slotlab.distributed``) all ranks train together and return the same metrics; rank 0 writes the
    folder.
    """
    if not isinstance(config, RunConfig):
        raise SlotlabError(
            f"load_or_run takes a RunConfig, got {type(config).__name__}; build one with "
            f"RunConfig(**fields) (e.g. RunConfig(method='slots', k=8))"
        )
    path = run_dir(config, root)
    if (path / "result.json").is_file():
        return open_run(path)
    ctx, device = distributed.init_from_env(pick_device(device))
    check_memory(config, device)
    lock = RunLock(path)
    refusal = None
    if ctx.is_primary:
        try:
            lock.acquire()
        except RunLocked as error:
            refusal = str(error)
        except OSError as error:
            raise disk_error(error, path) from None
    refusal = distributed.broadcast_object(refusal, ctx)  # every rank stops, or none does
    if refusal is not None:
        raise RunLocked(refusal)
    try:
        return _train_run(config, path, root, ctx, device, callbacks, progress, data_root)
    finally:
        if ctx.is_primary:
            lock.release()


def _train_run(
    config: RunConfig,
    path: Path,
    root: str | Path | None,
    ctx: distributed.Context,
    device: torch.device,
    callbacks: Sequence[Callback],
    progress: bool | None,
    data_root: str | Path | None,
) -> RunResult:
    if (path / "result.json").is_file():  # finished by another process while we waited for the lock
        return open_run(path)
    splits = make_splits(
        config.dataset,
        config.val_size,
        config.split_seed,
        config.train_size,
        data_root,
        val_indices=config.val_indices,
    )
    shape, classes = splits.info.input_shape, splits.info.num_classes
    if config.method_rule.source_of(config) and (path / "init.pt").is_file():
        # a run that starts from another run's network keeps it in its own init.pt: the source may have moved
        model = config.method_rule.architecture(config, shape, classes)
        model.load_state_dict(_load_checked(path / "init.pt", config)["model"])
    else:
        model = initial_network(config, shape, classes, root)
    if ctx.is_primary:
        remove_temporaries(path)  # of a write killed half-way; we own the folder now
    if (path / "config.json").is_file():
        saved = read_saved_config(path)
        if saved.get("hash") != config.hash:
            raise SlotlabError(
                f"{path} belongs to config {saved.get('hash')}, not {config.hash}; move it away"
            )
    elif ctx.is_primary:
        atomic_write_json(
            {"hash": config.hash, "name": config.name, "slotlab": __version__, "config": config.to_dict()},
            path / "config.json",
        )
    rebuild = None
    if ctx.is_primary and not (path / "init.pt").is_file():
        if config.method_rule.source_of(config):  # the source may move: keep its network now
            atomic_save({"config_hash": config.hash, "model": model.state_dict()}, path / "init.pt")
        else:  # the seeds make the same network again, once the first epoch shows the run can train

            def rebuild() -> dict[str, torch.Tensor]:
                return initial_network(config, shape, classes, root).state_dict()

    writers = [Checkpointer(path, config, rebuild)] if ctx.is_primary else []
    trainer = make_trainer(config, model, splits, device, [*callbacks, *writers], progress)
    resume = distributed.broadcast_object((path / "last.pt").is_file(), ctx)
    if resume:
        if not (path / "last.pt").is_file():
            raise SlotlabError(
                f"rank {ctx.rank} cannot see {path / 'last.pt'}, which rank 0 resumes from; put the runs folder "
                f"on a filesystem every node shares"
            )
        state = _load_checked(path / "last.pt", config, device)
        best = (
            _load_checked(path / "best.pt", config, device)["model"] if (path / "best.pt").is_file() else None
        )
        trainer.load_state_dict(state, best)
    result = trainer.fit()
    if ctx.is_primary:
        atomic_write_text(result.history.to_csv(index=False), path / "history.csv")
        atomic_write_json(result.metrics, path / "result.json")
    distributed.barrier(ctx)  # other ranks return once the folder is complete
    return RunResult(config, path, result.metrics, result.history)
