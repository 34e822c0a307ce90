"""Faults and bad input: one line on stderr with what to do, a distinct exit code, and nothing lost on disk."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slotlab import checkpoint, cli
from slotlab.config import RunConfig
from slotlab.errors import DiskError, ResourceError, RunFileError, SlotlabError
from slotlab.runs import load_or_run, run_dir

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--dataset",
    "synthetic",
    "--epochs",
    "3",
    "--train-size",
    "256",
    "--val-size",
    "100",
    "--batch-size",
    "32",
]
CONFIG = RunConfig(dataset="synthetic", epochs=3, train_size=256, val_size=100, batch_size=32)


def train(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", *QUICK, *extra, "--runs", str(tmp_path), "--no-progress"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The metrics of an uninterrupted run of CONFIG."""
    return load_or_run(CONFIG, root=tmp_path_factory.mktemp("reference"), progress=False).metrics


def same_metrics(a: dict, b: dict) -> bool:
    keys = ("val_accuracy", "test_accuracy", "test_loss", "best_epoch", "epochs")
    return all(a[k] == b[k] for k in keys)


# --- the disk --------------------------------------------------------------------------------------------------
def test_a_runs_root_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    root = tmp_path / "runs"
    root.write_text("not a folder")
    assert cli.main(train(root)) == DiskError.exit_code
    err = one_line(capsys)
    assert "cannot write" in err and "--runs" in err
    assert root.read_text() == "not a folder"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_or_unwritable_runs_root_is_one_line(
    code: int, tmp_path: Path, capsys, monkeypatch
) -> None:
    # as root every folder is writable, so the filesystem's refusal is simulated where slotlab meets it
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(Path, "mkdir", refuse)
    assert cli.main(train(tmp_path)) == DiskError.exit_code
    err = one_line(capsys)
    assert os.strerror(code) in err and "--runs" in err


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path: Path, capsys, monkeypatch, reference) -> None:
    real_replace, calls = os.replace, []

    def full_disk_on_second_epoch(src, dst):
        calls.append(dst)
        if str(dst).endswith("last.pt") and sum(str(c).endswith("last.pt") for c in calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", full_disk_on_second_epoch)
    assert cli.main(train(tmp_path)) == DiskError.exit_code
    err = one_line(capsys)
    assert "No space left on device" in err and "resumes" in err
    folder = run_dir(CONFIG, tmp_path)
    assert not list(folder.glob(".*.tmp")) and (folder / "last.pt").is_file()
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert cli.main(train(tmp_path)) == 0
    assert same_metrics(json.loads((folder / "result.json").read_text()), reference)


def test_a_write_torch_reports_without_a_cause_is_named_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    def failing_save(obj, handle):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file"
        )

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    monkeypatch.setattr(checkpoint.os, "statvfs", lambda path: Full())
    with pytest.raises(DiskError, match="No space left on device") as info:
        checkpoint.atomic_save({"x": 1}, tmp_path / "a.pt")
    assert "\n" not in str(info.value) and not list(tmp_path.glob(".*"))


def test_exporting_into_an_unwritable_run_folder_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    run = load_or_run(CONFIG, root=tmp_path, progress=False)

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(run.path))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(Path, "mkdir", refuse)
    assert cli.main(["export", str(run.path)]) == DiskError.exit_code
    assert "Read-only file system" in one_line(capsys)


def test_a_temporary_left_by_a_killed_write_is_removed_on_the_next_start(tmp_path: Path) -> None:
    folder = run_dir(CONFIG, tmp_path)
    folder.mkdir(parents=True)
    leftover = folder / ".last.pt.k3j2h1.tmp"
    leftover.write_bytes(b"half a checkpoint")
    load_or_run(CONFIG, root=tmp_path, progress=False)
    assert not leftover.exists() and not list(folder.glob(".*.tmp"))


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    checkpoint._file_mode.cache_clear()
    try:
        checkpoint.atomic_write_text("x", tmp_path / "f.txt")
        assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
        checkpoint._file_mode.cache_clear()


# --- the user ----------------------------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_the_run_resumes_to_the_same_end(tmp_path: Path, reference) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"}
    command = [sys.executable, "-m", "slotlab", *train(tmp_path)]
    folder = run_dir(CONFIG, tmp_path)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the interrupt reached it")
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "run the same command again" in lines[0], err
    assert not (folder / "result.json").exists() and not (folder / "lock").exists()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert same_metrics(json.loads((folder / "result.json").read_text()), reference)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gamma", "-1", "--schedule", "step", "--milestones", "2"], "gamma must be a positive"),
        (["--k", "100000"], "needs about"),
    ],
)
def test_values_that_make_no_sense_are_refused_before_a_folder_exists(
    argv, message, tmp_path, capsys
) -> None:
    code = cli.main(train(tmp_path, *argv))
    assert code == (ResourceError.exit_code if "--k" in argv else 2)
    assert message in one_line(capsys)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_a_sweep_needs_at_least_one_worker(workers: str, tmp_path: Path, capsys) -> None:
    argv = [
        "sweep",
        *QUICK,
        "--grid",
        "k=1,2",
        "--workers",
        workers,
        "--runs",
        str(tmp_path),
        "--no-progress",
    ]
    assert cli.main(argv) == 2
    assert "workers must be a whole number >= 1" in one_line(capsys)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match="density is not an option"):
        cli.main(["--debug", *train(tmp_path, "--density", "0.3")])


