"""JupyterLab in headless Chromium: the server, the browser and the page actions the end-to-end tests share.

The server runs `jupyter lab` on a free loopback port with a token, in its own runtime, config, data, settings
and workspace folders, so a developer's own Jupyter set-up neither helps nor hinders a test. The browser is
Debian's Chromium driven by Playwright (browser downloads are impossible offline), started with the flags a closed
network needs and a fresh profile folder. Both are context managers that always stop what they started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SLOTLAB_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium keeps trying hosts a closed network refuses and can hang at start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# A projector-sized screen: what a lecture hall shows, and what the screenshots record.
VIEWPORT = {"width": 1280, "height": 800}

# User settings for the test server only: no news or update pop-ups, no autosave writing outputs into notebooks,
# every cell kept in the page so that waiting on all of them is possible.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


# Readable from the back of a lecture hall: at least this wide on a 1280 px screen, and not shrunk much below the
# size matplotlib drew it at (a 10 pt label at 100 dpi is 14 px; shrunk to 80 % it is 11 px).
MIN_FIGURE_WIDTH = 500
MIN_FIGURE_SCALE = 0.8


def too_small_to_read(image: dict[str, float]) -> str | None:
    """Why a rendered figure (as ``NotebookPage.images`` reports it) is too small to read, or None."""
    if image["width"] < MIN_FIGURE_WIDTH:
        return f"figure {image['width']:.0f} px wide on screen (at least {MIN_FIGURE_WIDTH})"
    scale = image["width"] / image["natural_width"]
    if scale < MIN_FIGURE_SCALE:
        return (
            f"figure drawn {image['natural_width']:.0f} px wide but shown at {image['width']:.0f} px "
            f"({scale:.0%}): its text shrinks with it; draw it narrower (figsize) instead"
        )
    return None


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and Playwright are both present."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium), as .ci/run does"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright not installed: pip install -e '.[e2e]'"
    return None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabServer:
    """A running `jupyter lab`: where it listens, its token, the folder it serves and its log file."""

    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=5) as response:
            return json.loads(response.read())

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def lab_environment(home: Path, extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment of the server and its kernels: this process's, with every Jupyter folder under ``home``,
    updated by ``extra`` (a None value removes the variable)."""
    env = dict(os.environ)
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTERLAB_DIR"):
        env.pop(name, None)
    folders = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "matplotlib",
    }
    for name, sub in folders.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(home / sub)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def write_lab_settings(settings_dir: Path) -> None:
    for relative, values in LAB_SETTINGS.items():
        target = settings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


