"""Random slots: the worked example of adding a method (README, "Adding a method").

K random values per connection as in Slot Machines (Aladago & Torresani 2021, Eq. 1), but the slot each
connection uses is drawn uniformly once, from the score seed, and never learned: the baseline that shows what the
learned selection adds over a random choice among the same values. Nothing is trained; the run evaluates the
random network (one epoch is enough).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slotlab.methods.base import RunSpec, Shape, Source, Steps, option
from slotlab.methods.slots import K_STEPS, SlotOptions, Slots
from slotlab.models import Network
from slotlab.scales import Scale


@dataclass(frozen=True)
class RandomSlotOptions(SlotOptions):
    k: int = option(
        8, "values per connection (K), one picked at random", control=Steps(K_STEPS), label="K values"
    )


class RandomSlots(Slots):
    name = "random-slots"
    description = "baseline: one of K random values per connection chosen at random, nothing learned"
    options_type = RandomSlotOptions

    def initial_network(self, config: RunSpec, shape: Shape, classes: int, source: Source = None) -> Network:
        model = super().initial_network(config, shape, classes)
        for parameter in model.parameters():
            parameter.requires_grad_(False)  # the uniform random scores pick the slot; nothing learns
        return model

    def recipe(self, scale: Scale, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().recipe(scale, chosen), "epochs": 1}
