"""Sweeps: grid expansion, skip and resume, run locks (live and stale), failing points, the summary table."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from slotlab.callback import Callback
from slotlab.cli import main
from slotlab.config import RunConfig
from slotlab.errors import SlotlabError
from slotlab.locks import RunLock, RunLocked, is_stale, owner_record, read_lock
from slotlab.runs import load_or_run, open_run, run_dir
from slotlab.sweep import expand, parse_assignments, point_config, summarize, sweep
from slotlab.train import Trainer

TINY = RunConfig(dataset="synthetic", epochs=2, batch_size=64, train_size=128, val_size=100, k=2)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder: Path, pid: int, start: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "start": start}))


def test_grid_is_the_cartesian_product_and_seed_sets_all_five() -> None:
    points = expand({"k": [1, 2], "seed": [0, 3]})
    assert points == [{"k": 1, "seed": 0}, {"k": 1, "seed": 3}, {"k": 2, "seed": 0}, {"k": 2, "seed": 3}]
    config = point_config(TINY, {"seed": 3, "score_seed": 7})
    assert (config.weight_seed, config.data_seed, config.sample_seed, config.split_seed) == (3, 3, 3, 3)
    assert config.score_seed == 7  # an explicit seed wins over `seed`
    assert len({point_config(TINY, p).hash for p in points}) == 4
    assert expand({"k": [1, 2]}, [{"lr": 0.1}, {"lr": 0.2}])[1] == {"k": 1, "lr": 0.2}
    assert parse_assignments(["k=1,2", "milestones=25,75/80"]) == {
        "k": ["1", "2"],
        "milestones": ["25,75", "80"],
    }
    assert point_config(TINY, {"milestones": "25,75", "schedule": "step"}).milestones == (25, 75)
    laperm = point_config(
        TINY, {"method": "laperm"}
    )  # fields not given take the method's defaults, as on the CLI
    assert (laperm.optimizer, laperm.epochs) == ("adam", 2)
    assert point_config({"optimizer": "sgd"}, {"method": "laperm"}).optimizer == "sgd"
    with pytest.raises(SlotlabError, match="unknown config field 'kk'"):
        parse_assignments(["kk=1,2"])
    with pytest.raises(SlotlabError, match="name=value1,value2"):
        parse_assignments(["k"])


def test_sweep_trains_each_point_once_and_summarizes_from_the_folders(tmp_path: Path, monkeypatch) -> None:
    result = sweep({"k": [1, 2], "weight_seed": [0, 1]}, base=TINY, root=tmp_path, workers=1)
    assert [p.status for p in result.points] == ["done"] * 4
    table = result.summary()
    assert len(table) == 4 and list(table["k"]) == [1, 1, 2, 2] and list(table["weight_seed"]) == [0, 1, 0, 1]
    for _, row in table.iterrows():  # each row is its own run folder's config and final metrics
        stored = open_run(row["path"])
        assert stored.config.options.k == row["k"] and stored.config.hash == row["hash"]
        assert row["test_accuracy"] == stored.metrics["test_accuracy"]
        assert row["val_accuracy"] == stored.metrics["val_accuracy"]
    assert result.varying == ["k", "weight_seed"]
    everything = summarize(tmp_path)
    assert set(everything["hash"]) == set(table["hash"]) and everything["finished"].all()

    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("a finished point was trained again"))
    again = sweep({"k": [1, 2], "weight_seed": [0, 1]}, base=TINY, root=tmp_path, workers=1)
    assert [p.status for p in again.points] == ["cached"] * 4
    assert again.summary()["test_accuracy"].tolist() == table["test_accuracy"].tolist()


def test_failing_points_are_reported_and_the_others_run(tmp_path: Path) -> None:
    result = sweep(points=[{"val_size": 5000}, {"k": 0}, {"k": 3}], base=TINY, root=tmp_path, workers=1)
    status = {p.index: (p.status, p.error) for p in result.points}
    assert status[0][0] == "failed" and "val_size must be between" in status[0][1]  # fails while training
    assert status[1][0] == "failed" and "k (values per connection)" in status[1][1]  # fails as a config
    assert status[2] == ("done", "")
    assert [p.index for p in result.failed] == [0, 1]
    table = result.summary()
    assert table.loc[2, "test_accuracy"] > 0 and table.loc[0, "error"].startswith("val_size")


class Interrupt(Callback):
    def on_step_end(self, trainer) -> None:
        if trainer.step == 3:  # epoch 1 done (2 steps), one step into epoch 2
            raise KeyboardInterrupt


def test_stopped_sweep_resumes_and_takes_over_a_dead_processs_lock(tmp_path: Path) -> None:
    config = TINY.replace(k=4)
    with pytest.raises(KeyboardInterrupt):
        load_or_run(config, root=tmp_path / "cut", callbacks=[Interrupt()])
    folder = run_dir(config, tmp_path / "cut")
    assert (folder / "last.pt").is_file() and not (folder / "result.json").exists()
    write_lock(folder, dead_pid())  # as if the sweep's process had been killed while training this run

    result = sweep(points=[{"k": 4}], base=TINY, root=tmp_path / "cut", workers=1)
    assert result.points[0].status == "done" and not (folder / "lock").exists()
    whole = load_or_run(config, root=tmp_path / "whole")
    resumed = open_run(folder)
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            resumed.model("last").state_dict().values(),
            whole.model("last").state_dict().values(),
            strict=True,
        )
    )


def test_a_run_locked_by_a_live_process_is_waited_for_not_trained_twice(tmp_path: Path) -> None:
    folder = run_dir(TINY, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(folder, holder.pid)
        skipped = sweep(points=[{}], base=TINY, root=tmp_path, workers=1, wait_for_locks=False)
        assert skipped.points[0].status == "locked" and f"pid {holder.pid}" in skipped.points[0].error
        assert not (folder / "config.json").exists() and read_lock(folder / "lock")["pid"] == holder.pid
        # the holder dies while the sweep waits: the sweep then takes the run over
        threading.Timer(0.5, holder.kill).start()
        waited = sweep(points=[{}], base=TINY, root=tmp_path, workers=1, poll_seconds=0.2)
        assert waited.points[0].status == "done" and (folder / "result.json").is_file()
    finally:
        holder.kill()
        holder.wait()


ORPHANED_WORKER = """
import json, multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from slotlab.sweep import _init_worker, _run_point

