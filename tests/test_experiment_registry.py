"""The registry of the papers' experiments: complete, well formed, buildable at every scale, and reproducible."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slotlab.experiments import EXPERIMENTS, get_experiment
from slotlab.experiments.slot_machines import FinetunePoint
from slotlab.reproduce import reproduce
from slotlab.scales import SCALES

# every figure, table and analysis of the five papers (and of IWR's and LaPerm's released results), by hand
EXPECTED: dict[str, set[str]] = {
    "slot-machines": {
        "k1-vs-k2",
        "k-sweep",
        "init",
        "greedy-vs-sampled",
        "finetune-budget",
        "weight-sharing",
        "flips",
        "selected-values",
        "cost",
        "cifar10-conv2",
        "cifar10-conv4",
        "cifar10-conv6",
        "cifar10-vgg19",
    },
    "edge-popup": {
        "going-deeper",
        "going-wider",
        "depth-width-density",
        "init-ablation",
        "density-sweep",
        "vs-supermask",
        "imagenet",
        "imagenet-density",
    },
    "biprop": {
        "mpt-1-32",
        "mpt-1-1",
        "going-deeper",
        "density-sweep",
        "vs-edge-popup",
        "width",
        "vgg-small",
        "imagenet",
    },
    "iwr": {
        "density-conv2",
        "density-conv4",
        "density-conv6",
        "density-conv8",
        "width",
        "mask-landscape",
        "donor-ablation",
        "recycle-rate",
        "recycle-frequency",
        "iterand-resnet18",
        "iterand-conv4",
        "norms",
        "imagenet",
    },
    "laperm": {
        "sync-period",
        "vs-adam",
        "vs-random-permutation",
        "sparse-init",
        "weight-agnostic-f2",
        "weight-agnostic-f1",
        "conv7",
        "cifar10-convs",
        "resnet50-pruned",
        "weight-profiles",
    },
}
# what must be runnable today, and what must say what it lacks
NOT_RUNNABLE = {
    "edge-popup/imagenet-density",
    "biprop/imagenet",
    "iwr/imagenet",
    "laperm/resnet50-pruned",
}
EXPECTED_NAMES = {f"{paper}/{figure}" for paper, figures in EXPECTED.items() for figure in figures}
RUNNABLE = sorted(n for n, e in EXPERIMENTS.items() if e.runnable)
SMOKE_DATASETS = {"synthetic", "synthetic-cifar"}
MAX_LAPTOP_POINTS = 12


def test_registry_is_complete() -> None:
    assert set(EXPERIMENTS) == EXPECTED_NAMES, (
        f"missing: {sorted(EXPECTED_NAMES - set(EXPERIMENTS))}, unexpected: {sorted(set(EXPERIMENTS) - EXPECTED_NAMES)}"
    )


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_names_have_the_form_paper_slash_figure(name: str) -> None:
    paper, sep, figure = name.partition("/")
    assert sep and paper in EXPECTED and figure
    assert "/" not in figure and figure == figure.lower() and " " not in figure
    e = get_experiment(name)
    assert e.name == name and e.paper and e.in_paper and e.question


def test_runnable_and_missing_are_as_expected() -> None:
    assert {n for n, e in EXPERIMENTS.items() if not e.runnable} == NOT_RUNNABLE


@pytest.mark.parametrize("name", sorted(NOT_RUNNABLE))
def test_an_experiment_that_cannot_run_says_what_it_needs(name: str) -> None:
    e = EXPERIMENTS[name]
    assert e.grid is None and len(e.missing) > 5
    assert e.status.startswith("cannot run yet: ")


@pytest.mark.parametrize("name", RUNNABLE)
@pytest.mark.parametrize("scale", ["smoke", "laptop", "paper"])
def test_runnable_experiments_build_their_configs(name: str, scale: str) -> None:
    e = EXPERIMENTS[name]
    planned = e.configs(SCALES[scale], seeds=[0])
    assert planned, f"{name} has no points at {scale} scale"
    keys = [(p.series, p.x) for p, _, _ in planned]
    assert len(keys) == len(set(keys)), f"{name} measures a point twice at {scale} scale"
    hashes = [c.hash for _, _, c in planned]
    assert len(hashes) == len(set(hashes)), f"two points of {name} train the same config at {scale} scale"
    if scale == "smoke":
        for p, _, c in planned:
            assert c.dataset in SMOKE_DATASETS and c.epochs == 1, f"{name} {p.series} x={p.x} at smoke"
    else:
        assert all(c.dataset not in SMOKE_DATASETS for _, _, c in planned)
    if scale == "laptop":
        assert len(planned) <= MAX_LAPTOP_POINTS, f"{name}: {len(planned)} laptop points"
    if scale == "paper":
        assert all(c.train_size == 0 for _, _, c in planned), f"{name} trains on a subset at paper scale"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_published_numbers_are_measured_by_a_grid(name: str) -> None:
    e = EXPERIMENTS[name]
    for p in e.published:
        assert 0 < p.value <= 100 and p.source and p.protocol
    keys = [(p.series, p.x) for p in e.published]
    assert len(keys) == len(set(keys)), f"{name} lists a published point twice"
    if not e.runnable:
        return
    measured = {(p.series, p.x) for scale in ("paper", "laptop") for p in e.points(SCALES[scale])}
    for p in e.published:
        assert (p.series, p.x) in measured, f"{name}: published {p.series} x={p.x} is measured by no grid"


def test_published_numbers_are_compared_at_paper_scale() -> None:
    """Verdicts: a summary with one row per paper-scale point gives one verdict per published number."""
    for e in EXPERIMENTS.values():
        if not (e.runnable and e.published):
            continue
        points = e.points(SCALES["paper"])
        summary = pd.DataFrame(
            [{"series": p.series, "x": p.x, "mean": 50.0, "std": 0.0, "n": 1} for p in points]
        )
        verdicts = e.verdicts(summary)
        assert len(verdicts) == len(e.published), e.name


def test_cpu_stand_ins_are_never_compared_with_the_papers_numbers() -> None:
    """Where a CPU scale swaps Lenet-300-100 (or ResNet-20) in for the paper's model, no series matches."""
    for e in EXPERIMENTS.values():
        if not (e.runnable and e.published):
            continue
        for scale in ("smoke", "laptop"):
            for point, _, config in e.configs(SCALES[scale], seeds=[0]):
                paper_point = {(p.series, p.x) for p in e.published}
                if (point.series, point.x) in paper_point:
                    paper_models = {
                        c.model
                        for q, _, c in e.configs(SCALES["paper"], seeds=[0])
                        if (q.series, q.x) == (point.series, point.x)
                    }
                    assert config.model in paper_models, f"{e.name}: {point.series} at {scale}"


