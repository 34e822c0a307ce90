"""benchmarks/reproductions_report.py: the RESULTS.md section of one reproduction says why it has no verdict; a
report keeps the earlier sections of the reproductions it does not hold while their grids are unchanged; the shipped
measured hours are of the current grids."""

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from slotlab.experiments import EXPERIMENTS, Experiment, Point, Published
from slotlab.experiments.measured import is_current, read_measured
from slotlab.reproduce import experiment_list
from slotlab.scales import get_scale

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from reproductions_report import (  # noqa: E402
    BEGIN,
    END,
    ROOT,
    earlier_sections,
    experiment_section,
    report,
    verdict_counts,
)


def _section(
    tmp_path: Path, monkeypatch, published: tuple[Published, ...], series: str = "kn (Lenet-300-100 stand-in)"
) -> str:
    toy = Experiment(
        name="toy/stand-in",
        paper="toy",
        in_paper="Table 1",
        question="q?",
        grid=lambda scale: [Point(series, 1, "edge-popup", {})],
        published=published,
    )
    monkeypatch.setitem(EXPERIMENTS, toy.name, toy)
    meta = {"runs": 3, "seeds": [0, 1, 2], "train_seconds": 60.0, "device": "cpu", "failed": []}
    (tmp_path / "meta-laptop.json").write_text(json.dumps(meta))
    pd.DataFrame(
        [
            {
                "series": series,
                "x": 1,
                "mean": 90.0,
                "std": 1.0,
                "n": 3,
                "low": 88,
                "high": 92,
            }
        ]
    ).to_csv(tmp_path / "summary.csv", index=False)
    columns = ["series", "x", "ours", "std", "n", "published", "difference", "within tolerance", "tolerance"]
    pd.DataFrame(columns=columns).to_csv(tmp_path / "verdicts.csv", index=False)
    return experiment_section(tmp_path, toy.name, "laptop")


STAND_IN = "kn (Lenet-300-100 stand-in)"


@pytest.mark.parametrize(
    ("published", "series", "says"),
    [
        (
            (Published("kn", "ResNet-50", 61.7, "README"),),
            STAND_IN,
            "No verdict: the published numbers are for the paper's",
        ),
        (
            (),
            STAND_IN,
            "No published number for these points (the paper gives this result as a figure only).",
        ),
        (
            (Published("greedy", 8, 91.0, "Abstract"),),
            "greedy",
            "No verdict: this scale does not measure the published points (greedy at 8: 91 %).",
        ),
    ],
)
def test_a_section_without_verdicts_says_why(
    tmp_path: Path, monkeypatch, published, series: str, says: str
) -> None:
    section = _section(tmp_path, monkeypatch, published, series)
    assert says in section and f"| {series} | 1 | 90.00 ± 1.00 | 3 |" in section


EARLIER = """
### toy/earlier (laptop scale)

| point | ours | published | difference | within 1 | published under |
|---|---|---|---|---|---|
| a, 1 | 90.00 ± 1.00 | 91 (Table 1) | -1.00 | yes | best test epoch |
| a, 2 | 80.00 ± 1.00 | 91 (Table 1) | -11.00 | **no** | best test epoch |

Setting: an earlier machine's runs.

### toy/stand-in (laptop scale)

An outdated section of the experiment that the output folder now holds.

### gone/from-the-registry (laptop scale)

| point | ours | published | difference | within 1 | published under |
|---|---|---|---|---|---|
| a, 1 | 90.00 ± 1.00 | 91 (Table 1) | -1.00 | yes | best test epoch |
"""


def _measured(experiment: Experiment, seeds: int = 3, grid: str | None = None) -> dict[str, object]:
    digest = experiment.grid_digest(get_scale("laptop"), list(range(seeds)))
    return {
        "experiment": experiment.name,
        "scale": "laptop",
        "seeds": seeds,
        "runs": 3,
        "train_hours": 0.5,
        "device": "cpu",
        "grid": grid or digest,
    }


