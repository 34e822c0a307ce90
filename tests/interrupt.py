"""A callback that stops training at a given optimiser step, as a Ctrl-C would: the resume tests use it."""

from slotlab.callback import Callback
from slotlab.train import Trainer


class Interrupt(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.step == self.at_step:
            raise KeyboardInterrupt