# --- the Python API -------------------------------------------------------------------------------------------
def test_a_typo_in_a_config_names_the_valid_fields() -> None:
    with pytest.raises(SlotlabError, match=r"unknown config fields \['typo'\]; valid fields: .*weight_seed"):
        RunConfig(typo=1)


def test_load_or_run_of_a_dict_says_how_to_make_a_config() -> None:
    with pytest.raises(SlotlabError, match="load_or_run takes a RunConfig, got dict"):
        load_or_run({"k": 8})


def test_a_hash_prefix_must_be_long_and_unambiguous(tmp_path: Path, capsys) -> None:
    run = load_or_run(CONFIG, root=tmp_path, progress=False)
    assert cli.main(["export", "0", "--runs", str(tmp_path)]) == 2
    assert "at least 4 digits" in one_line(capsys)
    # two run folders whose hashes share their first four digits: the prefix is ambiguous and both are named
    twins = [tmp_path / f"slots-lenet300-mnist-{prefix}" for prefix in ("abcd11112222", "abcd33334444")]
    for folder in twins:
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    assert cli.main(["export", "abcd", "--runs", str(tmp_path)]) == 2
    err = one_line(capsys)
    assert "matches 2 runs" in err and all(f.name in err for f in twins)
    assert cli.main(["export", run.config.hash[:6], "--runs", str(tmp_path)]) == 0
    assert (run.path / "export" / "plain.pt").is_file()


# --- damaged run files ------------------------------------------------------------------------------------------
def interrupted_run(tmp_path: Path) -> Path:
    """A run stopped after its first epoch: last.pt and history hold epoch 1."""
    from tests.interrupt import Interrupt

    with pytest.raises(KeyboardInterrupt):
        load_or_run(CONFIG, root=tmp_path, callbacks=[Interrupt(at_step=12)], progress=False)
    return run_dir(CONFIG, tmp_path)


def test_a_truncated_last_checkpoint_says_what_to_do(tmp_path: Path, capsys, reference) -> None:
    folder = interrupted_run(tmp_path)
    data = (folder / "last.pt").read_bytes()
    (folder / "last.pt").write_bytes(data[: len(data) // 2])
    assert cli.main(train(tmp_path)) == RunFileError.exit_code
    err = one_line(capsys)
    assert "last.pt" in err and "delete it and run the same command again" in err
    (folder / "last.pt").unlink()  # as the message says
    assert cli.main(train(tmp_path)) == 0
    assert same_metrics(json.loads((folder / "result.json").read_text()), reference)


@pytest.mark.parametrize("name, damage", [("result.json", "truncate"), ("history.csv", "empty")])
def test_a_damaged_result_or_history_says_how_to_finish_the_run_again(
    name: str, damage: str, tmp_path: Path, capsys, reference
) -> None:
    folder = run_dir(CONFIG, tmp_path)
    load_or_run(CONFIG, root=tmp_path, progress=False)
    target = folder / name
    target.write_text(target.read_text()[:7] if damage == "truncate" else "")
    assert cli.main(train(tmp_path)) == RunFileError.exit_code
    err = one_line(capsys)
    assert name in err and "delete" in err and "result.json" in err
    (folder / "result.json").unlink()  # as the message says: the run finishes from last.pt
    assert cli.main(train(tmp_path)) == 0
    assert same_metrics(json.loads((folder / "result.json").read_text()), reference)


def test_a_truncated_config_json_is_one_line(tmp_path: Path, capsys) -> None:
    folder = interrupted_run(tmp_path)
    (folder / "config.json").write_text('{"hash": "')
    assert cli.main(train(tmp_path)) == RunFileError.exit_code
    assert "config.json" in one_line(capsys)
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1  # nothing was overwritten


def test_a_run_that_fails_in_its_first_epoch_leaves_no_large_file(tmp_path: Path) -> None:
    from slotlab.callback import Callback
    from slotlab.errors import DataError
    from slotlab.runs import initial_network

    class DamagedImage(Callback):  # as a folder dataset meets an image it cannot decode
        def on_step_end(self, trainer) -> None:
            raise DataError("image train/n01/x.JPEG cannot be decoded; delete or replace it")

    with pytest.raises(DataError):
        load_or_run(CONFIG, root=tmp_path, callbacks=[DamagedImage()], progress=False)
    folder = run_dir(CONFIG, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    load_or_run(CONFIG, root=tmp_path, progress=False)
    saved = torch.load(folder / "init.pt", weights_only=True)["model"]
    expected = initial_network(CONFIG, (1, 28, 28), 10).state_dict()
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)