@contextlib.contextmanager
def jupyter_lab(
    root: Path, home: Path, env: dict[str, str | None] | None = None, timeout: float = 90.0
) -> Iterator[LabServer]:
    """Start `jupyter lab` serving ``root``; stop it, its kernels included, whatever happens inside the block."""
    environment = lab_environment(home, env)
    write_lab_settings(Path(environment["JUPYTERLAB_SETTINGS_DIR"]))
    token = os.urandom(16).hex()
    port = free_loopback_port()
    log = home / "jupyter-lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--ServerApp.shutdown_no_activity_timeout=900",  # a server orphaned by a killed test run ends by itself
        "--MappingKernelManager.cull_idle_timeout=900",
    ]
    if os.geteuid() == 0:  # CI machines and containers run as root
        command.append("--allow-root")
    with open(log, "wb") as log_file:
        # Its own process group, so that stopping it also stops the kernels it started.
        process = subprocess.Popen(
            command,
            cwd=root,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabServer(process=process, port=port, token=token, root=root, log=log)
    try:
        wait_until_serving(server, timeout)
        yield server
    finally:
        stop_process_group(process)


def wait_until_serving(server: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            server.api("status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.25)
    raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the group (the server shuts its kernels down), then SIGKILL to whatever is left of it."""
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        group = None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM) if group is not None else process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes_using(argument: str) -> list[int]:
    """Process ids whose command line contains ``argument`` (a browser's profile folder, say)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if argument.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


@contextlib.contextmanager
def playwright_driver() -> Iterator[Any]:
    """Playwright's driver (one per thread: every browser of a test run is started from it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def chromium(playwright: Any, profile: Path) -> Iterator[Any]:
    """Headless Debian Chromium with a fresh profile folder, started by ``playwright``; yields its context."""
    if profile.exists():
        shutil.rmtree(profile)
    profile.mkdir(parents=True)
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        device_scale_factor=1,
        timeout=60_000,
    )
    try:
        yield context
    finally:
        context.close()


# --- What a user does in the page, and what a test checks of it ---------------------------------------------

PROMPT_DONE = re.compile(r"^\[\d+\]:$")


class NotebookPage:
    """One notebook open in JupyterLab, with the actions a user takes and screenshots after each step."""

    def __init__(self, page: Any, artifacts: Path):
        self.page = page
        self.artifacts = artifacts
        self.step = 0
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    @property
    def panel(self) -> Any:
        """The notebook on screen (other tabs stay in the page, hidden)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def screenshot(self, name: str, locator: Any = None) -> Path:
        self.step += 1
        path = self.artifacts / f"{self.step:02d}-{name}.png"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        (locator or self.page).screenshot(path=str(path))
        return path

    def open(self, server: LabServer, notebook: str, timeout: float = 90.0) -> None:
        """Open ``notebook`` (relative to the server root) and wait until its kernel is idle. A dialog that comes
        up instead (kernel selection, an error) fails the test with its text, as it would stop a student."""
        # reset: no tabs restored from an earlier test's workspace
        self.page.goto(server.url(f"lab/tree/{notebook}?reset"), timeout=timeout * 1000)
        self.panel.locator(".jp-Notebook").wait_for(state="visible", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while not self.kernel_idle():
            dialogs = self.dialogs()
            if dialogs:
                self.screenshot("dialog")
                raise AssertionError(f"a dialog blocks {notebook} on opening: {dialogs}")
            if time.monotonic() > deadline:
                self.screenshot("kernel-not-ready")
                raise AssertionError(
                    f"kernel of {notebook} not idle after {timeout:.0f} s: {self.kernel_status()!r}"
                )
            self.page.wait_for_timeout(250)
        self.screenshot("opened")

    def dialogs(self) -> list[str]:
        """The text of every dialog on screen."""
        return [text.strip() for text in self.page.locator(".jp-Dialog").all_inner_texts()]

    def kernel_name(self) -> str:
        """The kernel the notebook's toolbar names ("No Kernel" when none was chosen)."""
        return self.panel.locator(".jp-NotebookPanel-toolbar .jp-KernelName").inner_text().strip()

    def kernel_status(self) -> str:
        """The status bar's kernel item, such as "Python 3 (ipykernel) | Idle"."""
        items = self.page.locator("#jp-main-statusbar").inner_text()
        return next((line for line in items.splitlines() if "|" in line), items)

    def kernel_idle(self) -> bool:
        status = self.kernel_status()
        return "No Kernel" not in status and status.rstrip().endswith("Idle")

    def run_all(self) -> None:
        """Run > Run All Cells, through the menu bar as a user would."""
        self.page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(
            ".lm-Menu-content .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
        ).click()

    def interrupt_kernel(self) -> None:
        """Kernel > Interrupt Kernel, through the menu bar as a user would."""
        self.page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
        self.page.locator(
            ".lm-Menu-content .lm-Menu-itemLabel", has_text=re.compile(r"^Interrupt Kernel$")
        ).click()

    def prompts(self) -> list[str]:
        return [p.strip() for p in self.panel.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]

    def wait_for_all_cells(self, timeout: float) -> list[str]:
        """Wait until every code cell shows an execution count; return the prompts. Fails with what is pending."""
        deadline = time.monotonic() + timeout
        prompts: list[str] = []
        while time.monotonic() < deadline:
            prompts = self.prompts()
            if prompts and all(PROMPT_DONE.match(p) for p in prompts) and self.kernel_idle():
                return prompts
            if self.error_outputs():
                break  # Run All stops at an error: the remaining cells never run
            self.page.wait_for_timeout(500)
        raise AssertionError(
            f"cells not all finished after {timeout:.0f} s; prompts {prompts}; errors {self.error_outputs()}"
        )

    def error_outputs(self) -> list[str]:
        """Tracebacks shown in cell outputs (JupyterLab renders errors as stderr text)."""
        texts = self.panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [t for t in texts.all_inner_texts() if "Traceback" in t or re.search(r"^\w*Error\b", t, re.M)]

    def widget_problems(self) -> list[str]:
        """Widget views that failed to render: a missing front-end extension shows one of these."""
        problems = []
        for text in self.panel.locator(".jp-OutputArea-output").all_inner_texts():
            for marker in ("Error displaying widget", "Loading widget...", "model not found"):
                if marker in text:
                    problems.append(text.strip()[:200])
        return problems

    def images(self, scope: Any = None) -> list[dict[str, float]]:
        """Rendered output images: natural and on-screen size, and whether the browser decoded them."""
        locator = (scope or self.panel.locator(".jp-OutputArea-output")).locator("img")
        return locator.evaluate_all(
            """imgs => imgs.map(img => ({
                complete: img.complete, natural_width: img.naturalWidth, natural_height: img.naturalHeight,
                width: img.getBoundingClientRect().width, height: img.getBoundingClientRect().height,
                src: img.src.slice(0, 40)}))"""
        )

    def controls(self, scope: Any = None) -> dict[str, int]:
        """How many visible widget controls of each kind the page shows."""
        root = scope or self.panel
        kinds = {
            "slider": ".widget-slider .noUi-handle, .widget-slider input[type='range']",
            "dropdown": ".widget-dropdown select",
            "button": "button.jupyter-button",
            "toggle": ".widget-toggle-buttons button, .widget-radio input",
            "text": ".widget-text input, .widget-inline-hbox input",
        }
        return {kind: root.locator(selector).filter(visible=True).count() for kind, selector in kinds.items()}

    def watch_images(self, scope: Any, nth: int = 0) -> None:
        """Record every picture the ``nth`` image inside ``scope`` shows from now on (a plot updating live)."""
        scope.evaluate(
            """(root, nth) => {
                root.__seenImages = [];
                const note = () => {
                    const img = root.querySelectorAll('img')[nth];
                    if (img && img.src && !root.__seenImages.includes(img.src)) root.__seenImages.push(img.src);
                };
                note();
                new MutationObserver(note).observe(root, {subtree: true, childList: true, attributes: true});
            }""",
            nth,
        )

    def seen_images(self, scope: Any) -> int:
        """How many different pictures the watched image has shown."""
        return scope.evaluate("root => (root.__seenImages || []).length")

    def wait_for_images_drawn(self, scope: Any, count: int, timeout: float) -> list[dict[str, float]]:
        """Wait until ``scope`` shows ``count`` decoded images (an empty image widget has none)."""
        deadline = time.monotonic() + timeout
        while True:
            images = self.images(scope)
            drawn = [i for i in images if i["complete"] and i["natural_width"] > 0]
            if len(drawn) >= count or time.monotonic() > deadline:
                return images
            self.page.wait_for_timeout(250)

    def screenshot_whole(self, name: str, locator: Any, height: int = 1600) -> Path:
        """``locator`` in full, on a screen made taller for the shot (the notebook scrolls inside the page)."""
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        try:
            locator.scroll_into_view_if_needed()
            return self.screenshot(name, locator)
        finally:
            self.page.set_viewport_size(VIEWPORT)

    def output_of_cell_containing(self, code_fragment: str) -> Any:
        """The output area of the one code cell whose source contains ``code_fragment``."""
        cell = self.panel.locator(
            ".jp-CodeCell", has=self.page.locator(".jp-InputArea", has_text=code_fragment)
        )
        return cell.locator(".jp-Cell-outputWrapper")

    def broken_images(self, scope: Any) -> int:
        """Visible images the browser could not decode: a student sees a broken-image icon."""
        return scope.locator("img").evaluate_all(
            "imgs => imgs.filter(i => i.complete && i.naturalWidth === 0 && i.getClientRects().length).length"
        )

    def figures(self) -> list[dict[str, float]]:
        """The images of plain outputs (matplotlib's inline figures), not those inside widgets."""
        return self.images(self.panel.locator(".jp-OutputArea-output.jp-RenderedImage"))
