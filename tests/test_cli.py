import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slotlab.cli import main
from slotlab.config import RunConfig
from slotlab.runs import load_or_run, open_run


def test_help_lists_methods_models_and_datasets() -> None:
    out = subprocess.run([sys.executable, "-m", "slotlab", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in (
        "slots",
        "dense",
        "learned",
        "finetune",
        "lenet300",
        "conv4-sm",
        "vgg19",
        "resnet20",
        "cifar10",
    ):
        assert name in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "popup"], "unknown method 'popup'; valid methods: slots, dense, learned, finetune"),
        (["--k", "0"], "k (values per connection) must be a whole number >= 1, got 0"),
        (["--k", "2.5"], "k must be a whole number, got '2.5'"),
        (["--model", "vgg19", "--dataset", "synthetic"], "model vgg19 needs inputs of at least 32x32"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path: Path) -> None:
    code = main(["train", *args, "--runs", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not any(p.suffix == ".tmp" for p in tmp_path.rglob("*"))


def test_train_then_export(capsys, tmp_path: Path) -> None:
    args = ["train", "--dataset", "synthetic", "--epochs", "2", "--k", "4", "--runs", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split()[:1] in (["val"], ["test"])
    }
    assert set(rows) == {"val", "test"}  # the table's two rows: accuracy and epoch
    assert all(0.0 <= float(accuracy) <= 1.0 and int(epoch) in (1, 2) for accuracy, epoch in rows.values())
    assert "run folder" in out
    run = open_run(next(tmp_path.iterdir()))
    assert main(["export", str(run.path)]) == 0
    assert "2 bits x" in capsys.readouterr().out
    plain = torch.load(run.path / "export" / "plain.pt", weights_only=True)
    assert set(plain["state_dict"]) == {"body.1.weight", "body.3.weight", "body.5.weight"}


def test_export_refuses_a_folder_that_is_not_a_run(capsys, tmp_path: Path) -> None:
    assert main(["export", str(tmp_path)]) == 2
    assert "is not a slotlab run folder" in capsys.readouterr().err


def test_finetune_starts_from_the_found_network(tmp_path: Path) -> None:
    source = load_or_run(RunConfig(dataset="synthetic", epochs=1, k=4), root=tmp_path)
    config = RunConfig(method="finetune", dataset="synthetic", epochs=1, lr=0.01, source=str(source.path))
    init = load_or_run(config, root=tmp_path).model("init").state_dict()
    found = source.model("best")
    from slotlab.layers.plain import to_plain

    expected = to_plain(found).state_dict()
    assert all(torch.equal(init[key], expected[key]) for key in expected)


def test_a_bare_boolean_flag_means_true() -> None:
    from slotlab.cli import _given_values, _parser

    def augment(*flags: str):
        return RunConfig(**_given_values(_parser().parse_args(["train", *flags]))).augment

    assert augment("--augment") is True
    assert augment("--augment", "false") is False
    assert augment() is False


def test_no_progress_silences_the_bar_outside_ci(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)  # the bar is on by default outside CI
    args = ["train", "--dataset", "synthetic", "--epochs", "1", "--k", "2", "--train-size", "256"]
    assert main([*args, "--runs", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "step" not in capsys.readouterr().err
    assert main([*args, "--runs", str(tmp_path / "loud")]) == 0
    assert "step" in capsys.readouterr().err
