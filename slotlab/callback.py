"""The trainer's callback base: periodic work during training (recycling, LaPerm syncs, checkpoints, recorders).

It imports nothing of slotlab, so that every method's periodic work can subclass it without reaching the loop.
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Periodic work during training. Every hook receives the trainer; override the ones you need.

    Order within an epoch: ``on_step_end`` after every optimiser step; ``on_before_evaluate`` once the epoch's
    steps are done and before validation (in-place weight edits that evaluated networks must include, such as a
    LaPerm sync, go here); ``on_epoch_end`` after validation (checkpoints, snapshots).

    A callback with state that must survive a resume (a generator, a step counter, saved initial values)
    returns it from ``state_dict`` (tensors and plain Python only); the trainer stores it in ``last.pt``.
    """

    def on_train_start(self, trainer: Any) -> None: ...

    def on_step_end(self, trainer: Any) -> None: ...

    def on_before_evaluate(self, trainer: Any) -> None: ...

    def on_epoch_end(self, trainer: Any) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
