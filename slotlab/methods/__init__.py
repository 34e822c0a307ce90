"""The methods, one file per paper; this registry only lists them.

| file             | methods                          | paper                                                        |
|------------------|----------------------------------|--------------------------------------------------------------|
| slots.py         | slots, learned, finetune         | Aladago & Torresani, ICML 2021 (Slot Machines)               |
| masks.py         | edge-popup, biprop, random-mask  | Ramanujan et al. 2020; Diffenderfer & Kailkhura 2021;        |
|                  | (+ recycling, IteRand)           | Gorbett & Whitley 2023; Chijiwa et al. 2021                  |
| supermask.py     | supermask                        | Zhou et al., NeurIPS 2019 (Edge-Popup's baseline)            |
| mask_finetune.py | mask-finetune                    | Ramanujan et al. 2020 (weights trained under a found mask)   |
| laperm.py        | laperm, random-permutation       | Qiu & Suda, NeurIPS 2020 (LaPerm)                            |
| dense.py         | dense                            | the baseline                                                 |
| random_slots.py  | random-slots                     | the worked example of adding a method                        |

Adding a method: a file here with an ``Options`` dataclass and a ``Method`` subclass (``slotlab.methods.base``),
and one line below.
"""

from __future__ import annotations

from slotlab.errors import SlotlabError
from slotlab.methods.base import Method, Options, OptionSpec, RunSpec, SourceNetwork
from slotlab.methods.dense import Dense
from slotlab.methods.laperm import LaPerm, RandomPermutation
from slotlab.methods.mask_finetune import MaskFinetune
from slotlab.methods.masks import Biprop, EdgePopup, RandomMask
from slotlab.methods.random_slots import RandomSlots
from slotlab.methods.slots import Finetune, Learned, Slots
from slotlab.methods.supermask import Supermask

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Slots(),
        Dense(),
        Learned(),
        Finetune(),
        EdgePopup(),
        Biprop(),
        RandomMask(),
        Supermask(),
        MaskFinetune(),
        LaPerm(),
        RandomSlots(),
        RandomPermutation(),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise SlotlabError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def option_specs() -> dict[str, OptionSpec]:
    """Every method's options by name (an option several methods share, such as ``k``, once)."""
    specs: dict[str, OptionSpec] = {}
    for method in METHODS.values():
        for spec in method.options_type.specs():
            specs.setdefault(spec.name, spec)
    return specs


def methods_with_option(name: str) -> list[str]:
    return [m.name for m in METHODS.values() if name in m.options_type.names()]


__all__ = [
    "METHODS",
    "Method",
    "OptionSpec",
    "Options",
    "RunSpec",
    "SourceNetwork",
    "get_method",
    "methods_with_option",
    "option_specs",
]
