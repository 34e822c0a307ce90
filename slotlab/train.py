"""One training loop for every method; periodic work plugs in as callbacks.

Protocol (the default, ``protocol="val"``): validation every epoch, the model of the best validation epoch kept,
the test set evaluated once at the end on that model. ``protocol="best-test"`` reproduces the papers' numbers:
the test set every epoch and the maximum reported, which is optimistic and labelled so in the results.

Randomness is derived per epoch: the data order and augmentation from (data_seed, epoch), dropout and sampled
selection from (sample_seed, epoch). A run resumed from the checkpoint of epoch e therefore replays epoch e + 1
exactly, and ends bit-identical (on the CPU) to a run that was never interrupted.

Precision (``TrainSettings.precision``): "fp32", or "bf16", which runs every forward pass of the loop (training
and evaluation) under ``torch.autocast`` to bfloat16 on the trainer's device; parameters, frozen values, gradients,
optimiser state and the loss stay float32.

Under torchrun the training step calls the model through DistributedDataParallel, each rank trains on its shard
of every global batch, and every metric is a sum reduced over ranks (``slotlab.distributed``); ``trainer.model``
stays the plain module, so callbacks edit and read it the same way on one process or many.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from slotlab import distributed
from slotlab.callback import Callback
from slotlab.data import Splits, epoch_generator, make_batches
from slotlab.init import stream_seed
from slotlab.layers.slot import SlotLayer

HISTORY_COLUMNS = ["epoch", "split", "loss", "accuracy", "lr", "seconds"]
PRECISIONS = ("fp32", "bf16")  # fp32: plain float32; bf16: the forward under bfloat16 autocast


@dataclass(frozen=True)
class TrainSettings:
    """What the loop reads of a run's config (``slotlab.config.RunConfig.train_settings()`` makes one)."""

    epochs: int
    batch_size: int = 128
    augment: bool = False
    label_smoothing: float = 0.0  # of the training loss (evaluation losses stay plain cross-entropy)
    normalize: bool = True  # standardise inputs by the dataset's mean and std (False: pixels in [0, 1])
    crop: bool = True  # with augment: random crop and flip (False: flip only)
    protocol: str = "val"  # val: select on validation, test once; best-test: the papers' max test accuracy
    data_seed: int = 0
    sample_seed: int = 0
    label: str = "train"  # the progress bar's name (the method)
    name: str = "run"  # the run's name (its folder name), for plots and messages
    # fp32, or bf16: forward passes (training and evaluation) under torch.autocast to bfloat16; the parameters,
    # the frozen values, the gradients, the optimiser and the loss stay float32
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class TrainingStopped(Exception):  # noqa: N818 (a stop the user asked for, not an error)
    """Raised by ``Trainer.fit`` when ``stop_requested`` was set before the last epoch: training ended after a
    complete epoch whose checkpoint is written, the run is unfinished and resumes from there when run again."""

    def __init__(self, epoch: int, epochs: int) -> None:
        super().__init__(f"stopped after epoch {epoch} of {epochs}")
        self.epoch, self.epochs = epoch, epochs


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the optimiser updates (and weight decay applies to): for slots the scores, for dense the weights."""
    return [p for p in model.parameters() if p.requires_grad]


def progress_enabled(progress: bool | None) -> bool:
    return (not os.environ.get("CI")) if progress is None else progress


def _epoch_seed(seed: int, epoch: int) -> int:
    return stream_seed(f"sampling-epoch-{epoch}", seed)


@dataclass
class Result:
    """What a finished training returns: the metrics and the per-epoch history."""

    metrics: dict[str, Any]
    history: pd.DataFrame
    model: nn.Module = field(repr=False)


class Trainer:
    """The loop, given everything it runs: the model, its optimiser and schedule, the callbacks (the method's own
    periodic work first, then the caller's). ``optimizer`` None trains nothing: the epochs only measure (a method
    with nothing to learn, such as random-slots)."""

    def __init__(
        self,
        settings: TrainSettings,
        model: nn.Module,
        splits: Splits,
        device: torch.device,
        optimizer: torch.optim.Optimizer | None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
    ) -> None:
        self.settings = config = settings
        self.device = device
        self.dist = distributed.current()
        self.model = model.to(device)
        # what the training step calls: the model itself, or the model wrapped in DDP under torchrun
        self.train_model = distributed.prepare_model(self.model, device, self.dist)
        self.splits = splits
        self.callbacks = list(callbacks)
        self.progress = progress_enabled(progress) and self.dist.is_primary
        rank, world = self.dist.rank, self.dist.world_size
        batch = distributed.rank_batch_size(config.batch_size, self.dist)
        self.train_batches = make_batches(
            splits.train,
            splits.info,
            batch,
            device,
            config.augment,
            rank,
            world,
            config.normalize,
            config.crop,
        )
        self.eval_batches = {
            name: make_batches(
                getattr(splits, name),
                splits.info,
                1000,
                device,
                rank=rank,
                world_size=world,
                normalize=config.normalize,
            )
            for name in ("val", "test")
        }
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.sample_generator = torch.Generator(device)
        for layer in self.model.modules():
            if isinstance(layer, SlotLayer):
                layer.generator = self.sample_generator
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.rows: list[dict[str, Any]] = []
        self.best_epoch = 0
        self.best_score = -1.0
        self.best_model_state: dict[str, torch.Tensor] | None = None
        self.improved = False  # set at the end of an epoch whose model is the new best
        # set by a callback (the Explorer's Stop button): the loop ends after the current epoch, whose callbacks
        # (the checkpoint) still run, and fit raises TrainingStopped instead of finishing the run
        self.stop_requested = False

    # --- loop ---------------------------------------------------------------------------------------------
    def fit(self) -> Result:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout's global RNG, without disturbing the caller's
            for cb in self.callbacks:
                cb.on_train_start(self)
            bar = self._progress_bar()
            while self.epoch < self.settings.epochs and not self.stop_requested:
                self._train_epoch(bar)
            if bar is not None:
                bar.close()
            if self.stop_requested and self.epoch < self.settings.epochs:
                raise TrainingStopped(self.epoch, self.settings.epochs)
            metrics = self._finish()
            for cb in self.callbacks:
                cb.on_train_end(self)
        return Result(metrics, self.history, self.model)

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        total = self.settings.epochs * len(self.train_batches)
        return tqdm(
            total=total,
            initial=self.epoch * len(self.train_batches),
            desc=self.settings.label,
            unit="step",
            dynamic_ncols=True,
        )

    def _train_epoch(self, bar) -> None:
        epoch, start = self.epoch, time.perf_counter()
        torch.manual_seed(_epoch_seed(self.settings.sample_seed, epoch))
        self.sample_generator.manual_seed(_epoch_seed(self.settings.sample_seed, epoch) ^ 1)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else 0.0
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for images, labels in self.train_batches.epoch(epoch_generator(self.settings.data_seed, epoch)):
            with self.autocast():
                logits = self.train_model(images)
            # float32 (a no-op for float32 logits); label smoothing as torch's (Szegedy et al. 2016, Sec. 7)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.settings.label_smoothing)
            if self.optimizer is not None:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self.step += 1
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += len(labels)
            for cb in self.callbacks:
                cb.on_step_end(self)
            if bar is not None:
                bar.update(1)
        distributed.average_batchnorm_statistics(self.model, self.dist)
        for cb in self.callbacks:
            cb.on_before_evaluate(self)
        if self.scheduler is not None:
            self.scheduler.step()
        train_seconds = distributed.all_reduce_max(time.perf_counter() - start, self.dist, self.device)
        loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
        self._log(epoch + 1, "train", loss_sum / seen, correct / seen, lr, train_seconds)
        self.epoch = epoch + 1
        val_loss, val_acc, seconds = self.evaluate("val")
        self._log(self.epoch, "val", val_loss, val_acc, lr, seconds)
        score = val_acc
        if self.settings.protocol == "best-test":
            test_loss, test_acc, seconds = self.evaluate("test")
            self._log(self.epoch, "test", test_loss, test_acc, lr, seconds)
            score = test_acc
        self.improved = score > self.best_score
        if self.improved:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_model_state = copy.deepcopy(self.model.state_dict())
        if bar is not None:
            bar.set_postfix(epoch=self.epoch, val=f"{val_acc:.4f}")
        for cb in self.callbacks:
            cb.on_epoch_end(self)

    def _finish(self) -> dict[str, Any]:
        val = self.history.query("split == 'val'")
        metrics: dict[str, Any] = {
            "protocol": self.settings.protocol,
            "best_epoch": self.best_epoch,
            "epochs": self.epoch,
            "val_accuracy": float(val["accuracy"].max()) if len(val) else float("nan"),
            "last_val_accuracy": float(val["accuracy"].iloc[-1]) if len(val) else float("nan"),
            "train_seconds": float(self.history.query("split == 'train'")["seconds"].sum()),
        }
        if self.settings.protocol == "best-test":
            test = self.history.query("split == 'test'")
            metrics["test_accuracy"] = float(test["accuracy"].max())
            metrics["test_loss"] = float(test.loc[test["accuracy"].idxmax(), "loss"])
            metrics["note"] = "best-test: maximum test accuracy over epochs (optimistic, as in the papers)"
        else:
            if self.best_model_state is not None:
                self.model.load_state_dict(self.best_model_state)
            test_loss, test_acc, seconds = self.evaluate("test")
            self._log(self.best_epoch, "test", test_loss, test_acc, float("nan"), seconds)
            metrics["test_accuracy"], metrics["test_loss"] = test_acc, test_loss
            metrics["note"] = "test evaluated once, on the model of the best validation epoch"
        return metrics

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[float, float, float]:
        """(loss, accuracy, seconds) of the current model on ``split`` in evaluation mode."""
        start = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for images, labels in self.eval_batches[split].epoch():
            with self.autocast():
                logits = self.model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
        self.model.train(was_training)
        loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
        seconds = distributed.all_reduce_max(time.perf_counter() - start, self.dist, self.device)
        return loss_sum / max(seen, 1), correct / max(seen, 1), seconds

    def autocast(self) -> torch.autocast:
        """The context of a forward pass: bfloat16 autocast on the trainer's device for precision bf16, a context
        that changes nothing for fp32."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.settings.precision == "bf16"
        )

    def _reduce(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> tuple[float, float, float]:
        """(loss sum, correct count, examples) summed over ranks, as Python numbers."""
        totals = torch.stack(
            [loss_sum.double(), correct.double(), loss_sum.new_tensor(seen, dtype=torch.float64)]
        )
        totals = distributed.all_reduce_sum(totals, self.dist).tolist()
        return totals[0], totals[1], totals[2]

    def _log(self, epoch: int, split: str, loss: float, accuracy: float, lr: float, seconds: float) -> None:
        self.rows.append(
            {"epoch": epoch, "split": split, "loss": loss, "accuracy": accuracy, "lr": lr, "seconds": seconds}
        )

    @property
    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)

    # --- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last completed epoch (tensors and plain Python only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "epoch": self.epoch,
            "step": self.step,
            "rows": self.rows,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks().items()},
        }

    def load_state_dict(
        self, state: dict[str, Any], best_model_state: dict[str, torch.Tensor] | None
    ) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.rows = list(state["rows"])
        self.best_epoch, self.best_score = state["best_epoch"], state["best_score"]
        self.best_model_state = best_model_state
        saved = state.get("callbacks", {})
        for key, cb in self._keyed_callbacks().items():
            if key in saved:
                cb.load_state_dict(saved[key])

    def _keyed_callbacks(self) -> dict[str, Callback]:
        """Callbacks by class name (numbered when repeated), so a resume may add or drop stateless ones."""
        keyed: dict[str, Callback] = {}
        for cb in self.callbacks:
            name = type(cb).__qualname__
            key, n = name, 1
            while key in keyed:
                n += 1
                key = f"{name}#{n}"
            keyed[key] = cb
        return keyed