if __name__ == "__main__":
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(None, 1)
    )
    pool.submit(_run_point, json.loads(sys.argv[1]), sys.argv[2], "cpu", None)
    time.sleep(300)
"""


def _gone(pid: int) -> bool:
    """No such process, or a zombie left for its new parent to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_for(condition, seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_worker_whose_sweep_process_is_killed_stops_and_releases_its_runs_lock(tmp_path: Path) -> None:
    """A restarted notebook kernel SIGKILLs the sweep process; its worker must not train on for hours."""
    config = TINY.replace(epochs=100_000)  # a run that would hold its lock for hours
    folder = run_dir(config, tmp_path)
    script = tmp_path / "sweep_process.py"
    script.write_text(ORPHANED_WORKER)
    parent = subprocess.Popen([sys.executable, str(script), json.dumps(config.to_dict()), str(tmp_path)])
    try:
        # the spawned worker imports torch, then trains; wait for its first epoch's checkpoint
        _wait_for(lambda: (folder / "last.pt").is_file(), 120, "the worker never trained an epoch")
        worker = read_lock(folder / "lock")["pid"]
        assert worker != parent.pid and not _gone(worker)
        parent.kill()
        parent.wait()
        _wait_for(lambda: _gone(worker), 20, "the orphaned worker went on training")
        assert not (folder / "lock").exists()  # released: the run resumes next time
        assert (folder / "last.pt").is_file() and not (folder / "result.json").exists()
    finally:
        parent.kill()
        parent.wait()


def test_lock_is_exclusive_released_by_its_owner_only_and_stale_when_the_pid_is_reused(
    tmp_path: Path,
) -> None:
    first = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()
    record = read_lock(first.path)
    assert record == first.record and record["pid"] == os.getpid()
    assert not is_stale(record)
    assert is_stale({**record, "start": "0"})  # same pid, other start time: the pid was reused
    assert is_stale({**record, "pid": dead_pid()})
    assert not is_stale({**record, "host": "another-host"})  # cannot be told from here: counts as held
    write_lock(tmp_path / "run", dead_pid())  # our lock was taken over by a process that then died
    first.release()
    assert first.path.exists()  # not ours any more: left alone
    second = RunLock(tmp_path / "run").acquire()  # the dead owner's lock is taken over
    assert read_lock(second.path)["pid"] == os.getpid() and owner_record()["host"] == record["host"]
    second.release()
    assert not second.path.exists()


def test_an_empty_lock_is_taken_over_once_it_is_old_and_waited_for_while_fresh(tmp_path: Path) -> None:
    path = RunLock(tmp_path / "run").path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")  # its owner was killed between creating and writing it
    with pytest.raises(RunLocked):  # fresh: it may be being written this instant
        RunLock(tmp_path / "run").acquire()
    old = time.time() - 60
    os.utime(path, (old, old))
    assert read_lock(path) == {} and is_stale({})
    lock = RunLock(tmp_path / "run").acquire()
    assert read_lock(lock.path)["pid"] == os.getpid()
    lock.release()


def test_parallel_workers_and_the_command_line(tmp_path: Path, capsys) -> None:
    result = sweep({"k": [1, 2, 0]}, base=TINY, root=tmp_path, workers=2)  # two worker processes
    assert [p.status for p in result.points] == ["done", "done", "failed"]
    assert all((run_dir(p.config, tmp_path) / "result.json").is_file() for p in result.points[:2])
    flags = ["--dataset", "synthetic", "--epochs", "2", "--batch-size", "64", "--train-size", "128"]
    argv = [
        "sweep",
        *flags,
        "--val-size",
        "100",
        "--runs",
        str(tmp_path),
        "--grid",
        "k=1,2,4",
        "--workers",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 cached" in out and "1 done" in out
    assert main([*argv[:-4], "--grid", "val_size=100,5000", "--workers", "1"]) == 1
    assert "val_size must be between" in capsys.readouterr().err
