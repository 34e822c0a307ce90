"""The harness itself, on a small notebook of its own: a figure, a slider, a dropdown and a button that redraws a
plot and shows a table. If these fail, the notebooks' own browser tests cannot be trusted either way."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.lab import NotebookPage, chromium, group_alive, jupyter_lab, processes_using

HARNESS_NOTEBOOK = "e2e/widgets_and_figure.ipynb"


def test_server_and_browser_stop_when_the_test_fails(tmp_path: Path, lab_root: Path, playwright) -> None:
    with pytest.raises(RuntimeError, match="a failing test"):
        with jupyter_lab(lab_root, tmp_path / "home") as server:
            pgid = os.getpgid(server.process.pid)
            with chromium(playwright, tmp_path / "profile") as context:
                assert processes_using(str(tmp_path / "profile")), (
                    "no Chromium process found with its profile"
                )
                page = context.new_page()
                page.goto(server.url("api/status"))
                assert '"started"' in page.content()
                raise RuntimeError("a failing test")
    assert server.process.poll() is not None, "jupyter lab still running"
    assert not group_alive(pgid), "a process of the server's group (a kernel) is still running"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url("api/status"), timeout=2)
    assert processes_using(str(tmp_path / "profile")) == [], "Chromium still running"


def test_figure_and_widgets_render_and_respond(notebook_page: NotebookPage, lab_server) -> None:
    nb = notebook_page
    nb.open(lab_server, HARNESS_NOTEBOOK)
    assert "Python 3" in nb.kernel_name()

    nb.run_all()
    prompts = nb.wait_for_all_cells(timeout=90)
    nb.screenshot("ran-all")
    assert len(prompts) == 3
    assert nb.error_outputs() == []
    assert nb.widget_problems() == []
    assert nb.dialogs() == []

    figures = nb.figures()
    assert len(figures) == 1, figures
    figure = figures[0]
    assert figure["complete"] and figure["natural_width"] > 0, figure
    assert figure["width"] >= 500, f"figure only {figure['width']:.0f} px wide on a 1280 px screen"

    controls = nb.controls()
    assert controls["slider"] == 1 and controls["dropdown"] == 1 and controls["button"] == 1, controls

    area = nb.output_of_cell_containing("train.on_click")
    area.scroll_into_view_if_needed()
    nb.screenshot("controls")
    area.locator(".widget-dropdown select").select_option("cos")
    nb.watch_images(area)
    area.locator("button.jupyter-button", has_text="Train").click()
    table = area.locator("table.dataframe")
    table.wait_for(state="visible", timeout=30_000)
    table.scroll_into_view_if_needed()
    nb.screenshot("trained")
    nb.screenshot_whole("trained-output", area)
    plots = nb.images(area)
    assert len(plots) == 1 and plots[0]["complete"] and plots[0]["natural_width"] > 0, plots
    assert nb.seen_images(area) >= 2, "the plot should be redrawn while training runs, not only at the end"
    assert "cos" in table.inner_text()
    assert nb.error_outputs() == []
