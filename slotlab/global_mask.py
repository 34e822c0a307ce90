"""Global-scope masks: one threshold on |scores| across all masked layers, and the annealed density for it.

Layer scope keeps the top d fraction of every layer; global scope keeps the top d fraction of all masked weights
together (``GlobalSubnetConv`` in the released Biprop code, chrundle/biprop ``utils/conv_type.py``), so layers
end with different densities. Exactly floor(d * N + 1/2) weights are kept in all; ties at the threshold go to the
earlier layer (module order), then to the lower flat index, as in ``top_mask`` of the concatenated |scores|. The
threshold is found by a ``TopKSelector`` warm-started from the previous step's (counting passes per layer; no
concatenation unless the scores jumped or entries tie).

Annealing (released biprop ``main.py``): for a target density d <= 1/2, the training density of epoch e (from 0)
falls from 1/2 to d over the first E epochs on a cubic,

    d_e = d + (1/2 - d) * (1 - e / E)^3    for e < E,   d afterwards,

to avoid layer collapse at high sparsity. The evaluation rule always uses the target d, so that every validation
score (and so the choice of the best epoch) is a score of the network at the density asked for.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from slotlab.callback import Callback
from slotlab.layers.edge_popup import MaskedLayer, Selection, TopKSelector, kept_count


def annealed_density(target: float, epoch: int, anneal_epochs: int) -> float:
    """Training density of ``epoch`` (0-based) under the cubic schedule; ``target`` when not annealed."""
    if target > 0.5 or epoch >= anneal_epochs:
        return target
    return target + (0.5 - target) * (1 - epoch / anneal_epochs) ** 3


class GlobalScope:
    """Computes the top-k of a set of layers with one threshold; layers ask it through ``selection_of``.

    Within one forward pass of the model the masks are computed once (by the first masked layer) and shared: hooks
    on the model open and close that window. Outside it (a layer called on its own, ``selection()`` after an
    optimiser step) every request recomputes them. (Score version counters cannot be trusted for this: fused
    optimisers update parameters without bumping them.)
    """

    def __init__(self, layers: list[MaskedLayer], density: float) -> None:
        self.layers = list(layers)
        self.density = density  # the target, used in evaluation
        self.train_density = density  # set by DensityAnnealing
        self.total = sum(layer.scores.numel() for layer in self.layers)
        self.selector = TopKSelector()
        self._in_forward = False
        self._cached: tuple[bool, list[Selection]] | None = None

    def kept(self, training: bool) -> int:
        return kept_count(self.train_density if training else self.density, self.total)

    def compute(self, training: bool) -> list[Selection]:
        """Fresh selections of all layers, one threshold over all their |scores|."""
        return self.selector.select([layer.scores for layer in self.layers], self.kept(training))

    def selection_of(self, layer: MaskedLayer) -> Selection:
        index = next(i for i, other in enumerate(self.layers) if other is layer)
        if not self._in_forward:
            return self.compute(layer.training)[index]
        if self._cached is None or self._cached[0] != layer.training:
            self._cached = (layer.training, self.compute(layer.training))
        return self._cached[1][index]

    def _open(self, module: nn.Module, args: tuple) -> None:
        self._in_forward, self._cached = True, None

    def _close(self, module: nn.Module, args: tuple, output: object) -> None:
        self._in_forward, self._cached = False, None


def attach_global_scope(model: nn.Module, density: float) -> GlobalScope:
    """Make every masked layer of ``model`` take its mask from one shared global threshold."""
    layers = [m for m in model.modules() if isinstance(m, MaskedLayer)]
    scope = GlobalScope(layers, density)
    for layer in layers:
        layer.global_scope = scope
    model.register_forward_pre_hook(scope._open)
    model.register_forward_hook(scope._close, always_call=True)
    return scope


def global_scope_of(model: nn.Module) -> GlobalScope | None:
    for m in model.modules():
        if isinstance(m, MaskedLayer) and m.global_scope is not None:
            return m.global_scope
    return None


class DensityAnnealing(Callback):
    """Sets the global scope's training density for each epoch (stateless: a function of the epoch)."""

    def __init__(self, anneal_epochs: int) -> None:
        self.anneal_epochs = anneal_epochs

    def _set(self, trainer: Any) -> None:
        scope = global_scope_of(trainer.model)
        if scope is not None:
            scope.train_density = annealed_density(scope.density, trainer.epoch, self.anneal_epochs)

    def on_train_start(self, trainer: Any) -> None:
        self._set(trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        self._set(trainer)  # trainer.epoch now counts the finished epoch: the next one's density
