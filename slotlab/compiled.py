"""Small CPU kernels compiled with ``torch.compile`` (inductor's C++ backend), checked against their eager form.

The slot step on the CPU is bound by memory traffic, and every eager PyTorch op is one more pass over a K-sized
tensor; a compiled kernel fuses a whole rule into one loop. Compiling needs a C++ compiler: where it fails, or
where the compiled kernel disagrees with the eager one on a probe, ``checked_compile`` returns None and the caller
keeps its eager path.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def _drop_no_cuda_runtime_notice(record: logging.LogRecord) -> bool:
    """Drop only the C++ toolchain lookup's notice on CUDA builds of torch running without a GPU (it says nothing
    about the CPU kernels); every other record of that logger passes."""
    return not str(record.msg).startswith("No CUDA runtime is found")


logging.getLogger("torch.utils.cpp_extension").addFilter(_drop_no_cuda_runtime_notice)


def checked_compile(fn: Callable, *probe: torch.Tensor | float) -> Callable | None:
    """``torch.compile(fn, dynamic=True)`` if it runs on ``probe`` and matches ``fn`` there (outputs and in-place
    edits of the tensor arguments, to float32 rounding); None otherwise.

    Not ``fullgraph``: past dynamo's recompile limit (e.g. more distinct K in one process than it keeps) the
    kernel runs eagerly instead of failing.
    """
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
            "slotlab: torch.compile unavailable (%s: %s); using eager kernels", type(error).__name__, error
        )
        return None
    pairs = [(expected, got)] if isinstance(expected, torch.Tensor) else []
    pairs += [(a, b) for a, b in zip(eager_args, compiled_args, strict=True) if isinstance(a, torch.Tensor)]
    if not all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in pairs):
        log.warning("slotlab: a compiled kernel disagrees with its eager form; using eager kernels")
        return None
    return compiled
