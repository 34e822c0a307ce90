"""Small kernels compiled with ``torch.compile``, checked against their eager form: on the CPU by inductor's C++
backend, on CUDA by Triton.

The slot step is bound by memory traffic, and every eager PyTorch op is one more pass over a K-sized tensor (on a
GPU, one more kernel launch as well); a compiled kernel fuses a whole rule into one loop. Compiling needs a C++
compiler (CPU) or a working Triton (CUDA): where it fails, or where the compiled kernel disagrees with the eager
one on a probe, ``checked_compile`` returns None and the caller keeps its eager path.

``per_device`` makes that decision once per device type (``"cpu"``, ``"cuda"``), with the probe inputs created
on that device, so that a kernel that compiles on the CPU but not on the GPU (or the reverse) is used only where
it was checked.

Compiled kernels are cached across processes: unless ``TORCHINDUCTOR_CACHE_DIR`` is set, inductor's caches (the
FX graph and AOTAutograd caches, the built C++ libraries) go to ``$SLOTLAB_CACHE/inductor``, by default
``~/.cache/slotlab/inductor`` (``$XDG_CACHE_HOME/slotlab/inductor`` where that is set), instead of a folder under
``/tmp``. A process then re-traces each kernel (dynamo, fractions of a second) but compiles no C++: the first
call's cost drops from seconds per kernel to well under one (``benchmarks/compile_time.py``).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def _drop_no_cuda_runtime_notice(record: logging.LogRecord) -> bool:
    """Drop only the C++ toolchain lookup's notice on CUDA builds of torch running without a GPU (it says nothing
    about the CPU kernels); every other record of that logger passes."""
    return not str(record.msg).startswith("No CUDA runtime is found")


logging.getLogger("torch.utils.cpp_extension").addFilter(_drop_no_cuda_runtime_notice)


def cache_folder() -> str:
    """Where inductor keeps its caches for slotlab: ``$TORCHINDUCTOR_CACHE_DIR`` if the user set one, else
    ``$SLOTLAB_CACHE/inductor``, else ``$XDG_CACHE_HOME/slotlab/inductor``, else ``~/.cache/slotlab/inductor``."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    root = os.environ.get("SLOTLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "slotlab"
    )
    return os.path.join(root, "inductor")


# read by inductor at its first compile, which comes after this import (every kernel compiles through here)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_folder()


def _agree(expected: torch.Tensor, got: torch.Tensor) -> bool:
    """Float results to float32 rounding; bool and integer results (masks, counts) exactly."""
    if expected.is_floating_point():
        return torch.allclose(expected, got, rtol=1e-6, atol=1e-7)
    return torch.equal(expected, got)


def checked_compile(fn: Callable, *probe: torch.Tensor | float) -> Callable | None:
    """``torch.compile(fn, dynamic=True)`` if it runs on ``probe`` and matches ``fn`` there (its output or tuple
    of outputs and in-place edits of the tensor arguments: floats to float32 rounding, bools and integers
    exactly); None otherwise.

    Not ``fullgraph``: past dynamo's recompile limit (e.g. more distinct K in one process than it keeps) the
    kernel runs eagerly instead of failing.
    """
    where = next((a.device.type for a in probe if isinstance(a, torch.Tensor)), "cpu")
    try:
        with warnings.catch_warnings(), torch.no_grad():  # the kernels run without autograd: probe them so
            warnings.simplefilter("ignore")
            # dynamic_threads: a kernel compiled for symbolic sizes is otherwise generated single-threaded
            compiled = torch.compile(fn, dynamic=True, options={"cpp.dynamic_threads": True})
            eager_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in probe]
            compiled_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in probe]
            expected = fn(*eager_args)
            got = compiled(*compiled_args)
    except Exception as error:  # any failure of the compiler stack: keep the eager path
        log.warning(
            "slotlab: torch.compile unavailable on %s (%s: %s); using eager kernels",
            where,
            type(error).__name__,
            error,
        )
        return None
    expected_outputs = tuple(expected) if isinstance(expected, (tuple, list)) else (expected,)
    got_outputs = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(expected_outputs) != len(got_outputs):
        log.warning(
            "slotlab: a compiled kernel returns other outputs than its eager form; using eager kernels"
        )
        return None
    pairs = [
        (a, b) for a, b in zip(expected_outputs, got_outputs, strict=True) if isinstance(a, torch.Tensor)
    ]
    pairs += [(a, b) for a, b in zip(eager_args, compiled_args, strict=True) if isinstance(a, torch.Tensor)]
    if not all(a.shape == b.shape and a.dtype == b.dtype and _agree(a, b) for a, b in pairs):
        log.warning(
            "slotlab: a compiled kernel disagrees with its eager form on %s; using eager kernels", where
        )
        return None
    return compiled


COMPILED_DEVICE_TYPES = ("cpu", "cuda")  # where torch.compile has a backend we try: inductor's C++ and Triton


def device_available(device_type: str) -> bool:
    """Whether this process can put tensors on a device of ``device_type`` (the CPU always; CUDA with a GPU)."""
    if device_type == "cpu":
        return True
    backend = getattr(torch, device_type, None)
    is_available = getattr(backend, "is_available", None)
    return bool(is_available()) if callable(is_available) else False


def per_device(
    fn: Callable, probe: Callable[[], tuple[torch.Tensor | float, ...]]
) -> Callable[[str], Callable | None]:
    """A lookup ``device_type -> checked_compile(fn, *probe on that device)``, computed once per device type.

    ``probe()`` makes the probe inputs on the CPU (from a seeded generator, so that every device checks the same
    numbers); they are moved to the device before the check. Device types outside ``COMPILED_DEVICE_TYPES``, or
    not available in this process, get None (the caller's eager path) without compiling anything.
    """

    @functools.cache
    def kernel(device_type: str) -> Callable | None:
        if device_type not in COMPILED_DEVICE_TYPES or not device_available(device_type):
            return None
        device = torch.device(device_type)
        inputs = [a.to(device) if isinstance(a, torch.Tensor) else a for a in probe()]
        return checked_compile(fn, *inputs)

    kernel.__doc__ = f"``{fn.__name__}`` compiled and checked for a device type; None: use it eagerly."
    return kernel
