"""The notebooks: committed clean (no outputs), shaped alike, and each runs top to bottom under the smoke scale."""

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# cell metadata that Jupyter adds while running and nbstripout removes
VOLATILE_KEYS = {"execution", "ExecuteTime", "collapsed", "scrolled", "jupyter"}


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
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shape_question_parameters_exercises(path: Path) -> None:
    nb = read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]}")
    assert "question" in first.source.lower() and "what to look for" in first.source.lower()
    assert last.cell_type == "markdown" and "## Exercises" in last.source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'os.environ.get("SLOTLAB_SCALE"' in tagged[0].source
    assert path.name in (NOTEBOOK_DIR / "README.md").read_text(), "add the notebook to notebooks/README.md"


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
