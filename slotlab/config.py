"""Run configurations: one typed, frozen dataclass per run, identified by a stable hash.

The hash covers only the fields that differ from their defaults (as in OpenLTH), so adding a field whose default
changes nothing keeps every existing run's hash and folder name. ``tests/test_config.py`` pins hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from slotlab.errors import SlotlabError

FIELD_HELP = {
    "method": "what is learned: see the method list",
    "model": "architecture: see the model list",
    "dataset": "dataset: see the dataset list",
    "k": "slots: random values per connection (K)",
    "selection": "slots: greedy (argmax of scores) or sampled (softmax of scores) during training",
    "eval_selection": "slots: selection at evaluation (greedy unless asked otherwise)",
    "init": "value initialisation: slots paper|code; dense glorot|kaiming; 'default' = the method's default",
    "epochs": "training epochs",
    "batch_size": "training batch size",
    "optimizer": "sgd or adam",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay, applied where the method puts it (the scores for slots)",
    "schedule": "learning-rate schedule: constant, cosine, step (x gamma at milestones), restarts (cosine, "
    "restarted at milestones)",
    "milestones": "epochs for the step and restarts schedules, e.g. 25,75",
    "gamma": "factor of the step schedule",
    "val_size": "validation examples held out of the training set (-1: the dataset's default)",
    "train_size": "use only this many training examples (0: all); for quick runs",
    "augment": "CIFAR augmentation: random crop (padding 4) and horizontal flip",
    "protocol": "val: select on validation, test once (default); best-test: the papers' max test accuracy "
    "over epochs (optimistic)",
    "source": "finetune: the run (hash or folder) whose found network is finetuned",
    # masks: Edge-Popup, Biprop, recycling
    "density": "edge-popup, biprop, random-mask: fraction of weights kept, in (0, 1]",
    "scope": "masks: layer (top density of each layer) or global (one threshold across layers)",
    "anneal_epochs": "masks, global scope, density <= 0.5: epochs over which the training density falls "
    "from 0.5 to the target (cubic)",
    "recycle_rate": "Iterative Weight Recycling: fraction of each layer's weights recycled per round (0: off)",
    "recycle_every": "recycling and IteRand: rounds every this many epochs (or steps, see --recycle-unit)",
    "recycle_unit": "recycling and IteRand: epoch or step",
    "recycle_donor": "recycling: top (copy the highest-score values) or next-lowest (the ablation)",
    "recycle_warmup": "recycling and IteRand: no round before this many epochs (or steps)",
    "iterand_rate": "IteRand: probability that a pruned weight is redrawn per round (0: off)",
    "binary_activations": "masks: BatchNorm + sign activations with the Bi-Real surrogate (MPT-1/1)",
    "learned_bn": "masks: learn BatchNorm scale and shift (the '+BN' variants)",
    # end of masks
    "weight_seed": "seed of the random weight values",
    "score_seed": "seed of the scores (and of the learned baseline's random choice)",
    "data_seed": "seed of the data order and augmentation",
    "sample_seed": "seed of sampled selection and dropout",
    "split_seed": "seed of the train/validation split",
    # LaPerm
    "sync_period": "laperm: sync every K optimiser steps (rows become permutations of their initial values)",
    "permute_bias": "laperm: also permute biases (skipped and trained freely by default)",
    "permute_norm": "laperm: also permute BatchNorm scales and shifts (skipped and trained freely by default)",
    "init_density": "laperm: fraction of each weight tensor left non-zero at initialisation (random sparse init); "
    "one value, or one per layer such as 1/15,1/7,1/3; empty: dense",
    "shared_value": "laperm: weight-agnostic start, every weight this one value before init_density's zeros "
    "(0: off)",
    # end of LaPerm
}

CHOICES = {
    "selection": ("greedy", "sampled"),
    "eval_selection": ("greedy", "sampled"),
    "optimizer": ("sgd", "adam"),
    "schedule": ("constant", "cosine", "step", "restarts"),
    "protocol": ("val", "best-test"),
    # masks
    "scope": ("layer", "global"),
    "recycle_unit": ("epoch", "step"),
    "recycle_donor": ("top", "next-lowest"),
    # LaPerm
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Runtime choices (device, progress bars, runs folder) are not in here."""

    method: str = "slots"
    model: str = "lenet300"
    dataset: str = "mnist"
    k: int = 8
    selection: str = "greedy"
    eval_selection: str = "greedy"
    init: str = "default"
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    val_size: int = -1
    train_size: int = 0
    augment: bool = False
    protocol: str = "val"
    source: str = ""
    # --- masks: Edge-Popup, Biprop, recycling (fields added below this line) ---
    density: float = 0.5
    scope: str = "layer"
    anneal_epochs: int = 10
    recycle_rate: float = 0.0
    recycle_every: int = 3
    recycle_unit: str = "epoch"
    recycle_donor: str = "top"
    recycle_warmup: int = 0
    iterand_rate: float = 0.0
    binary_activations: bool = False
    learned_bn: bool = False

    # --- end of masks ---
    weight_seed: int = 0
    score_seed: int = 0
    data_seed: int = 0
    sample_seed: int = 0
    split_seed: int = 0
    # --- LaPerm (fields added below this line) ---
    sync_period: int = 20
    permute_bias: bool = False
    permute_norm: bool = False
    init_density: str = ""
    shared_value: float = 0.0
    # --- end of LaPerm ---

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, f.type, value))
        self._validate()

    def _validate(self) -> None:
        from slotlab.data import dataset_names
        from slotlab.methods import METHODS
        from slotlab.models import model_names

        for name, valid in (
            ("method", list(METHODS)),
            ("model", model_names()),
            ("dataset", dataset_names()),
        ):
            if getattr(self, name) not in valid:
                raise SlotlabError(
                    f"unknown {name} {getattr(self, name)!r}; valid {name}s: {', '.join(valid)}"
                )
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise SlotlabError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        if self.k < 1:
            raise SlotlabError(f"k (values per connection) must be a whole number >= 1, got {self.k}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SlotlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size < 0:
            raise SlotlabError(f"train_size must be >= 0 (0: all training examples), got {self.train_size}")
        if self.val_size < -1 or (self.val_size == 0 and self.protocol == "val"):
            raise SlotlabError(
                f"val_size must be >= 1, or -1 for the dataset's default (0 only with protocol best-test, which "
                f"selects on the test set), got {self.val_size}"
            )
        for name in ("momentum", "weight_decay"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise SlotlabError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SlotlabError(f"lr must be a positive finite number, got {self.lr}")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise SlotlabError(f"milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        METHODS[self.method].validate(self)

    # --- identity -------------------------------------------------------------------------------------------
    def changed_fields(self) -> dict[str, Any]:
        """The fields that differ from their defaults, JSON-ready."""
        out = {}
        for f in fields(self):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value = getattr(self, f.name)
            if value != default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def hash(self) -> str:
        """12 hex digits of SHA-256 over the non-default fields; stable across versions that add fields."""
        canonical = json.dumps(self.changed_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.method}-{self.model}-{self.dataset}-{self.hash}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SlotlabError(f"unknown config fields {unknown}; valid fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Check and normalise one field, so that 0.1 and "0.1" or 8 and 8.0 give the same config and hash."""
    kind = str(annotation)
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
                raise ValueError
            return int(value)
        if kind == "float":
            result = float(value)
            if math.isnan(result):
                raise ValueError
            return result
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(_coerce(name, "int", v)) for v in items if str(v).strip() != "")
        return str(value)
    except (TypeError, ValueError):
        expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(kind, kind)
        raise SlotlabError(f"{name} must be {expected}, got {value!r}") from None
