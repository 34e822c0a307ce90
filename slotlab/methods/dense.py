"""Dense training: the weights themselves are learned (the baseline every paper compares against).

Recipe (Slot Machines' learned baselines): SGD with momentum 0.9, weight decay 1e-4, lr 0.01 with
cosine warm restarts at epochs 25 and 75; 200 epochs on Lenet-300-100, 330 on Conv-2/4/6, 320 on VGG-19. The CPU
scales train one cosine decay at lr 0.05, which converges within a few epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slotlab.layers.dense import DENSE_INITS, DenseFactory
from slotlab.layers.factory import LayerFactory
from slotlab.methods.base import Method, RunSpec
from slotlab.scales import Scale

RESTARTS: dict[str, Any] = {"schedule": "restarts", "milestones": (25, 75)}
SGD: dict[str, Any] = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4}


def paper_epochs(model: str, slots: bool) -> int:
    """Slot Machines' training setup: 200 epochs for slot machines (220 VGG-19); learned weights 200 on Lenet, 330 on
    Conv-2/4/6, 320 on VGG-19."""
    if slots:
        return 220 if model == "vgg19" else 200
    if model == "lenet300":
        return 200
    return 320 if model == "vgg19" else 330


def dense_recipe(scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
    if scale.is_paper:
        return {**SGD, **RESTARTS, "lr": 0.01, "epochs": paper_epochs(chosen["model"], slots=False)}
    return {**SGD, **scale.short_schedule(), "lr": 0.05}


class Dense(Method):
    name = "dense"
    description = "ordinary trained weights (the baseline)"
    inits = DENSE_INITS

    def layer_factory(self, config: RunSpec) -> LayerFactory:
        return DenseFactory(self.init_name(config))

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return dense_recipe(scale, chosen)
