"""The Explorer widget (slotlab.widgets.Explorer) as a student uses it in JupyterLab, under the smoke profile:
pick K with the slider, press Train, watch the live plot redraw epoch by epoch, read the result table."""

from __future__ import annotations

import re

from tests.e2e.lab import LabServer, NotebookPage

EXPLORER_NOTEBOOK = "e2e/explorer.ipynb"


def test_explorer_trains_with_a_live_plot_and_a_result_table(
    notebook_page: NotebookPage, lab_server: LabServer
) -> None:
    nb = notebook_page
    nb.open(lab_server, EXPLORER_NOTEBOOK)
    nb.run_all()
    nb.wait_for_all_cells(timeout=120)
    explorer = nb.page.locator(".jp-Cell-outputWrapper").first
    explorer.scroll_into_view_if_needed()
    nb.screenshot("shown")
    assert nb.error_outputs() == [] and nb.widget_problems() == []
    assert "profile smoke" in explorer.inner_text()
    controls = nb.controls(explorer)
    # method, model, dataset, finetune source, run, layer; K and density; Train and the selection toggles
    assert controls["dropdown"] >= 6 and controls["slider"] >= 2 and controls["toggle"] >= 2, controls
    train = explorer.locator("button.jupyter-button", has_text="Train")
    assert train.is_visible() and train.is_enabled()

    # K from 8 to 4, by keyboard on the slider's handle as a user may do
    k_slider = explorer.locator(".widget-slider", has_text="K (slots)")
    k_slider.locator(".noUi-handle").focus()
    nb.page.keyboard.press("ArrowLeft")
    k_readout = k_slider.locator(".widget-readout")
    assert k_readout.inner_text().strip() == "4"
    nb.screenshot("k-changed")

    nb.watch_images(explorer, nth=0)  # the live plot is the Explorer's first image
    train.click()
    status = explorer.locator(".widget-html", has_text="test accuracy")
    status.wait_for(timeout=120_000)
    table = explorer.locator(".widget-html table")
    table.wait_for(timeout=30_000)
    images = nb.wait_for_images_drawn(explorer, count=2, timeout=30)  # live plot, then the selection viewer
    table.scroll_into_view_if_needed()
    nb.screenshot("trained")
    nb.screenshot_whole("trained-explorer", explorer)

    assert nb.seen_images(explorer) >= 2, "the live plot should redraw during training (smoke: 2 epochs)"
    drawn = [i for i in images if i["complete"] and i["natural_width"] > 0]
    assert len(drawn) >= 2, images
    plot = drawn[0]
    assert plot["width"] >= 600, f"live plot only {plot['width']:.0f} px wide on a 1280 px screen"
    header = [cell.strip() for cell in table.locator("th").all_inner_texts()]
    rows = table.locator("tbody tr")
    assert rows.count() == 1
    row = dict(zip(header, (c.strip() for c in rows.first.locator("td").all_inner_texts()), strict=True))
    assert row["method"] == "slots" and row["k"] == "4" and row["dataset"] == "synthetic", row
    said = re.search(r"test accuracy ([\d.]+)%", status.inner_text())
    assert said and abs(float(said.group(1)) - float(row["test %"])) <= 0.01, (status.inner_text(), row)
    assert nb.error_outputs() == []
