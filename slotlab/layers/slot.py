"""Slot Machines (Aladago & Torresani, ICML 2021, arXiv 2101.06475): K fixed random values per connection.

Each connection (i, j) holds K frozen random values ``W[k, i, j]`` and K learned scores ``S[k, i, j]``. The
forward pass uses one value per connection (paper Eq. 1, 2):

    greedy (GS):        k* = argmax_k S[k, i, j]
    probabilistic (PS): k* ~ Categorical(softmax_k S[:, i, j]), drawn anew every forward pass
    W_eff[i, j] = W[k*, i, j]

and the scores learn through the straight-through estimator (paper Eq. 3), for every k, not only the chosen one:

    dL/dS[k, i, j] = dL/dW_eff[i, j] * W[k, i, j]

Layout: values and scores are stored slot-major, shape (K, *weight_shape), so each slot is one contiguous plane.
That makes the argmax a vectorised reduction over planes and lets sampling stream over the K planes with
one-connection-sized temporaries: no K-sized one-hot (the released code builds ``eye(K)[idx]`` every forward).

How the score gradient reaches the optimiser is the layer's ``grad_path``, one of three strategies
(``set_grad_path`` installs one; ``use_autograd_grads`` switches a whole model):

    InPlaceGrad   (the default) dS into a buffer the layer keeps between steps, as ``scores.grad``
    AutogradGrad  dS returned to autograd as usual: ``torch.autograd.grad``, DistributedDataParallel's hooks
    HandOverGrad  only dL/dW_eff (*weight_shape), kept for ``slotlab.slot_sgd.SlotSGD``, which installs it

Initialisation (Aladago & Torresani, ICML 2021, "Slot Machines", Sec. 3; "code" follows the authors' released
code), with fan_in/fan_out of one weight (K ignored):
    "paper": W ~ U(-s, s), s = sqrt(2 / (fan_in + fan_out)); S ~ U(0, lambda * s), lambda = 1 (conv), 0.1 (linear)
    "code":  W ~ U(-s, s), s = sqrt(6 / (fan_in + fan_out)); S ~ U(0, s)
A layer's default is "paper"; the slots method's is "code", the one that reaches the paper's Lenet-300-100 numbers
(the experiment ``slot-machines/init`` sets the two against them).

Weight sharing (Aladago & Torresani 2021, Sec. 4): ``sharing="layer"`` gives every connection of a layer the same K
values (one set per layer, drawn from the layer's bound), ``sharing="global"`` one set for the whole network
(drawn once from the weight seed's stream with the bound of the first layer the factory builds; every layer holds
a copy of the same K numbers). Scores, selection and the straight-through gradient are unchanged: every
connection still has its own K scores. The layer then stores only the K values (buffer ``shared_values``, (K,)),
and ``values`` is a broadcast view (K, *weight_shape) of them that holds no memory: the values cost K floats per
layer instead of K per connection.
"""

from __future__ import annotations

import hashlib
import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from slotlab.compiled import per_device
from slotlab.layers.factory import LayerFactory, fans

SLOT_INITS = ("paper", "code")
SELECTIONS = ("greedy", "sampled")
SHARINGS = ("none", "layer", "global")


