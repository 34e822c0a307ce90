"""Reproductions: verdicts against published numbers, the figure, the files written, the command line."""

from pathlib import Path

import pandas as pd
import pytest

from slotlab import cli
from slotlab.experiments import EXPERIMENTS, Experiment, Point, Published
from slotlab.reproduce import experiment_list, reproduce
from slotlab.scales import SCALES

TOY = Experiment(
    name="toy/k",
    paper="toy",
    in_paper="Fig. 1",
    question="Does K help?",
    grid=lambda scale: [Point("greedy", k, "slots", {"k": k}) for k in (2, 8)],
    published=(
        Published("greedy", 2, 97.0, "Fig. 1"),
        Published("greedy", 8, 98.2, "Fig. 1"),
        Published("x", 1, 50, "-"),
    ),
    tolerance=0.5,
)


def test_verdicts_set_ours_against_each_published_number_of_a_measured_point() -> None:
    summary = pd.DataFrame(
        [
            {"series": "greedy", "x": 2, "mean": 96.8, "std": 0.1, "n": 3, "low": 96.5, "high": 97.1},
            {"series": "greedy", "x": 8, "mean": 97.5, "std": 0.2, "n": 3, "low": 97.0, "high": 98.0},
        ]
    )
    verdicts = TOY.verdicts(summary)
    assert verdicts["x"].tolist() == [2, 8]  # the published point we did not measure is left out
    assert verdicts["difference"].round(2).tolist() == [-0.2, -0.7]
    assert verdicts["within tolerance"].tolist() == [True, False]


def test_the_figure_draws_our_error_bars_and_the_published_markers() -> None:
    summary = pd.DataFrame(
        [{"series": "greedy", "x": 2, "mean": 96.8, "std": 0.1, "n": 3, "low": 0, "high": 0}]
    )
    ax = TOY.plot(summary).axes[0]
    published = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert sum(len(line.get_xdata()) for line in published) == 3
    assert ax.containers and ax.get_ylabel() == "test accuracy (%)"


def figure_of(published: tuple[Published, ...], points: list[tuple[str, float, float]], **options):
    """The plot of a toy experiment with ``published`` numbers for our ``points`` (series, x, mean)."""
    toy = Experiment(
        name="toy/plot",
        paper="toy",
        in_paper="Fig. 2",
        question="?",
        grid=lambda scale: [],
        published=published,
        **options,
    )
    rows = [{"series": s, "x": x, "mean": m, "std": 0.5, "n": 3, "low": 0, "high": 0} for s, x, m in points]
    return toy.plot(pd.DataFrame(rows))


def test_one_setting_puts_the_series_on_the_x_axis_with_their_published_numbers() -> None:
    """A single x (IWR's 98 %-pruned panel): the series are the categories; a published number stands at the
    category of our series of its name, a stand-in's included, in that series' colour."""
    published = (Published("B", 0.02, 40.0, "Fig. 2"), Published("A", 0.02, 50.0, "Fig. 2"))
    series = ["A (Lenet-300-100 stand-in)", "B (Lenet-300-100 stand-in)"]
    ax = figure_of(published, [(series[0], 0.02, 70.0), (series[1], 0.02, 30.0)]).axes[0]
    summary = pd.DataFrame({"series": series})
    assert [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()] == list(summary["series"])
    ours = {tuple(c.lines[0].get_xdata()): c.lines[0].get_color() for c in ax.containers}
    published = [line for line in ax.get_lines() if line.get_marker() == "D"]
    placed = {
        float(line.get_ydata()[0]): (float(line.get_xdata()[0]), line.get_color()) for line in published
    }
    assert placed == {40.0: (1.0, ours[(1,)]), 50.0: (0.0, ours[(0,)])}


def test_many_published_series_of_other_models_share_one_legend_entry() -> None:
    published = tuple(Published(f"Conv-{d}", 0.5, 80.0 + d, "Fig. 3") for d in (2, 4, 6, 8))
    fig = figure_of(published, [("ours", 0.25, 95.0), ("ours", 1.0, 95.0)], log_x=True)
    texts = [
        t.get_text()
        for legend in [*fig.legends, *[a.get_legend() for a in fig.axes]]
        if legend
        for t in legend.texts
    ]
    assert sorted(texts) == ["ours (ours)", "published, 4 series of the paper"]
    assert [float(x) for x in fig.axes[0].get_xticks()] == [
        0.25,
        0.5,
        1.0,
    ]  # the published width gets its tick


def test_an_experiment_without_a_grid_says_what_it_misses() -> None:
    with pytest.raises(Exception, match="give a grid, or say what is missing"):
        Experiment(name="a/b", paper="p", in_paper="t", question="q", grid=None)
    missing = Experiment(
        name="a/b", paper="p", in_paper="t", question="q", grid=None, missing="weight sharing"
    )
    assert missing.status == "cannot run yet: weight sharing"


