import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from slotlab.callback import Callback
from slotlab.checkpoint import atomic_save
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.optim import lr_factor
from slotlab.runs import load_or_run, make_trainer, open_run
from slotlab.train import Trainer
from tests.interrupt import Interrupt

QUICK = dict(dataset="synthetic", epochs=3, batch_size=128, val_size=300)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_slots_learn_the_synthetic_set_and_write_a_run_folder(tmp_path: Path) -> None:
    result = load_or_run(RunConfig(**QUICK), root=tmp_path)
    assert result.metrics["test_accuracy"] > 0.9
    names = {p.name for p in result.path.iterdir()}
    assert {"config.json", "init.pt", "last.pt", "best.pt", "history.csv", "result.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert list(result.history.columns) == ["epoch", "split", "loss", "accuracy", "lr", "seconds"]
    assert result.history["split"].tolist().count("test") == 1  # test evaluated once
    assert json.loads((result.path / "config.json").read_text())["hash"] == result.config.hash


def test_only_the_scores_train_and_the_values_stay(tmp_path: Path) -> None:
    result = load_or_run(RunConfig(**QUICK), root=tmp_path)
    init, best = result.model("init").state_dict(), result.model("best").state_dict()
    for key in init:
        if key.endswith("values"):
            assert torch.equal(init[key], best[key])
        else:
            assert not torch.equal(init[key], best[key])


def test_finished_runs_are_read_back_not_retrained(tmp_path: Path, monkeypatch) -> None:
    first = load_or_run(RunConfig(**QUICK), root=tmp_path)
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("trained again"))
    again = load_or_run(RunConfig(**QUICK), root=tmp_path)
    assert again.metrics == first.metrics and again.history.equals(first.history)


def test_best_test_protocol_is_labelled_and_evaluates_every_epoch(tmp_path: Path) -> None:
    result = load_or_run(RunConfig(protocol="best-test", **QUICK), root=tmp_path)
    tests = result.history.query("split == 'test'")
    assert len(tests) == 3 and result.metrics["test_accuracy"] == tests["accuracy"].max()
    assert "optimistic" in result.metrics["note"]


def test_interrupted_run_with_dropout_resumes_bit_identical(
    tmp_path: Path, device: torch.device, deterministic
) -> None:
    config = RunConfig(
        model="conv2-sm", dataset="synthetic", k=2, epochs=3, train_size=192, val_size=100, batch_size=64
    )
    whole = load_or_run(config, root=tmp_path / "whole", device=device)
    with pytest.raises(KeyboardInterrupt):  # 3 steps/epoch
        load_or_run(config, root=tmp_path / "cut", device=device, callbacks=[Interrupt(at_step=3 + 2)])
    resumed = load_or_run(config, root=tmp_path / "cut", device=device)
    assert states_equal(whole.model("last").state_dict(), resumed.model("last").state_dict())
    assert whole.history.drop(columns="seconds").equals(resumed.history.drop(columns="seconds"))


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from slotlab.config import RunConfig
    from slotlab.runs import load_or_run
    from slotlab.callback import Callback

    device = sys.argv[3]
    if device == "cuda":  # as the parent's ``device`` and ``deterministic`` fixtures
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        torch.use_deterministic_algorithms(True, warn_only=True)

    class Kill(Callback):
        def on_step_end(self, trainer):
            if trainer.epoch == 2 and trainer.step == 2 * 14 + 6:  # mid-way through the third epoch
                os.kill(os.getpid(), signal.SIGKILL)

    config = RunConfig(**eval(sys.argv[2]))
    load_or_run(config, root=sys.argv[1], device=device, callbacks=[Kill()])
    """
)


def test_killed_run_resumes_and_ends_bit_identical(
    tmp_path: Path, device: torch.device, deterministic
) -> None:
    fields = dict(selection="sampled", lr=5.0, epochs=4, dataset="synthetic", val_size=300)
    config = RunConfig(**fields)
    script = [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "cut"), repr(fields), device.type]
    killed = subprocess.run(script)
    assert killed.returncode == -9
    folder = tmp_path / "cut" / config.name
    assert not (folder / "result.json").exists()
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 2
    resumed = load_or_run(config, root=tmp_path / "cut", device=device)
    whole = load_or_run(config, root=tmp_path / "whole", device=device)
    assert states_equal(whole.model("last").state_dict(), resumed.model("last").state_dict())
    assert resumed.metrics["test_accuracy"] == whole.metrics["test_accuracy"]


def test_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    a, b = RunConfig(**QUICK), RunConfig(**{**QUICK, "k": 4})
    done = load_or_run(a, root=tmp_path)
    folder = tmp_path / b.name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hash": b.hash, "config": b.to_dict()}))
    atomic_save(torch.load(done.path / "last.pt", weights_only=True), folder / "last.pt")
    with pytest.raises(SlotlabError, match=f"written by config {a.hash}, not {b.hash}"):
        load_or_run(b, root=tmp_path)


def test_a_folder_that_is_not_a_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match="is not a slotlab run folder"):
        open_run(tmp_path)
    with pytest.raises(SlotlabError, match="no run folder 'nope'"):
        open_run("nope", root=tmp_path)


def test_schedules() -> None:
    cosine = lr_factor("cosine", 10)
    assert cosine(0) == 1 and math.isclose(cosine(5), 0.5) and cosine(10) < 1e-12
    step = lr_factor("step", 100, (80,), 0.1)
    assert step(79) == 1 and math.isclose(step(80), 0.1)
    restarts = lr_factor("restarts", 100, (25, 75))
    assert restarts(0) == restarts(25) == restarts(75) == 1
    assert math.isclose(restarts(50), 0.5) and restarts(24) < 0.01


def test_weight_decay_reaches_the_scores_only(tmp_path: Path) -> None:
    from slotlab.data import make_splits
    from slotlab.runs import initial_network

    config = RunConfig(weight_decay=0.1, **QUICK)
    splits = make_splits("synthetic", 300)
    trainer = make_trainer(config, initial_network(config, (1, 28, 28), 10), splits, torch.device("cpu"))
    params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    scores = [m.scores for m in trainer.model.modules() if hasattr(m, "scores")]
    assert len(params) == len(scores) == 3 and all(any(p is s for s in scores) for p in params)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.1


def validations(trainer: Trainer) -> int:
    return int((trainer.history["split"] == "val").sum())


class CountingCallback(Callback):
    """Records the order of hooks and carries a step count that must survive a resume."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.steps_seen = 0

    def on_step_end(self, trainer: Trainer) -> None:
        self.steps_seen += 1

    def on_before_evaluate(self, trainer: Trainer) -> None:
        self.events.append(f"before-evaluate:{validations(trainer)}")

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.events.append(f"epoch-end:{validations(trainer)}")

    def state_dict(self) -> dict:
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict) -> None:
        self.steps_seen = state["steps_seen"]


def test_callback_hooks_run_in_order_and_their_state_survives_a_resume(tmp_path: Path) -> None:
    config = RunConfig(**{**QUICK, "train_size": 256, "epochs": 2})  # 2 steps per epoch
    counter = CountingCallback()
    with pytest.raises(KeyboardInterrupt):
        load_or_run(config, root=tmp_path, callbacks=[counter, Interrupt(at_step=3)])
    # the evaluation of epoch 1 comes after on_before_evaluate and before on_epoch_end
    assert counter.events == ["before-evaluate:0", "epoch-end:1"]
    resumed = CountingCallback()
    load_or_run(config, root=tmp_path, callbacks=[resumed])  # resumes after epoch 1 (2 steps)
    assert resumed.steps_seen == 4