class GradPath:
    """How a slot layer's backward delivers the straight-through score gradient dS[k] = dW_eff * W[k].

    A strategy serves one layer (``SlotLayer.set_grad_path`` refuses one installed on another layer): the
    stateful ones keep that layer's buffers. A copy (``copy.deepcopy`` of a model, pickling) belongs to no layer
    until installed.
    """

    _owner: weakref.ref | None = None

    def backward(self, layer: SlotLayer, values: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
        """What autograd gets for the scores: dS (K, *weight_shape), or None where the gradient went elsewhere.

        values: (K, *weight_shape), the frozen W; grad: (1, *weight_shape) contiguous, dL/dW_eff.
        """
        raise NotImplementedError

    def score_grad(self, layer: SlotLayer) -> torch.Tensor | None:
        """dL/dS (K, *weight_shape) of the backward passes since the last zero_grad, or None."""
        return layer.scores.grad

    def _bind(self, layer: SlotLayer) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not layer:
            raise ValueError(
                f"this {type(self).__name__} serves another slot layer; give each layer its own instance"
            )
        self._owner = weakref.ref(layer)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AutogradGrad(GradPath):
    """dS = W * dW_eff (K, *weight_shape), a fresh tensor handed back to autograd: what ``torch.autograd.grad``
    and DistributedDataParallel's gradient hooks see, and what an ordinary autograd Function would do."""

    def backward(self, layer: SlotLayer, values: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
        return values * grad


class InPlaceGrad(GradPath):
    """dS written into a K-sized buffer (K, *weight_shape) kept between steps and set as ``scores.grad``;
    accumulated with ``addcmul_`` while ``scores.grad`` exists (several backward passes sum, as in autograd).

    Why: a fresh K-sized tensor every step costs the CPU more in page faults than the multiplication itself.
    The buffer is scratch memory: copies of the strategy start without it. ``torch.autograd.grad`` and DDP do not
    see this gradient (it bypasses autograd); use ``AutogradGrad`` there.
    """

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None  # (K, *weight_shape)

    def backward(self, layer: SlotLayer, values: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
        scores = layer.scores
        if scores.grad is None:
            buffer = self.buffer
            if buffer is None or buffer.shape != scores.shape or buffer.device != scores.device:
                # the scores' shape: shared values are a broadcast view, the gradient is K per connection
                buffer = self.buffer = torch.empty_like(scores, memory_format=torch.contiguous_format)
            scores.grad = torch.mul(values, grad, out=buffer)
        else:
            scores.grad.addcmul_(values, grad)
        return None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["buffer"] = None
        return state


class HandOverGrad(GradPath):
    """Only dL/dW_eff, kept in ``pending`` (*weight_shape) and summed over backward passes; ``scores.grad`` stays
    unset. ``slotlab.slot_sgd.SlotSGD`` installs it and applies dS[k] = dW_eff * W[k] inside its fused update.

    Why: materialising dS costs 2K floats of memory traffic per connection and step (the backward writes it, the
    optimiser reads it back), on top of the 5K the update itself moves. ``previous`` is the strategy it replaced,
    which its owner puts back; a copy of the layer is not in the optimiser's charge and gets a copy of
    ``previous`` instead (a deep-copied model trains with any optimiser).
    """

    def __init__(self, previous: GradPath | None = None) -> None:
        self.previous = previous if previous is not None else InPlaceGrad()
        self.pending: torch.Tensor | None = None  # (*weight_shape)

    def backward(self, layer: SlotLayer, values: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
        if self.pending is None:
            self.pending = grad.squeeze(0)
        else:
            self.pending.add_(grad.squeeze(0))
        return None

    def score_grad(self, layer: SlotLayer) -> torch.Tensor | None:
        if layer.scores.grad is not None:
            return layer.scores.grad
        if self.pending is None:
            return None
        return layer.values * self.pending.unsqueeze(0)

    def clear(self) -> None:
        self.pending = None

    def __reduce__(self):
        return self.previous.__reduce_ex__(2)


class _StraightThroughSelect(torch.autograd.Function):
    """Forward: W_eff = W[k*] with k* from ``index`` (sampled) or the greedy rule (``index`` None).

    Backward: the gradient passes straight through to every slot's score, dS[k] = dW_eff * W[k], delivered by
    the layer's ``grad_path`` (see ``GradPath``).
    """

    @staticmethod
    def forward(ctx, scores, values, index, layer):
        # scores, values: (K, *shape); index: (*shape) int64 or None
        ctx.save_for_backward(values)
        ctx.layer = layer
        if index is None:
            return greedy_weight(scores, values)
        return values.gather(0, index.unsqueeze(0)).squeeze(0)

    @staticmethod
    def backward(ctx, grad_weight: torch.Tensor):
        (values,) = ctx.saved_tensors
        # contiguous: the weight gradient of F.linear arrives transposed, and a strided broadcast is ~5x slower.
        # The values' dtype: under autocast the layer computes in bf16, but W_eff is float32 (autocast's cast hands
        # float32 back already; a gradient of another dtype is cast here, so every grad path gets float32)
        grad = grad_weight.contiguous().to(values.dtype).unsqueeze(0)
        layer = ctx.layer
        return layer.grad_path.backward(layer, values, grad), None, None, None


def greedy_index(scores: torch.Tensor) -> torch.Tensor:
    """argmax over the slot axis of ``scores`` (K, *shape) -> (*shape) int64; ties go to the lowest slot."""
    return scores.max(dim=0).indices  # max(0) is ~10x faster than argmax(0) on the CPU and has the same rule


def _greedy_planes(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values[argmax_k scores] as a running maximum over the K planes; a strict > keeps the lowest slot on ties.

    Compiled (``_compiled_greedy``), this is one pass that reads scores and values once.
    """
    best, weight = scores[0], values[0]
    for slot in range(1, scores.shape[0]):
        take = scores[slot] > best
        best = torch.where(take, scores[slot], best)
        weight = torch.where(take, values[slot], weight)
    return weight


def _greedy_probe() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand((3, 41), generator=gen)
    scores[1, :5] = scores[0, :5]  # ties
    return scores, torch.rand((3, 41), generator=gen)


# device type -> the compiled ``_greedy_planes`` checked on that device (inductor C++ on "cpu", Triton on
# "cuda"), or None
_greedy_kernels = per_device(_greedy_planes, _greedy_probe)


def _compiled_greedy():
    """The per-device lookup of the compiled running maximum (``device_type -> kernel or None``). A stand-in
    returning None turns the compiled kernel off on every device (tests do, for the eager path)."""
    return _greedy_kernels


def _greedy_kernel(device: torch.device):
    """The compiled running maximum for ``device``'s type, or None (the eager rule)."""
    kernels = _compiled_greedy()
    return kernels(device.type) if kernels is not None else None


@torch.no_grad()
def greedy_weight(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values[argmax_k scores] without an index tensor: the hot path of greedy training.

    Where a compiled kernel exists for the device (``_compiled_greedy``: the CPU and CUDA, where torch.compile
    works and its kernel matched the eager one on a probe there), a running maximum over the planes in one pass.
    Otherwise it streams over the K planes with 0/1 float masks, which the CPU vectorises far better than an
    arg-reduction or a boolean select; the sum is exact because exactly one term per connection is non-zero.
    Both rules give the same bits.
    """
    if scores.shape[0] > 1 and scores.dtype == torch.float32 and values.dtype == torch.float32:
        compiled = _greedy_kernel(scores.device)
        if compiled is not None:
            k = scores.shape[0]
            flat_scores, flat_values = scores.detach().reshape(k, -1), values.reshape(k, -1)
            if torch.is_autocast_enabled(scores.device.type):
                # the kernel was traced and checked without autocast (it has no op autocast would cast anyway)
                with torch.autocast(scores.device.type, enabled=False):
                    return compiled(flat_scores, flat_values).view(scores.shape[1:])
            return compiled(flat_scores, flat_values).view(scores.shape[1:])
    peak = scores.amax(dim=0)
    weight = torch.zeros_like(peak)
    taken = torch.zeros_like(peak)
    hit = torch.empty_like(peak)
    for slot in range(scores.shape[0]):
        torch.ge(scores[slot], peak, out=hit)  # 1.0 where this slot holds the maximum
        hit.sub_(taken).clamp_min_(0)  # ...unless a lower slot already did (ties go to the lowest)
        taken.add_(hit)
        weight.addcmul_(values[slot], hit)
    return weight


def sample_index(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per connection from softmax over the slot axis of ``scores`` (K, *shape) -> (*shape) int64.

    Inverse-CDF sampling streamed over the K planes: every temporary is one connection-sized plane, so memory
    stays at (K + a few) floats per connection whatever K is.
    """
    k = scores.shape[0]
    peak = scores.amax(dim=0)  # subtracting the max keeps exp() finite for the huge PS learning rates
    total = torch.zeros_like(peak)
    for slot in range(k):
        total += (scores[slot] - peak).exp_()
    threshold = torch.rand(peak.shape, generator=generator, device=scores.device, dtype=scores.dtype) * total
    index = torch.zeros(peak.shape, dtype=torch.long, device=scores.device)
    cumulative = torch.zeros_like(peak)
    for slot in range(k - 1):  # index = number of slots whose cumulative mass is still <= threshold
        cumulative += (scores[slot] - peak).exp_()
        index += cumulative <= threshold
    return index


def _global_values_seed(seed: int) -> int:
    """The seed of the network-wide value set's own stream, from the value generator's seed (the construction of
    ``slotlab.init.stream_seed``, which this module cannot import: slotlab.init imports the layers)."""
    digest = hashlib.sha256(f"global-slot-values:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def check_sharing(sharing: str) -> str:
    if sharing not in SHARINGS:
        raise ValueError(f"sharing must be one of {', '.join(SHARINGS)}, got {sharing!r}")
    return sharing


class SlotLayer(nn.Module):
    """Shared state and rule of ``SlotLinear`` and ``SlotConv2d``."""

    values: torch.Tensor  # (K, *weight_shape), frozen; a broadcast view of ``shared_values`` (K,) when shared
    scores: nn.Parameter  # (K, *weight_shape), learned

    def _setup(
        self,
        weight_shape: tuple[int, ...],
        k: int,
        selection: str,
        init: str,
        is_conv: bool,
        sharing: str = "none",
        global_bound: float | None = None,
    ) -> None:
        self.k = k
        self.sharing = check_sharing(sharing)
        # the bound of the network-wide value set (``sharing="global"``); None: this layer's own bound
        self.global_bound = global_bound
        # not ``self.selection``: that name is the SelectingLayer method the analyses call
        self.train_selection = selection
        self.eval_selection = "greedy"
        self.init = init
        self.is_conv = is_conv
        self.weight_shape = weight_shape
        if sharing == "none":
            self.register_buffer("values", torch.empty((k, *weight_shape)))
        else:  # K numbers for the whole layer; ``values`` is a view of them (see __getattr__)
            self.register_buffer("shared_values", torch.empty(k))
        self.scores = nn.Parameter(torch.empty((k, *weight_shape)))
        self.generator: torch.Generator | None = None  # for sampled selection; set by the trainer
        self.grad_path: GradPath = InPlaceGrad()
        self.grad_path._bind(self)

    def __getattr__(self, name: str):
        # ``values`` of a sharing layer: the (K,) buffer broadcast to (K, *weight_shape), a view without memory,
        # so that every reader (kernels, gradient paths, analyses) sees the same shape in every mode
        if name == "values":
            shared = self.__dict__.get("_buffers", {}).get("shared_values")
            if shared is not None:
                ones = (1,) * len(self.weight_shape)
                return shared.view(self.k, *ones).expand(self.k, *self.weight_shape)
        return super().__getattr__(name)

    def _bound(self) -> float:
        fan_in, fan_out = fans(self.weight_shape)
        return math.sqrt((2.0 if self.init == "paper" else 6.0) / (fan_in + fan_out))

    def init_values(self, generator: torch.Generator) -> None:
        if self.sharing == "global":
            # the same K numbers in every layer: a stream of their own, derived from the value generator's seed
            # (so the draw does not depend on the layer's place in the walk)
            own = torch.Generator().manual_seed(_global_values_seed(generator.initial_seed()))
            bound = self.global_bound if self.global_bound is not None else self._bound()
            self.shared_values.copy_(torch.rand(self.k, generator=own) * (2 * bound) - bound)
            return
        bound = self._bound()
        target = self.values if self.sharing == "none" else self.shared_values
        drawn = torch.rand(target.shape, generator=generator) * (2 * bound) - bound
        target.copy_(drawn)

    def init_scores(self, generator: torch.Generator) -> None:
        scale = 0.1 if (self.init == "paper" and not self.is_conv) else 1.0
        drawn = torch.rand(self.scores.shape, generator=generator) * (scale * self._bound())
        with torch.no_grad():
            self.scores.copy_(drawn)

    @torch.no_grad()
    def selection(self) -> torch.Tensor:
        """The greedy slot index per connection, (*weight_shape), uint8 (int16 when K > 256): what analyses record."""
        return greedy_index(self.scores).to(torch.uint8 if self.k <= 256 else torch.int16)

    def set_grad_path(self, path: GradPath) -> GradPath:
        """Install ``path`` as this layer's score-gradient strategy; returns the one it replaces."""
        if not isinstance(path, GradPath):
            raise TypeError(f"grad_path must be a GradPath, not {type(path).__name__}")
        path._bind(self)
        previous, self.grad_path = self.grad_path, path
        return previous

    @torch.no_grad()
    def score_grad(self) -> torch.Tensor | None:
        """dL/dS (K, *weight_shape) of the last backward passes, whatever the strategy: ``scores.grad``, or built
        from the dL/dW_eff handed over to ``SlotSGD`` (whose step consumes it); None when there is neither."""
        return self.grad_path.score_grad(self)

    def _rule(self) -> str:
        return self.train_selection if self.training else self.eval_selection

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses, (*weight_shape); differentiable with respect to the scores."""
        index = sample_index(self.scores.detach(), self.generator) if self._rule() == "sampled" else None
        return _StraightThroughSelect.apply(self.scores, self.values, index, self)

    def extra_repr(self) -> str:
        shared = "" if self.sharing == "none" else f", sharing={self.sharing}"
        return f"{self.weight_shape}, k={self.k}, selection={self.train_selection}, init={self.init}{shared}"


def use_autograd_grads(model: nn.Module) -> int:
    """Give every slot layer of ``model`` its own ``AutogradGrad`` (for DDP or ``torch.autograd.grad``); returns
    how many layers it switched. A layer a ``SlotSGD`` had in charge then takes that optimiser's plain SGD step."""
    layers = [m for m in model.modules() if isinstance(m, SlotLayer)]
    for layer in layers:
        layer.set_grad_path(AutogradGrad())
    return len(layers)


class SlotLinear(SlotLayer):
    """A linear layer with K random values per connection and no bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        k: int,
        selection: str = "greedy",
        init: str = "paper",
        sharing: str = "none",
        global_bound: float | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._setup((out_features, in_features), k, selection, init, False, sharing, global_bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight())


class SlotConv2d(SlotLayer):
    """A 2-D convolution with K random values per connection and no bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        k: int,
        stride: int = 1,
        padding: int = 0,
        selection: str = "greedy",
        init: str = "paper",
        sharing: str = "none",
        global_bound: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self._setup(shape, k, selection, init, True, sharing, global_bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), stride=self.stride, padding=self.padding)


class SlotFactory(LayerFactory):
    """Slot Machines: every linear and conv layer holds K random values per connection (``sharing="none"``), or
    chooses among its layer's K values (``"layer"``) or the network's (``"global"``, Sec. 4).

    With global sharing the factory fixes the set's bound to the first layer it builds (the network's input
    layer), so that one factory makes one network whose layers all hold the same K numbers.
    """

    name = "slots"

    def __init__(
        self,
        k: int,
        selection: str = "greedy",
        init: str = "paper",
        bn_affine: bool = False,
        eval_selection: str = "greedy",
        sharing: str = "none",
    ) -> None:
        super().__init__(bn_affine=bn_affine)
        self.k, self.selection, self.init, self.eval_selection = k, selection, init, eval_selection
        self.sharing = check_sharing(sharing)
        self.global_bound: float | None = None  # set by the first layer built under global sharing

    def _finish(self, layer: SlotLayer) -> SlotLayer:
        layer.eval_selection = self.eval_selection
        if self.sharing == "global":
            if self.global_bound is None:
                self.global_bound = layer._bound()
            layer.global_bound = self.global_bound
        return layer

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return self._finish(
            SlotLinear(in_features, out_features, self.k, self.selection, self.init, self.sharing)
        )

    def conv2d(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module:
        layer = SlotConv2d(
            in_channels,
            out_channels,
            kernel_size,
            self.k,
            stride,
            padding,
            self.selection,
            self.init,
            self.sharing,
        )
        return self._finish(layer)
