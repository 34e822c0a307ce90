"""notebooks/00_quickstart.ipynb in JupyterLab as a student meets it, under the smoke scale: it opens with no
dialog, every cell runs without an error, figures show as images large enough for a projector, widgets show as
controls, and the Explorer at its end trains on a button press with a live plot and a result table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.e2e.conftest import PROJECT, notebook_in_browser
from tests.e2e.lab import LabServer, NotebookPage, too_small_to_read

QUICKSTART = "notebooks/00_quickstart.ipynb"


def code_cells(path: Path) -> int:
    return sum(cell.cell_type == "code" for cell in nbformat.read(path, as_version=4).cells)


@pytest.fixture(scope="module")
def quickstart(browser_context, lab_server: LabServer) -> Iterator[NotebookPage]:
    """The quickstart, opened and run top to bottom once for the tests of this module."""
    with notebook_in_browser(browser_context, lab_server, "quickstart") as nb:
        try:
            nb.open(lab_server, QUICKSTART)
            nb.run_all()
            nb.wait_for_all_cells(timeout=180)
        except Exception:
            nb.screenshot("failure-run-all")
            raise
        yield nb


def test_opens_with_its_kernel_and_runs_every_cell_cleanly(quickstart: NotebookPage) -> None:
    nb = quickstart
    nb.panel.locator(".jp-Cell").first.scroll_into_view_if_needed()
    nb.screenshot("ran-all")
    assert nb.dialogs() == []
    assert nb.kernel_name().startswith("Python 3"), nb.kernel_name()
    prompts = nb.prompts()
    assert len(prompts) == code_cells(PROJECT / QUICKSTART)
    assert [int(p[1:-2]) for p in prompts] == list(range(1, len(prompts) + 1)), prompts
    assert nb.error_outputs() == []
    assert nb.widget_problems() == []


@pytest.mark.parametrize("index", [0, 1, 2], ids=["chosen-weights", "selection", "values"])
def test_figures_render_large_enough_for_a_projector(quickstart: NotebookPage, index: int) -> None:
    nb = quickstart
    figures = nb.figures()
    assert len(figures) == 3, figures  # the chosen weights, slot usage and changes, the chosen values
    nb.panel.locator(".jp-OutputArea-output.jp-RenderedImage").nth(index).scroll_into_view_if_needed()
    nb.screenshot(f"figure-{index + 1}")
    figure = figures[index]
    assert figure["complete"] and figure["natural_width"] > 0, figure
    assert too_small_to_read(figure) is None, too_small_to_read(figure)


def test_live_plot_and_progress_render_as_widgets(quickstart: NotebookPage) -> None:
    nb = quickstart
    live = nb.output_of_cell_containing("run_live(")
    live.scroll_into_view_if_needed()
    nb.screenshot("live-plot")
    images = nb.wait_for_images_drawn(live, count=1, timeout=10)
    assert len(images) == 1 and images[0]["natural_width"] > 0, images
    assert too_small_to_read(images[0]) is None, too_small_to_read(images[0])
    assert live.locator(".widget-html, .jp-RenderedHTMLCommon").filter(has_text="accuracy").count() >= 1


def test_explorer_shows_no_broken_images_before_training(quickstart: NotebookPage) -> None:
    # the live plot and the selection viewer stay hidden until they have a picture (slotlab.widgets.hidden_image)
    explorer = quickstart.output_of_cell_containing("Explorer(scale)")
    assert quickstart.broken_images(explorer) == 0


def test_explorer_trains_with_a_live_plot_and_a_result_table(quickstart: NotebookPage) -> None:
    nb = quickstart
    explorer = nb.output_of_cell_containing("Explorer(scale)")
    explorer.scroll_into_view_if_needed()
    nb.screenshot("explorer")
    assert "scale smoke" in explorer.inner_text()
    controls = nb.controls(explorer)
    # method, model, dataset, run, layer; K (density and the finetune source are hidden for slots); the
    # selection toggles
    assert controls["dropdown"] >= 5 and controls["slider"] >= 1 and controls["toggle"] >= 2, controls
    train = explorer.locator("button.jupyter-button", has_text="Train")
    assert train.is_visible() and train.is_enabled()

    # K from 8 to 4, with the keyboard on the slider's handle
    k_slider = explorer.locator(".widget-slider", has_text="K values")
    k_slider.locator(".noUi-handle").focus()
    nb.page.keyboard.press("ArrowLeft")
    assert k_slider.locator(".widget-readout").inner_text().strip() == "4"
    nb.screenshot("explorer-k-changed")

    nb.watch_images(explorer, nth=0)  # the live plot is the Explorer's first image
    train.click()
    status = explorer.locator(".widget-html", has_text="test accuracy")
    status.wait_for(timeout=120_000)
    table = explorer.locator(".widget-html table")
    table.wait_for(timeout=30_000)
    images = nb.wait_for_images_drawn(explorer, count=2, timeout=30)  # live plot, then the selection viewer
    # the live plot at the top of the screen, the result table under it
    explorer.locator("img").first.evaluate("img => img.scrollIntoView({block: 'start'})")
    nb.screenshot("explorer-trained")
    nb.screenshot_whole("explorer-trained-whole", explorer)

    assert nb.seen_images(explorer) >= 2, "the live plot should redraw during training (smoke: 2 epochs)"
    drawn = [i for i in images if i["complete"] and i["natural_width"] > 0]
    assert len(drawn) >= 2, images
    assert too_small_to_read(drawn[0]) is None, too_small_to_read(drawn[0])
    header = [cell.strip() for cell in table.locator("th").all_inner_texts()]
    rows = table.locator("tbody tr")
    assert rows.count() == 1
    row = dict(zip(header, (c.strip() for c in rows.first.locator("td").all_inner_texts()), strict=True))
    assert row["method"] == "slots" and row["k"] == "4" and row["dataset"] == "synthetic", row
    said = re.search(r"test accuracy ([\d.]+)%", status.inner_text())
    assert said and abs(float(said.group(1)) - float(row["test %"])) <= 0.01, (status.inner_text(), row)
    assert nb.error_outputs() == [] and nb.widget_problems() == []