def test_mask_landscape_keeps_the_weights_and_changes_the_scores() -> None:
    e = EXPERIMENTS["iwr/mask-landscape"]
    for scale in SCALES.values():
        planned = e.configs(scale, seeds=[0, 1])
        for point in e.points(scale):
            runs = [c for p, _, c in planned if p == point]
            assert len({c.weight_seed for c in runs}) == 1
            assert len({c.score_seed for c in runs}) == 2


def test_finetune_runs_start_from_the_slot_run_of_their_seed() -> None:
    e = EXPERIMENTS["slot-machines/finetune-budget"]
    for scale in SCALES.values():
        points = e.points(scale)
        for i, point in enumerate(points):
            if not isinstance(point, FinetunePoint):
                continue
            assert point.source in points[:i], "a finetune point comes after its source"
            for seed in (0, 1):
                config = point.config(scale, seed)
                assert config.options.source == point.source.config(scale, seed).hash
                assert config.weight_seed == seed


def test_reproduce_writes_its_tables_and_figure(tmp_path: Path) -> None:
    result = reproduce(
        "laperm/sync-period",
        scale="smoke",
        seeds=1,
        root=tmp_path / "runs",
        out=tmp_path / "out",
        progress=False,
        workers=1,
    )
    folder = tmp_path / "out" / "laperm" / "sync-period"
    for name in ("table.csv", "summary.csv", "verdicts.csv", "figure.png"):
        assert (folder / name).is_file(), name
    assert not result.failed
    points = EXPERIMENTS["laperm/sync-period"].points(SCALES["smoke"])
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == len(points) == len(result.table)
    assert set(zip(table["series"], table["x"], strict=True)) == {(p.series, p.x) for p in points}
    assert table["test %"].between(0, 100).all()
