"""The prepared GPU check: it refuses cleanly without a GPU, measures every method on the CPU in a dry run, and its
throughput table turns into hours per experiment."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slotlab.experiments import Experiment, Point
from slotlab.reproduce import TRAIN_IMAGES, estimated_hours, experiment_list
from slotlab.scales import SCALES

ROOT = Path(__file__).resolve().parents[1]


def load_gpu_check():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # its sibling module timing.py
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU: the script runs instead of refusing")
def test_without_a_gpu_the_script_says_so_in_one_line() -> None:
    shell = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh")], capture_output=True, text=True)
    assert (
        shell.returncode == 2 and shell.stderr.strip().count("\n") == 0 and "no CUDA device" in shell.stderr
    )
    direct = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_check.py")], capture_output=True, text=True
    )
    assert direct.returncode == 2 and "--allow-cpu" in direct.stderr


def test_the_dry_run_measures_every_method_against_dense() -> None:
    gpu_check = load_gpu_check()
    rows = gpu_check.throughput(torch.device("cpu"), {"lenet300": (8,)}, blocks=1, per_block=1)
    assert [r["method"] for r in rows] == list(gpu_check.METHODS)
    dense = next(r for r in rows if r["method"] == "dense")
    assert dense["ratio to dense"] == 1.0 and all(r["images/s"] > 0 for r in rows)
    table = gpu_check.markdown(rows)
    assert table.count("\n") == len(rows) + 2 and "| slots K=8 | lenet300 | 8 |" in table


def test_hours_follow_from_the_throughput() -> None:
    toy = Experiment(
        name="toy/hours",
        paper="toy",
        in_paper="-",
        question="?",
        grid=lambda s: [Point("a", 1, "slots", {"k": 8}), Point("b", 1, "dense", {})],
        seeds={"paper": 2},
    )
    paper = SCALES["paper"]
    rates = {("slots K=8", "lenet300", 128): 1000.0, ("dense", "lenet300", 128): 4000.0}
    configs = {p.series: p.config(paper, 0) for p in toy.points(paper)}
    images = TRAIN_IMAGES["mnist"]
    expected = 2 * (configs["a"].epochs * images / 1000 + configs["b"].epochs * images / 4000) / 3600
    assert estimated_hours(toy, paper, rates) == pytest.approx(expected)
    assert estimated_hours(toy, paper, {("dense", "lenet300", 128): 1.0}) is None  # slots not measured


def test_the_list_shows_the_estimate_with_a_throughput_table(tmp_path: Path) -> None:
    table = tmp_path / "throughput.csv"
    table.write_text(
        "method,model,batch,images_per_second\ndense,lenet300,128,5000\nslots K=8,lenet300,128,2500\n"
    )
    listing = experiment_list(tmp_path, throughput=table)
    row = listing.set_index("name").loc["slot-machines/k-sweep"]
    assert float(row["paper hours (est.)"]) > 0
