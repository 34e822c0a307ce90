"""The notebooks: committed clean (no outputs), shaped alike (question, goals, time, exercises with hidden
solutions, slides for 00 and 02), naming real registry experiments, and each runs top to bottom under smoke."""

import os
import re
from pathlib import Path

import nbformat
import pytest

from slotlab.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# cell metadata that Jupyter adds while running and nbstripout removes ("jupyter" only on the solutions cell)
VOLATILE_KEYS = {"execution", "ExecuteTime", "collapsed", "scrolled"}
SLIDES = ("00_quickstart", "02_selections_and_flips")  # presented as slides in JupyterLab
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "-", "notes"}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_the_sequence_starts_with_the_quickstart() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names[:2] == ["00_quickstart", "01_slot_machines_mnist"]
    assert len({n[:2] for n in names}) == len(names), "two notebooks share a number"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: run nbstripout on it"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
        assert not VOLATILE_KEYS & set(cell.metadata), f"{path.name} cell {i} has run metadata"
        if "jupyter" in cell.metadata:
            assert cell.metadata["jupyter"] == {"source_hidden": True}, f"{path.name} cell {i}: run metadata"
            assert cell.source.startswith("## Solutions"), f"{path.name} cell {i}: only solutions are hidden"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shape_question_parameters_exercises(path: Path) -> None:
    nb = read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first, exercises, solutions = nb.cells[0], nb.cells[-2], nb.cells[-1]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]}")
    text = first.source.lower()
    for part in ("question", "what to look for", "learning goals", "**time**", "prepare before class"):
        assert part in text, f"{path.name}: the first cell says nothing under {part!r}"
    assert re.search(r"smoke \d+ s wall", text), f"{path.name}: no measured smoke time"
    assert re.search(r"laptop \d+ s wall", text), f"{path.name}: no measured laptop time"
    assert exercises.cell_type == "markdown" and exercises.source.startswith("## Exercises")
    assert solutions.cell_type == "markdown" and solutions.source.startswith("## Solutions")
    assert solutions.metadata.get("jupyter") == {"source_hidden": True}, "solutions must start collapsed"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'os.environ.get("SLOTLAB_SCALE"' in tagged[0].source
    assert path.name in (NOTEBOOK_DIR / "README.md").read_text(), "add the notebook to notebooks/README.md"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reproductions_name_registry_experiments(path: Path) -> None:
    """Every ``reproduce("name", ...)`` names an experiment that runs, and writes nothing into the repository."""
    source = "\n".join(c.source for c in read(path).cells if c.cell_type == "code")
    for call in re.findall(r"reproduce\((.*)", source):
        assert "out=None" in call, f"{path.name}: reproduce(...) without out=None writes into the repository"
    names = re.findall(r'reproduce\(f?"([^"]+)"', source)
    for name in names:
        expanded = (
            [name.replace("{model}", m) for m in ("conv2", "conv4", "conv6")] if "{" in name else [name]
        )
        for full in expanded:
            assert full in EXPERIMENTS and EXPERIMENTS[full].runnable, (
                f"{path.name}: {full} is no runnable experiment"
            )


@pytest.mark.parametrize("name", SLIDES)
def test_slides_metadata(name: str) -> None:
    nb = read(NOTEBOOK_DIR / f"{name}.ipynb")
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert all(k in SLIDE_TYPES for k in kinds), f"{name}: a cell without a slide type: {kinds}"
    assert kinds[0] == "slide" and kinds.count("slide") >= 4
    assert kinds[-1] == "skip", "the solutions are not a slide"


def test_the_quickstart_explains_the_mechanism_and_prints_no_full_config() -> None:
    nb = read(NOTEBOOK_DIR / "00_quickstart.ipynb")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    for part in ("score", "argmax", "straight-through", "$$"):
        assert part in text, f"00 does not explain the learned choice: {part!r} missing"
    setup = nb.cells[2].source.strip().splitlines()
    assert setup[-1] != 'configs["slots"]', "cell 2 displays the whole config"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_under_the_smoke_scale(path: Path, tmp_path: Path, monkeypatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("SLOTLAB_SCALE", "smoke")
    monkeypatch.setenv("SLOTLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SLOTLAB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = read(path)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert images, "the notebook drew no figure inline"
    assert list((tmp_path / "runs").rglob("result.json")), "the notebook finished no run"
    saved = list((tmp_path / "figures").glob(f"{path.stem[:2]}_*"))
    assert saved, "the notebook saved no figure"


def test_show_and_the_runs_of_a_reproduction(tmp_path: Path, monkeypatch) -> None:
    import pandas as pd

    import slotlab.notebooks
    from slotlab.errors import SlotlabError
    from slotlab.notebooks import reproduction_runs, runs_of, show
    from slotlab.reproduce import reproduce

    monkeypatch.setenv("SLOTLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CI", "1")
    rep = reproduce("slot-machines/k-sweep", scale="smoke", seeds=1, out=None, workers=1, progress=False)
    planned = {(p.series, p.x, s): c for p, s, c in rep.experiment.configs(rep.scale, rep.seeds)}
    rows = reproduction_runs(rep)
    assert len(rows) == len(planned)
    for row in rows.itertuples():  # each row opens the run of its own point
        assert row.run.config.hash == planned[(row.series, row.x, row.seed)].hash
    greedy = runs_of(rep, "greedy")
    assert set(greedy) == {(x, s) for series, x, s in planned if series == "greedy"}
    with pytest.raises(SlotlabError, match="no series 'nope'.*greedy"):
        runs_of(rep, "nope")
    shown: list = []
    monkeypatch.setattr(slotlab.notebooks, "display", shown.append)
    show(rep, tmp_path / "figure")
    assert {p.suffix for p in tmp_path.glob("figure.*")} == {".pdf", ".svg", ".png"}
    [verdicts] = [s for s in shown if isinstance(s, pd.DataFrame)]
    assert {"ours %", "published %", "difference (points)", "within tolerance"} <= set(verdicts.columns)
    assert verdicts["published %"].tolist() == rep.verdicts["published"].round(2).tolist()
    assert shown[-1] is rep.figure and rep.experiment.in_paper in shown[0].data
    assert not (tmp_path / "reproductions").exists()  # out=None writes nothing
