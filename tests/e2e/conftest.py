"""Fixtures of the browser tests: one JupyterLab server and one Chromium for the whole run, a fresh page per test.

Every test here is marked ``e2e`` (deselect with ``-m "not e2e"``). Without Chromium or Playwright they skip with
the reason, unless ``SLOTLAB_E2E_REQUIRED`` is set (as in CI), where they fail instead. Screenshots of each step go
to ``tests/e2e/artifacts/<test>/`` (git-ignored), with a last one when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import (
    LabServer,
    NotebookPage,
    chromium,
    chromium_missing_reason,
    jupyter_lab,
    playwright_driver,
)

HERE = Path(__file__).parent
PROJECT = HERE.parent.parent
ARTIFACTS = Path(os.environ.get("SLOTLAB_E2E_ARTIFACTS", HERE / "artifacts"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = chromium_missing_reason()
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.e2e)
        if reason and not os.environ.get("SLOTLAB_E2E_REQUIRED"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """When a browser test fails, keep a last screenshot and the browser console beside its step screenshots."""
    report = yield
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, NotebookPage):
                try:
                    value.screenshot(f"failure-{item.name}")
                    (value.artifacts / "console.txt").write_text("\n".join(value.console))
                except (
                    Exception
                ) as error:  # the page may be what broke; the test's own failure is what matters
                    print(f"no failure screenshot: {error}")
    return report


def require_browser() -> None:
    reason = chromium_missing_reason()
    if reason:
        pytest.fail(reason)  # only reached when SLOTLAB_E2E_REQUIRED made the tests run anyway


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the notebooks to serve, so that nothing a test does can write into the checkout."""
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copytree(HERE / "notebooks", root / "e2e")
    shutil.copytree(
        PROJECT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    return root


@pytest.fixture(scope="session")
def lab_server(lab_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    require_browser()
    home = tmp_path_factory.mktemp("lab-home")
    env = {
        "SLOTLAB_SCALE": "smoke",
        "SLOTLAB_RUNS": str(home / "runs"),
        "SLOTLAB_FIGURES": str(home / "figures"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
        "CI": None,  # progress bars and all, as a student sees the notebooks
    }
    with jupyter_lab(lab_root, home, env) as server:
        yield server


@pytest.fixture(scope="session")
def playwright() -> Iterator:
    require_browser()
    with playwright_driver() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory, playwright) -> Iterator:
    with chromium(playwright, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@contextlib.contextmanager
def notebook_in_browser(browser_context, server: LabServer, name: str) -> Iterator[NotebookPage]:
    """A fresh browser tab whose screenshots go to ``artifacts/<name>/``; its kernels are stopped afterwards."""
    artifacts = ARTIFACTS / name
    shutil.rmtree(artifacts, ignore_errors=True)
    page = browser_context.new_page()
    try:
        yield NotebookPage(page, artifacts)
    finally:
        page.close()
        shut_down_kernels(server)


@pytest.fixture
def notebook_page(
    request: pytest.FixtureRequest, browser_context, lab_server: LabServer
) -> Iterator[NotebookPage]:
    with notebook_in_browser(browser_context, lab_server, request.node.name) as notebook:
        yield notebook


def shut_down_kernels(server: LabServer) -> None:
    """Stop the kernels a test started, so the next test has the CPU to itself."""
    for kernel in server.api("kernels"):
        request = urllib.request.Request(server.url(f"api/kernels/{kernel['id']}"), method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as error:
            print(f"kernel {kernel['id']} not shut down: {error}")
