import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("CI", "1")  # no progress bars in test output
# cuBLAS reads this when it creates its first handle, so it is set before any CUDA work: with it (and
# torch.use_deterministic_algorithms, see ``deterministic``) cuBLAS gives the same bits on every call
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

CUDA_AVAILABLE = torch.cuda.is_available()
# the CUDA copy of a rule test: `pytest -m cuda` selects them, and they skip on a machine without a GPU
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not CUDA_AVAILABLE, reason="no CUDA device"))


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_RUNS", str(tmp_path / "runs"))
    torch.manual_seed(0)


def devices(cpu_marks=()) -> list:
    """The devices a rule test runs on: the CPU, and CUDA (marked ``cuda``; skipped without a GPU).

    For ``@pytest.mark.parametrize("device", devices(), indirect=True)`` where a test needs its own list (with
    ``cpu_marks``, say a skip that concerns the CPU copy only); a test that takes the ``device`` fixture alone
    gets both. Indirect, so that the ``device`` fixture's CUDA set-up runs.
    """
    return [
        pytest.param(torch.device("cpu"), id="cpu", marks=tuple(cpu_marks)),
        pytest.param(torch.device("cuda"), id="cuda", marks=CUDA_MARKS),
    ]


def on_cuda(*values, id: str) -> pytest.param:  # noqa: A002 (pytest's own name)
    """One parametrize case of the CUDA copy (values starting with ``torch.device("cuda")``), marked as it."""
    return pytest.param(*values, id=id, marks=CUDA_MARKS)


@pytest.fixture(params=devices())
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[torch.device]:
    """The device of a rule test: tensors and models go on it, with the same assertions on every device.

    On CUDA, float32 convolutions and matrix products run in full float32 (no TF32), so that a comparison with a
    CPU reference within float tolerance means what it says.
    """
    device = request.param
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    yield device


@pytest.fixture
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic CUDA kernels for the test (cuDNN's convolution backward, index_put, ...), for bit-identity.

    ``warn_only``: an operation without a deterministic CUDA implementation warns instead of raising, and the
    test's bit-identity assertion says whether it mattered. The CPU is left as it is (its kernels are).
    """
    if device.type != "cuda":
        yield
        return
    mode = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)


def mnist_available() -> bool:
    from slotlab.data import data_root

    return (data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


requires_mnist = pytest.mark.skipif(
    not mnist_available(),
    reason="real MNIST not found: set SLOTLAB_DATA (python -m slotlab data check names what is missing)",
)