def test_a_report_keeps_the_earlier_sections_of_reproductions_it_does_not_hold(
    tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "out"
    (out / "toy" / "stand-in").mkdir(parents=True)
    _section(out / "toy" / "stand-in", monkeypatch, ())
    grid = lambda scale: [Point("a", 1, "edge-popup", {})]  # noqa: E731
    earlier = Experiment(name="toy/earlier", paper="toy", in_paper="Table 2", question="q?", grid=grid)
    monkeypatch.setitem(EXPERIMENTS, earlier.name, earlier)
    measured = pd.DataFrame([_measured(earlier), _measured(EXPERIMENTS["toy/stand-in"], grid="0ld")])

    text, table = report(out, "laptop", previous=EARLIER, measured=measured)

    assert text.startswith(
        "2 experiments measured at laptop scale; 1 published numbers reached within tolerance, 1 missed."
    )
    assert "Setting: an earlier machine's runs." in text  # kept as it was
    assert (
        "An outdated section" not in text and "| kn (Lenet-300-100 stand-in) | 1 | 90.00" in text
    )  # replaced
    assert "gone/from-the-registry" not in text  # an experiment the registry no longer has is dropped
    assert text.index("### toy/earlier") < text.index("### toy/stand-in")  # name order
    rows = table.set_index("experiment")
    assert list(rows.index) == ["toy/earlier", "toy/stand-in"]
    assert rows.loc["toy/stand-in", "train_hours"] == round(60.0 / 3600, 3)  # from the new meta
    assert rows.loc["toy/stand-in", "grid"] == EXPERIMENTS["toy/stand-in"].grid_digest(
        get_scale("laptop"), [0, 1, 2]
    )


def test_a_report_drops_an_earlier_section_whose_grid_has_changed(tmp_path: Path, monkeypatch) -> None:
    grid = lambda scale: [Point("a", 1, "edge-popup", {})]  # noqa: E731
    earlier = Experiment(name="toy/earlier", paper="toy", in_paper="Table 2", question="q?", grid=grid)
    monkeypatch.setitem(EXPERIMENTS, earlier.name, earlier)
    measured = pd.DataFrame([_measured(earlier)])
    changed = lambda scale: [Point("a", 1, "edge-popup", {"density": 0.3})]  # noqa: E731
    monkeypatch.setitem(EXPERIMENTS, earlier.name, dataclasses.replace(earlier, grid=changed))

    text, table = report(tmp_path, "laptop", previous=EARLIER, measured=measured)

    assert text.startswith("0 experiments measured") and "toy/earlier" not in text and table.empty


def test_the_shipped_measurements_are_of_the_current_grids_and_match_results_md() -> None:
    """A grid changed without a new reproduction would leave RESULTS.md and ``reproduce --list`` stating the
    numbers and hours of other runs."""
    measured = read_measured()
    stale = [
        row.experiment
        for _, row in measured.iterrows()
        if not is_current(row, EXPERIMENTS[row.experiment], get_scale(row.scale))
    ]
    assert stale == [], f"rerun these reproductions and benchmarks/reproductions_report.py: {stale}"
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text().split(BEGIN)[1].split(END)[0]
    assert sorted(earlier_sections(results, "laptop")) == sorted(
        measured[measured.scale == "laptop"].experiment
    )


def test_reproduce_list_states_the_shipped_hours_on_a_fresh_clone(tmp_path: Path) -> None:
    listed = experiment_list(out=tmp_path).set_index("name")
    shipped = read_measured()
    assert len(shipped) == sum(e.runnable for e in EXPERIMENTS.values())  # every runnable experiment measured
    for _, row in shipped.iterrows():
        assert listed.loc[row.experiment, f"{row.scale} measured"] == f"{row.train_hours:.2f} h"


def test_verdict_counts_read_only_the_verdict_table() -> None:
    assert verdict_counts(EARLIER.split("### toy/stand-in")[0]) == (1, 1)
    assert verdict_counts("| series | x | test % |\n|---|---|---|\n| yes | 1 | 2 |\n") == (0, 0)
