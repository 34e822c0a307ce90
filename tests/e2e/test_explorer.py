"""The Explorer in JupyterLab through its surprises, as a student meets them: Stop during a run and Train again,
Kernel -> Interrupt during a run and Train again, two finished runs and the run list, and a run that fails (ImageNet
without its folder, after the estimate warning). Each state leaves one line in the status, a Train button that
works and no traceback; screenshots of each state go to ``artifacts/explorer/``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import notebook_in_browser
from tests.e2e.lab import LabServer, NotebookPage

NOTEBOOK = "e2e/explorer_states.ipynb"
MINUTES = 60_000


@pytest.fixture(scope="module")
def explorer_page(browser_context, lab_server: LabServer) -> Iterator[NotebookPage]:
    with notebook_in_browser(browser_context, lab_server, "explorer") as nb:
        nb.open(lab_server, NOTEBOOK)
        nb.run_all()
        nb.wait_for_all_cells(timeout=120)
        yield nb


def explorer(nb: NotebookPage):
    return nb.output_of_cell_containing('Explorer("smoke")')


def status_box(nb: NotebookPage):
    """The status line beside the Train and Stop buttons."""
    row = explorer(nb).locator(".widget-hbox", has=nb.page.locator("button", has_text="Train")).last
    return row.locator(".widget-html")


def status(nb: NotebookPage) -> str:
    return status_box(nb).inner_text().strip()


def wait_for_status(nb: NotebookPage, test, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while not test(line := status(nb)):
        if time.monotonic() > deadline:
            raise AssertionError(f"status after {timeout:.0f} s: {line!r}")
        nb.page.wait_for_timeout(250)
    return line


def button(nb: NotebookPage, label: str):
    return explorer(nb).locator("button.jupyter-button", has_text=label)


def wait_for_text(nb: NotebookPage, text: str, timeout: int = 3 * MINUTES) -> None:
    explorer(nb).get_by_text(text).first.wait_for(timeout=timeout)


def assert_settled(nb: NotebookPage) -> None:
    """Ready for the next run: Train enabled, Stop disabled, nothing says training, no traceback anywhere."""
    nb.page.wait_for_function("el => !el.disabled", arg=button(nb, "Train").element_handle(), timeout=MINUTES)
    assert button(nb, "Train").is_enabled() and button(nb, "Stop").is_disabled()
    line = status(nb)
    assert "training" not in line and "Traceback" not in line, line
    assert nb.error_outputs() == [] and nb.widget_problems() == []
    height = explorer(nb).evaluate("el => el.getBoundingClientRect().height")
    assert height < 2500, f"the Explorer is {height:.0f} px tall: something printed into it"


def choose(nb: NotebookPage, label: str, value: str) -> None:
    explorer(nb).locator(".widget-dropdown", has_text=label).locator("select").select_option(label=value)


def test_stop_ends_the_epoch_and_train_continues(explorer_page: NotebookPage) -> None:
    nb = explorer_page
    assert button(nb, "Stop").is_disabled()
    button(nb, "Train").click()
    wait_for_text(nb, "epoch 1 of 8 done")
    assert button(nb, "Stop").is_enabled() and button(nb, "Train").is_disabled()
    button(nb, "Stop").click()
    wait_for_status(nb, lambda text: "press Train to continue it" in text)
    explorer(nb).scroll_into_view_if_needed()
    nb.screenshot("stopped")
    assert "stopped after epoch" in status(nb)
    assert_settled(nb)
    button(nb, "Train").click()  # continues the stopped run to its end
    wait_for_status(nb, lambda text: "test accuracy" in text)
    assert_settled(nb)
    assert "8 epochs" in " ".join(explorer(nb).locator(".widget-label").all_inner_texts())


def test_an_interrupt_is_one_line_and_train_continues(explorer_page: NotebookPage) -> None:
    nb = explorer_page
    k = explorer(nb).locator(".widget-slider", has_text="K values")
    k.locator(".noUi-handle").focus()
    nb.page.keyboard.press("ArrowLeft")  # K = 4: a new run
    button(nb, "Train").click()
    wait_for_text(nb, "epoch 1 of 8 done")
    nb.interrupt_kernel()
    wait_for_status(nb, lambda text: "interrupted; press Train to continue" in text)
    explorer(nb).scroll_into_view_if_needed()
    nb.screenshot("interrupted")
    assert_settled(nb)
    button(nb, "Train").click()
    line = wait_for_status(nb, lambda text: "test accuracy" in text)
    assert line.startswith("slots K=4 greedy · lenet300 · synthetic"), line
    assert_settled(nb)


def test_two_runs_in_the_table_and_the_run_list_moves_the_plot(explorer_page: NotebookPage) -> None:
    nb = explorer_page
    table = explorer(nb).locator(".widget-html table")
    table.wait_for(timeout=MINUTES)
    rows = [r.replace("\xa0", " ").strip() for r in table.locator("tbody tr").all_inner_texts()]
    assert len(rows) == 2 and "K=8 greedy" in rows[0] and "K=4 greedy" in rows[1], rows
    runs = explorer(nb).locator(".widget-dropdown", has_text="run").locator("select")
    options = [
        o.replace("\xa0", " ") for o in runs.locator("option").all_inner_texts()
    ]  # the select's spaces
    assert [o.split(" · ")[0] for o in options] == ["slots K=8 greedy", "slots K=4 greedy"], options
    nb.watch_images(explorer(nb), nth=0)  # the plot above the table
    runs.select_option(index=0)
    nb.page.wait_for_function(
        "el => (el.__seenImages || []).length >= 2", arg=explorer(nb).element_handle(), timeout=MINUTES
    )
    labels = " ".join(explorer(nb).locator(".widget-label").all_inner_texts())
    assert "K=8 greedy" in labels, labels  # the bar's line names the run picked
    # the status names the run picked too, not the last one trained (its update may reach the page after the plot)
    wait_for_status(nb, lambda text: text.startswith("slots K=8 greedy"), timeout=30.0)
    explorer(nb).locator("img").first.evaluate("img => img.scrollIntoView({block: 'start'})")
    nb.screenshot("two-runs")
    nb.screenshot_whole("two-runs-whole", explorer(nb))
    assert_settled(nb)


def test_a_long_run_warns_first_and_a_failing_run_is_one_red_line(explorer_page: NotebookPage) -> None:
    nb = explorer_page
    choose(nb, "dataset", "imagenet")
    button(nb, "Train").click()
    wait_for_status(nb, lambda text: "press Train again to start it" in text, timeout=120)
    explorer(nb).scroll_into_view_if_needed()
    nb.screenshot("estimate-warning")
    assert "about" in status(nb) and "on this CPU" in status(nb)
    button(nb, "Train").click()
    line = wait_for_status(nb, lambda text: "imagenet" in text and "training" not in text and "#" not in text)
    wait_for_text(nb, "failed", timeout=MINUTES)
    nb.screenshot("error")
    assert "\n" not in line, line
    colour = status_box(nb).locator("span").first.evaluate("el => getComputedStyle(el).color")
    assert colour == "rgb(176, 0, 32)", colour  # the error red
    assert_settled(nb)
