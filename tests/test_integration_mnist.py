from slotlab.config import RunConfig
from slotlab.runs import load_or_run
from tests.conftest import requires_mnist


@requires_mnist
def test_lenet_slots_on_a_real_mnist_subset_clearly_beat_chance(tmp_path) -> None:
    config = RunConfig(k=8, epochs=1, train_size=6000, val_size=1000, lr=0.2)
    result = load_or_run(config, root=tmp_path, device="cpu")
    assert result.metrics["test_accuracy"] > 0.80  # chance is 0.10
