"""benchmarks/reproductions_report.py: the RESULTS.md section of one reproduction says why it has no verdict."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from slotlab.experiments import EXPERIMENTS, Experiment, Point, Published

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from reproductions_report import experiment_section  # noqa: E402


def _section(tmp_path: Path, monkeypatch, published: tuple[Published, ...]) -> str:
    toy = Experiment(
        name="toy/stand-in",
        paper="toy",
        in_paper="Table 1",
        question="q?",
        grid=lambda scale: [Point("kn (Lenet-300-100 stand-in)", 1, "edge-popup", {})],
        published=published,
    )
    monkeypatch.setitem(EXPERIMENTS, toy.name, toy)
    meta = {"runs": 3, "seeds": [0, 1, 2], "train_seconds": 60.0, "device": "cpu", "failed": []}
    (tmp_path / "meta-laptop.json").write_text(json.dumps(meta))
    pd.DataFrame(
        [
            {
                "series": "kn (Lenet-300-100 stand-in)",
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


@pytest.mark.parametrize(
    ("published", "says"),
    [
        (
            (Published("kn", "ResNet-50", 61.7, "README"),),
            "No verdict: the published numbers are for the paper's",
        ),
        ((), "No published number for these points (the paper gives this result as a figure only)."),
    ],
)
def test_a_section_without_verdicts_says_why(tmp_path: Path, monkeypatch, published, says: str) -> None:
    section = _section(tmp_path, monkeypatch, published)
    assert says in section and "| kn (Lenet-300-100 stand-in) | 1 | 90.00 ± 1.00 | 3 |" in section
