"""Run configurations: the common fields of every run plus the chosen method's own options, identified by a hash.

    RunConfig(method="edge-popup", density=0.3, lr=0.1)         # flat: common fields and the method's options
    config.options.density                                        # the options, typed per method
    config.lr

A field that the chosen method does not have is refused in one line that names the method's options, so that an
option a method ignores can never make a second run folder for one experiment. Fields left out take the method's
own defaults first (LaPerm: Adam at lr 1e-3, its paper's inner optimiser), then the global ones.

The hash covers only the fields that differ from the global defaults, flattened over common fields and options (as
in OpenLTH), so adding a field whose default changes nothing keeps every existing run's hash and folder name.
``tests/test_config.py`` pins hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from slotlab.data import dataset_info, dataset_names
from slotlab.errors import SlotlabError
from slotlab.methods import METHODS, Method, Options, get_method, methods_with_option, option_specs
from slotlab.models import check_width, model_names
from slotlab.scales import Scale, get_scale
from slotlab.train import PRECISIONS, TrainSettings

SEED_FIELDS = ("weight_seed", "score_seed", "data_seed", "sample_seed", "split_seed")

FIELD_HELP = {
    "method": "what is learned: see the method list",
    "model": "architecture: see the model list",
    "dataset": "dataset: see the dataset list",
    "init": "value initialisation (each method lists its own; 'default' = the method's default)",
    "width": "width multiplier: every hidden channel and unit count n becomes int(n * width), input and classes "
    "fixed (Edge-Popup's 'going wider'); 1 is the paper's model",
    "epochs": "training epochs",
    "batch_size": "training batch size",
    "optimizer": "sgd or adam",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay, applied where the method puts it (the scores for slots and masks)",
    "schedule": "learning-rate schedule: constant, cosine, step (x gamma at milestones), restarts (cosine, "
    "restarted at milestones)",
    "milestones": "epochs for the step and restarts schedules, e.g. 25,75",
    "warmup_epochs": "linear learning-rate warm-up epochs before the schedule (0: none)",
    "nesterov": "Nesterov momentum (SGD)",
    "norm_decay": "weight decay on BatchNorm parameters and biases too; false: none on them",
    "label_smoothing": "label smoothing of the training loss (0: plain cross-entropy)",
    "gamma": "factor of the step schedule",
    "val_size": "validation examples held out of the training set (-1: the dataset's default)",
    "train_size": "use only this many training examples (0: all); for quick runs",
    "augment": "CIFAR augmentation: random crop (padding 4) and horizontal flip",
    "crop": "with augment: random crop and flip; false: flip only (the released Slot Machines code's CIFAR-10)",
    "normalize": "standardise inputs by the dataset's mean and std; false: pixels in [0, 1] (the released Slot "
    "Machines code's MNIST)",
    "val_indices": "a file of the training-set indices held out for validation (.pt tensor or integers as text), "
    "instead of a seeded split of val_size; the run's hash holds the path, not the file's content",
    "protocol": "val: select on validation, test once (default); best-test: the papers' max test accuracy "
    "over epochs (optimistic)",
    "precision": "fp32 (default) or bf16: forward passes under bfloat16 autocast (parameters, gradients and "
    "optimiser stay float32)",
    "weight_seed": "seed of the random weight values",
    "score_seed": "seed of the scores (and of the learned baseline's random choice)",
    "data_seed": "seed of the data order and augmentation",
    "sample_seed": "seed of sampled selection and dropout",
    "split_seed": "seed of the train/validation split",
}

CHOICES = {
    "optimizer": ("sgd", "adam"),
    "schedule": ("constant", "cosine", "step", "restarts"),
    "protocol": ("val", "best-test"),
    "precision": PRECISIONS,
}


@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything that defines a run. Runtime choices (device, progress bars, runs folder) are not in here."""

    method: str = "slots"
    model: str = "lenet300"
    dataset: str = "mnist"
    init: str = "default"
    width: float = 1.0
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    warmup_epochs: int = 0
    nesterov: bool = False
    norm_decay: bool = True
    label_smoothing: float = 0.0
    val_size: int = -1
    train_size: int = 0
    augment: bool = False
    crop: bool = True
    normalize: bool = True
    val_indices: str = ""
    protocol: str = "val"
    precision: str = "fp32"
    weight_seed: int = 0
    score_seed: int = 0
    data_seed: int = 0
    sample_seed: int = 0
    split_seed: int = 0
    options: Options = field(default_factory=Options)  # the method's own options (``Method.options_type``)

    def __init__(self, **values: Any) -> None:
        method = get_method(str(values.get("method", "slots")))
        common = {f.name: f for f in fields(RunConfig) if f.name != "options"}
        given_options = values.pop("options", None)
        option_names = method.options_type.names()
        unknown = [n for n in values if n not in common and n not in option_names]
        for name in unknown:
            owners = methods_with_option(name)
            if owners:
                raise SlotlabError(
                    f"{name} is not an option of method {method.name}; {_options_phrase(method)} "
                    f"({name} belongs to {', '.join(owners)})"
                )
        if unknown:
            valid = sorted([*common, *option_specs()])
            raise SlotlabError(f"unknown config fields {sorted(unknown)}; valid fields: {', '.join(valid)}")
        # the method's defaults for the common fields the caller leaves out
        values = {**method.defaults, **values}
        for name, f in common.items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            object.__setattr__(self, name, _coerce(name, str(f.type), values.get(name, default)))
        if given_options is not None:
            if type(given_options) is not method.options_type:
                raise SlotlabError(
                    f"options of type {type(given_options).__name__} do not belong to method {method.name} "
                    f"(it takes {method.options_type.__name__})"
                )
            if any(n in values for n in option_names):
                raise SlotlabError("give a method's options either as fields or as options=, not both")
            options = given_options
        else:
            types = {f.name: str(f.type) for f in fields(method.options_type)}
            options = method.options_type(
                **{n: _coerce(n, types[n], values[n]) for n in option_names if n in values}
            )
        object.__setattr__(self, "options", options)
        if self.init == "default":  # resolved here, so that a config always says which init it means
            object.__setattr__(self, "init", method.inits[0])
        self._validate(method)

    def _validate(self, method: Method) -> None:
        for name, valid in (("model", model_names()), ("dataset", dataset_names())):
            if getattr(self, name) not in valid:
                raise SlotlabError(
                    f"unknown {name} {getattr(self, name)!r}; valid {name}s: {', '.join(valid)}"
                )
        if not (self.width > 0 and math.isfinite(self.width)):
            raise SlotlabError(
                f"width must be a positive finite multiplier (1: the paper's model), got {self.width}"
            )
        if self.width != 1:
            check_width(self.model, self.width, dataset_info(self.dataset).input_shape)
            if method.source_methods:
                raise SlotlabError(
                    f"method {method.name} takes its network, and its width, from its source run; leave width at 1"
                )
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise SlotlabError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        for spec in method.options_type.specs():
            value = getattr(self.options, spec.name)
            if spec.choices and value not in spec.choices:
                raise SlotlabError(f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}")
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
        if self.optimizer == "adam" and self.momentum != RunConfig.momentum:
            raise SlotlabError(
                "momentum applies to SGD; Adam keeps its own moment estimates: give --optimizer sgd or leave "
                "momentum out"
            )
        if self.augment and dataset_info(self.dataset).folder is not None:
            raise SlotlabError(
                f"{self.dataset} is always augmented (random resized crop and flip); leave augment out"
            )
        if not self.crop and not self.augment:
            raise SlotlabError(
                "crop false (flip only) applies to augmentation; give --augment or leave crop out"
            )
        if self.val_indices and (self.val_size != -1 or self.split_seed != 0):
            raise SlotlabError(
                "val_indices fixes the validation split; leave val_size and split_seed out when giving it"
            )
        for name in ("momentum", "weight_decay"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise SlotlabError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SlotlabError(f"lr must be a positive finite number, got {self.lr}")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise SlotlabError(f"milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        if self.milestones and self.schedule not in ("step", "restarts"):
            raise SlotlabError(
                f"milestones apply to the step and restarts schedules, not {self.schedule}; give --schedule step "
                f"or restarts, or leave them out"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise SlotlabError(
                f"warmup_epochs must be >= 0 and fewer than the {self.epochs} epochs, got {self.warmup_epochs}"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise SlotlabError(
                "nesterov applies to SGD with momentum > 0; give --momentum or leave nesterov out"
            )
        if not self.norm_decay and self.weight_decay == 0:
            raise SlotlabError(
                "norm_decay false exempts BatchNorm from weight decay; give --weight-decay too"
            )
        if not 0 <= self.label_smoothing < 1:
            raise SlotlabError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (0 < self.gamma and math.isfinite(self.gamma)):
            raise SlotlabError(
                f"gamma must be a positive finite number (the step schedule's factor), got {self.gamma}"
            )
        if self.gamma != RunConfig.gamma and self.schedule != "step":
            raise SlotlabError(
                f"gamma applies to the step schedule, not {self.schedule}; give --schedule step"
            )
        self.options.check()
        method.check(self)

    # --- identity -------------------------------------------------------------------------------------------
    @property
    def method_rule(self) -> Method:
        """The method object (``slotlab.methods``) that builds and trains this run."""
        return METHODS[self.method]

    def changed_fields(self) -> dict[str, Any]:
        """The fields (common and options, flattened) that differ from their defaults, JSON-ready."""
        out = {}
        for f in fields(self):
            if f.name == "options":
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name == "init":
                default = self.method_rule.inits[0]
            value = getattr(self, f.name)
            if value != default:
                out[f.name] = _jsonable(value)
        out.update({name: _jsonable(value) for name, value in self.options.changed().items()})
        return out

    @property
    def hash(self) -> str:
        """12 hex digits of SHA-256 over the non-default fields; stable across versions that add fields."""
        hashed = self.changed_fields()
        # the init is named unless it is the one "default" meant when hashes were fixed (Method.unhashed_init)
        hashed.pop("init", None)
        if self.init != self.method_rule.hash_neutral_init:
            hashed["init"] = self.init
        canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.method}-{self.model}-{self.dataset}-{self.hash}"

    def to_dict(self) -> dict[str, Any]:
        """Every field, flat (common fields and the method's options)."""
        common = [f.name for f in fields(self) if f.name != "options"]
        options = {f.name: _jsonable(getattr(self.options, f.name)) for f in fields(self.options)}
        head = {name: getattr(self, name) for name in common[:3]}  # method, model, dataset, then the options
        return {**head, **options, **{name: _jsonable(getattr(self, name)) for name in common[3:]}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from ``to_dict``'s form. Options of other methods at their defaults are dropped: a run folder
        written before configs had parts records every field of every method."""
        if not isinstance(data, Mapping):
            raise SlotlabError(f"a config is a mapping of field names to values, got {type(data).__name__}")
        method = get_method(str(data.get("method", "slots")))
        own = set(method.options_type.names())
        specs = option_specs()
        kept = {
            name: value
            for name, value in data.items()
            if name in own or name not in specs or _jsonable(value) != _jsonable(specs[name].default)
        }
        if kept.get("init") == "default":  # written before configs resolved it: the init it meant then
            kept["init"] = method.hash_neutral_init
        return cls(**kept)

    def replace(self, **changes: Any) -> RunConfig:
        """This config with ``changes``; changing the method keeps only the options the new method has."""
        given = {**self.changed_fields(), "init": self.init}
        if "method" in changes and changes["method"] != self.method:
            new_options = set(get_method(str(changes["method"])).options_type.names())
            given = {n: v for n, v in given.items() if n not in option_specs() or n in new_options}
            # the old method's defaults were filled in, not chosen
            filled = {**self.method_rule.defaults, "init": self.method_rule.inits[0]}
            given = {n: v for n, v in given.items() if filled.get(n) != v}
        return RunConfig(**{**given, **changes})

    def train_settings(self) -> TrainSettings:
        """What the training loop reads of this config."""
        return TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            augment=self.augment,
            label_smoothing=self.label_smoothing,
            normalize=self.normalize,
            crop=self.crop,
            protocol=self.protocol,
            data_seed=self.data_seed,
            sample_seed=self.sample_seed,
            label=self.method,
            name=self.name,
            precision=self.precision,
        )


# Named training recipes: fields a run takes unless it names them itself (``recipe_config``, ``--recipe``).
RECIPES: dict[str, dict[str, Any]] = {
    # the ImageNet recipe of Edge-Popup (hidden-networks configs/largescale/subnetonly) and Biprop: SGD with
    # momentum 0.875 (plain: the configs leave nesterov at its default, off), lr 0.256 for batch 256, 5 linear
    # warm-up epochs then cosine, label smoothing 0.1, weight decay 3.0517578125e-5 (not on BatchNorm, which
    # matters only where BatchNorm is learned), 100 epochs
    "imagenet": {
        "optimizer": "sgd",
        "lr": 0.256,
        "momentum": 0.875,
        "weight_decay": 3.0517578125e-5,
        "norm_decay": False,
        "schedule": "cosine",
        "warmup_epochs": 5,
        "label_smoothing": 0.1,
        "batch_size": 256,
        "epochs": 100,
    },
}


def recipe_config(recipe: str, **fields_: Any) -> RunConfig:
    """A config with the fields of the named ``recipe`` (``RECIPES``), ``fields_`` overriding them."""
    if recipe not in RECIPES:
        raise SlotlabError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    return RunConfig(**{**RECIPES[recipe], **fields_})


def _options_phrase(method: Method) -> str:
    names = method.options_type.names()
    return f"its options are: {', '.join(names)}" if names else "it has no options of its own"


def scaled_config(scale: str | Scale | None, method: str = "slots", **choices: Any) -> RunConfig:
    """A full config for ``method`` with ``choices`` (model, dataset, k, seeds...) at ``scale``'s size.

    What the caller leaves out comes from the method's recipe at that scale (``Method.recipe``), then from the
    method's own defaults; the dataset is swapped where the scale does so (smoke: synthetic). Fields the caller
    names always win.
    """
    scale = get_scale(scale)
    rule = get_method(method)
    chosen = {"model": "lenet300", "dataset": "mnist", **choices, "method": method}
    chosen["dataset"] = scale.dataset(chosen["dataset"])
    sizes: dict[str, Any] = {"train_size": scale.train_size, "val_size": scale.val_size}
    return RunConfig(**{**sizes, **rule.recipe(scale, chosen), **chosen})


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, kind: str, value: Any) -> Any:
    """Check and normalise one field, so that 0.1 and "0.1" or 8 and 8.0 give the same config and hash."""
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