def test_a_smoke_reproduction_writes_its_table_figure_and_verdicts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(EXPERIMENTS, TOY.name, TOY)
    result = reproduce(
        TOY.name, scale="smoke", seeds=2, root=tmp_path / "runs", out=tmp_path / "out", workers=1
    )
    folder = tmp_path / "out" / "toy" / "k"
    for name in ("table.csv", "summary.csv", "verdicts.csv", "figure.png", "figure.pdf", "meta-smoke.json"):
        assert (folder / name).is_file(), name
    table = pd.read_csv(folder / "table.csv")
    assert len(table) == 4 and sorted(table["seed"].unique()) == [0, 1]
    assert result.summary["n"].tolist() == [2, 2] and len(result.verdicts) == 2
    # synthetic data: the differences are shown, but nothing is judged within or outside the tolerance
    assert result.verdicts["within tolerance"].isna().all() and "synthetic" in result.caveat
    assert not result.failed
    again = reproduce(TOY.name, scale="smoke", seeds=2, root=tmp_path / "runs", out=None, workers=1)
    assert again.table["test %"].tolist() == result.table["test %"].tolist()  # read back from the cache


def test_the_workers_default_to_the_scales_on_a_cpu(tmp_path: Path, monkeypatch) -> None:
    """Smoke runs last seconds, so they stay in this process; laptop runs get one worker per core (up to 4)."""
    import slotlab.sweep as sweeping

    asked = []
    monkeypatch.setattr(sweeping, "sweep", lambda **kwargs: asked.append(kwargs["workers"]))
    monkeypatch.setitem(EXPERIMENTS, TOY.name, TOY)
    monkeypatch.setenv("SLOTLAB_SCALE", "smoke")  # the explicit scale wins over the environment's
    for scale in ("smoke", "laptop"):
        reproduce(TOY.name, scale=scale, seeds=1, root=tmp_path, out=None, device="cpu")
    reproduce(TOY.name, scale="smoke", seeds=1, root=tmp_path, out=None, device="cpu", workers=3)
    per_core = min(sweeping.MAX_CPU_WORKERS, sweeping.usable_cores())
    assert asked == [1, per_core, 3]
    assert sweeping.default_workers("cpu") == 1  # $SLOTLAB_SCALE's, without a scale


def test_the_list_has_every_experiment_with_its_runs_per_scale() -> None:
    listing = experiment_list()
    assert listing["name"].tolist() == list(EXPERIMENTS)
    for _, row in listing.iterrows():
        e = EXPERIMENTS[row["name"]]
        expected = len(e.points(SCALES["laptop"])) * e.seeds["laptop"] if e.runnable else 0
        assert row["laptop runs"] == expected


def test_the_command_line(capsys) -> None:
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == "name smoke runs laptop runs laptop measured paper runs status".split()
    k_sweep = next(line for line in listed if line.strip().startswith("slot-machines/k-sweep"))
    assert " h " in k_sweep and len(k_sweep) < 200  # its measured hours, on one terminal line
    assert cli.main(["reproduce", "nothing/here"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown experiment 'nothing/here'" in err and "\n" not in err
    assert cli.main(["reproduce"]) == 2


def test_a_published_number_that_several_series_are_set_against_is_drawn_once_in_black() -> None:
    # slot-machines/init sets both inits against the paper's 97.0 and 98.2: one marker each, not two on one spot
    published = tuple(
        Published(s, k, v, "Sec. 1") for s in ("code", "paper") for k, v in ((2, 97.0), (8, 98.2))
    )
    points = [(s, k, m) for s in ("code", "paper") for k, m in ((2, 96.9), (8, 97.7))]
    fig = figure_of(published, points, log_x=True)
    markers = [line for line in fig.axes[0].get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1 and markers[0].get_color() == "black" and markers[0].get_label() == "published"
    assert sorted(zip(markers[0].get_xdata(), markers[0].get_ydata(), strict=True)) == [(2, 97.0), (8, 98.2)]


def test_a_published_model_we_did_not_run_gets_its_own_labelled_place() -> None:
    # laperm/cifar10-convs at laptop scale runs Conv2 and Conv4; the README's Conv13 still needs a tick of its own
    published = tuple(
        Published("LaPerm", m, v, "README") for m, v in (("Conv2", 78.2), ("Conv4", 89.2), ("Conv13", 92.2))
    )
    ax = figure_of(published, [("LaPerm", "Conv2", 38.9), ("LaPerm", "Conv4", 32.7)]).axes[0]
    ticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    assert ticks == {"Conv2": 0, "Conv4": 1, "Conv13": 2}
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    placed = {
        float(y): float(x)
        for line in markers
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
    }
    assert placed == {78.2: 0.0, 89.2: 1.0, 92.2: 2.0}


def test_a_stand_ins_one_model_set_against_the_papers_models_puts_the_models_on_the_axis() -> None:
    # edge-popup/imagenet on the CPU scales: both inits on ResNet-20 only, the paper's numbers on three ResNets
    published = tuple(
        Published(init, model, v, "README")
        for init, values in (("kn", (61.7, 66.2)), ("sc", (68.6, 72.3)))
        for model, v in zip(("ResNet-50", "ResNet-101"), values, strict=True)
    )
    points = [("kn (ResNet-20 stand-in)", "ResNet-20", 40.0), ("sc (ResNet-20 stand-in)", "ResNet-20", 45.0)]
    ax = figure_of(published, points).axes[0]
    ticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    assert ticks == {"ResNet-20": 0, "ResNet-50": 1, "ResNet-101": 2}
    ours = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    placed = {
        float(y): (float(x), line.get_color())
        for line in markers
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
    }
    kn, sc = ours["kn (ResNet-20 stand-in) (ours)"], ours["sc (ResNet-20 stand-in) (ours)"]
    assert placed == {61.7: (1.0, kn), 66.2: (2.0, kn), 68.6: (1.0, sc), 72.3: (2.0, sc)}
