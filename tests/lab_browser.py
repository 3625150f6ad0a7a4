"""JupyterLab driven by headless Chromium, for the browser tests.

- :class:`LabServer`: JupyterLab started with :func:`livertumor.series.lab.lab_command` (the
  command of ``make lab``) on a free loopback port with a random token, its Jupyter folders and
  settings in a temporary directory (autosave off, so nothing is written back into the
  notebooks), stopped with its kernels by :meth:`LabServer.stop`.
- :func:`launch_chromium`: Debian's Chromium through Playwright, with the flags a machine
  without outside network needs.
- :class:`NotebookPage`: what a person does on the page: open a notebook, run all cells, drag a
  slider or press keys on it, look at an image.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from livertumor.series.lab import lab_command

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
"""The browser binary (Debian's package ``chromium``); Playwright downloads no browser."""

CHROMIUM_ARGS = [
    # Playwright adds --headless and a new, empty --user-data-dir for every launch
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

LAB_SETTINGS = {
    # nothing is saved into the notebooks while the tests run them
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # every cell stays in the page (no virtual scrolling), so every widget can be found
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no pop-ups asking to look for news or updates online
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False,
                                                     "fetchNews": "false"},
}

WIDGET_ERROR = "Error displaying widget"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_array(png: bytes) -> np.ndarray:
    """A PNG screenshot as a uint8 (H, W, 3) RGB array."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ between two (H, W, 3) screenshots of one element."""
    if a.shape != b.shape:
        return 1.0
    return float((a != b).any(axis=-1).mean())


class LabServer:
    """JupyterLab serving ``root_dir`` on ``127.0.0.1:<free port>``; a context manager.

    ``home`` holds the server's Jupyter config, data and runtime folders and its log
    (``home/server.log``), so the user's own Jupyter settings play no part.
    """

    def __init__(self, root_dir: Path, home: Path):
        self.root_dir, self.home = Path(root_dir), Path(home)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "server.log"

    def _env(self) -> dict[str, str]:
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        settings = dirs["config"] / "lab" / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        return {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]),
                "JUPYTER_DATA_DIR": str(dirs["data"]),
                "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
                "JUPYTERLAB_SETTINGS_DIR": str(settings), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start(self, timeout: float = 180) -> LabServer:
        """Start the server and wait until its REST API answers."""
        cmd = lab_command(self.root_dir, self.port, self.token, open_browser=False)
        env = self._env()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                self._api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{self.log_tail()}")

    def _api(self, method: str, path: str) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else {}

    def url(self, path: str) -> str:
        """The URL of ``path`` (e.g. ``lab/tree/notebooks/x.ipynb``) with the token."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """Shut the server down with its kernels; kill whatever is left of them."""
        if self.proc is None or self.proc.poll() is not None:
            return
        import psutil

        children = psutil.Process(self.proc.pid).children(recursive=True)
        try:
            self._api("POST", "/api/shutdown")  # stops the kernels too
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for child in children:
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_chromium(playwright, executable: str = CHROMIUM):
    """Debian's Chromium, headless, through Playwright's ``chromium`` driver."""
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)


PROMPT_DONE = re.compile(r"^\[\d+\]:$")


class NotebookPage:
    """A JupyterLab page showing one notebook, and what a person does with it."""

    def __init__(self, page, server: LabServer):
        self.page, self.server = page, server
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))

    @property
    def panel(self):
        """The notebook shown (JupyterLab keeps other tabs in the page, hidden)."""
        return self.page.locator(".jp-NotebookPanel:visible")

    def open(self, path: str, timeout: float = 120) -> None:
        """Open ``path`` (relative to the server's root) in a workspace of its own (so no tab
        of an earlier page is restored) and wait for an idle kernel."""
        workspace = re.sub(r"\W+", "-", Path(path).stem)
        self.page.goto(self.server.url(f"lab/workspaces/{workspace}/tree/{path}"))
        self.panel.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while self.kernel_name() in ("", "No Kernel", "Kernel") or not self.panel.locator(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]').count():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no idle kernel after {timeout} s: {self.kernel_name()!r}")
            time.sleep(0.25)

    def kernel_name(self) -> str:
        """The kernel's display name as the notebook's toolbar shows it."""
        return self.panel.locator(".jp-NotebookPanel-toolbar .jp-KernelName").inner_text()

    def prompts(self) -> list[str]:
        return [p.strip() for p in
                self.panel.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]

    def run_all(self, timeout: float = 600) -> float:
        """Run > Run All Cells from the menu; wait until every code cell has run.

        Returns the seconds it took. Raises AssertionError with the notebook's error output
        when a cell fails (the run stops there and later cells keep an empty prompt).
        """
        t0 = time.monotonic()
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        idle_since = None
        while time.monotonic() - t0 < timeout:
            prompts = self.prompts()
            if prompts and all(PROMPT_DONE.match(p) for p in prompts):
                return time.monotonic() - t0
            busy = self.panel.locator(
                '.jp-Notebook-ExecutionIndicator[data-status="busy"]').count()
            if busy or any(p == "[*]:" for p in prompts):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 5:
                raise AssertionError(f"the run stopped before the end, prompts {prompts}:\n"
                                     + "\n".join(self.error_outputs()))
            time.sleep(0.5)
        raise TimeoutError(f"cells still running after {timeout} s: {self.prompts()}")

    def error_outputs(self) -> list[str]:
        """Texts of the outputs written to stderr (tracebacks among them)."""
        return self.panel.locator('.jp-OutputArea-output'
                                  '[data-mime-type="application/vnd.jupyter.stderr"]'
                                  ).all_inner_texts()

    def widget_errors(self) -> list[str]:
        """Texts on the page that say a widget could not be shown, console errors about
        widgets and uncaught script errors (empty when none)."""
        texts = self.page.get_by_text(WIDGET_ERROR).all_inner_texts()
        texts += self.page.locator(".jupyter-widgets-error-widget").all_inner_texts()
        texts += [m for m in self.console if m.startswith("pageerror:")
                  or (m.startswith("error:") and "widget" in m.lower())]
        return texts

    def viewer(self, index: int = 0, timeout: float = 30):
        """The ``index``-th cell output showing a rendered viewer (an ipywidgets image),
        scrolled into view. Raises AssertionError saying what is shown instead."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        output = self.panel.locator(".jp-OutputArea-output").filter(
            has=self.page.locator("img.widget-image")).nth(index)
        try:
            output.wait_for(timeout=timeout * 1000)
        except PlaywrightTimeout:
            as_text = self.panel.locator(".jp-OutputArea-output",
                                         has_text="VBox(children=").all_inner_texts()
            raise AssertionError(
                f"no rendered viewer #{index} after {timeout} s; widget errors: "
                f"{self.widget_errors()}; widgets shown as plain text (front end missing?): "
                f"{[t[:80] for t in as_text]}") from None
        output.scroll_into_view_if_needed()
        return output

    @staticmethod
    def slider(output, description: str):
        """The IntSlider labelled ``description`` inside a widget output."""
        return output.locator(".widget-hslider").filter(
            has=output.page.locator("label.widget-label", has_text=re.compile(
                f"^{re.escape(description)}$")))

    @staticmethod
    def slider_value(slider) -> int:
        return int(slider.locator(".widget-readout").inner_text().strip())

    def drag(self, slider, dx: float) -> None:
        """Drag the slider's handle ``dx`` pixels to the right (left when negative)."""
        handle = slider.locator(".noUi-handle")
        handle.scroll_into_view_if_needed()
        box = handle.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + dx, y, steps=12)
        self.page.mouse.up()

    def press(self, slider, key: str, times: int = 1) -> None:
        """Focus the slider's handle and press ``key`` (e.g. ArrowRight) ``times`` times."""
        handle = slider.locator(".noUi-handle")
        handle.focus()
        for _ in range(times):
            handle.press(key)

    def wait_for_image(self, image, old_src: str, timeout: float = 60) -> None:
        """Wait until the <img> shows a new, fully decoded picture."""
        self.page.wait_for_function(
            "([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
            arg=[image.element_handle(), old_src], timeout=timeout * 1000)

    def settle(self, output, text: str, old_src: str, timeout: float = 60,
               pause_ms: int = 200) -> None:
        """Wait until a text of the widget output (its caption) contains ``text`` and its
        image has been redrawn since it showed ``old_src``; then ``pause_ms`` more, so that a
        screenshot shows what was painted."""
        output.locator(".widget-html", has_text=text).wait_for(timeout=timeout * 1000)
        self.wait_for_image(output.locator("img.widget-image"), old_src, timeout)
        if pause_ms:
            self.page.wait_for_timeout(pause_ms)
