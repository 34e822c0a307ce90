import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("CI", "1")  # no progress bars in test output


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLAB_RUNS", str(tmp_path / "runs"))
    torch.manual_seed(0)


def mnist_available() -> bool:
    from slotlab.data import data_root

    return (data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


requires_mnist = pytest.mark.skipif(
    not mnist_available(),
    reason="real MNIST not found: set SLOTLAB_DATA (python -m slotlab data check names what is missing)",
)
