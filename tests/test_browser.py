"""The course in a real browser: JupyterLab as ``make lab`` starts it, driven by headless Chromium.

JupyterLab is started the way ``make lab`` does (``tlslab lab --no-browser``, on a free port of
127.0.0.1, with a fixed token) on the repository itself. Playwright drives Debian's Chromium
(``/usr/bin/chromium``; never ``playwright install``):

* lesson 02 is run from the *Run* menu; its gallery explorer (an ipywidgets Dropdown and a
  verdict) is switched to the control server and back to the expired one, and the verdict follows;
  a screenshot is saved under ``artifacts/``;
* the solution of lab 00 is run; its check cells print ``Exercise 0.N: passed``.

Outputs are cleared before running, so what the test sees was computed live, not committed.
Autosave is off (in this JupyterLab's own scratch user settings): the notebooks are never written.
Without Chromium or Playwright the browser tests skip on a developer machine and fail in CI.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tlslab.cli import WELCOME_NOTEBOOK

from _tools import free_port, require_tool, tlslab_command, wait_until_listening

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
LESSON = "course/02_authentication.ipynb"
LAB_SOLUTION = "labs/solutions/00_warmup.ipynb"
TOKEN = "tlslab-browser-test"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-proxy-server", "--disable-dev-shm-usage",
]
RUN_TIMEOUT = 240.0  # seconds for a whole notebook (lesson 02 takes about 5 s on 2 cores)
WIDGET_TIMEOUT = 60_000  # milliseconds for a widget to answer (a live handshake in the kernel)

pytestmark = pytest.mark.timeout(900)


def _say(config: pytest.Config, text: str) -> None:
    """A line on the terminal even when pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


# --- JupyterLab, started like `make lab` ---------------------------------------------------


@dataclass
class Lab:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def api(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
        """Call JupyterLab's REST API with the token; never through a proxy; no redirects."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {TOKEN}"}
        )
        try:
            with opener.open(request, timeout=30) as answer:
                body = answer.read()
                return answer.status, dict(answer.headers), json.loads(body) if body.strip() else None
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Shut every kernel down, then stop JupyterLab as Ctrl-C would (killing it if it hangs)."""
        try:
            if self.process.poll() is None:
                status, _, kernels = self.api("/api/kernels")
                for kernel in kernels if status == 200 else []:
                    self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        finally:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what it started
                    self.process.wait(timeout=10)


def _user_settings(folder: Path) -> None:
    """This JupyterLab's scratch user settings: nothing is saved, every cell is in the page.

    The course's own settings (news, update checks) are *not* set here: they must come from what
    `make lab` ships (user settings would override them and hide a regression).
    """
    settings = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        # All cells rendered in the page (no virtual scrolling), so every prompt can be read.
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, values in settings.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Lab]:
    home = tmp_path_factory.mktemp("jupyterlab")
    _user_settings(home / "user-settings")
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_PORT": str(port),
        "JUPYTER_TOKEN": TOKEN,
        # Keep this JupyterLab's files out of the real home folder and its settings out of the test.
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = home / "jupyterlab.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*tlslab_command(), "lab", "--no-browser"],  # what `make lab` runs (it adds --allow-root as root)
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Lab(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_listening(port, timeout=120, process=process)
        deadline = time.monotonic() + 60
        while server.api("/api/status")[0] != 200:
            assert time.monotonic() < deadline, f"JupyterLab does not answer:\n{server.log_tail()}"
            time.sleep(0.2)
        _say(pytestconfig, f"\nJupyterLab answered after {time.monotonic() - server.started:.1f} s")
        yield server
    finally:
        server.stop()
        _say(pytestconfig, f"JupyterLab ran for {time.monotonic() - server.started:.1f} s in all")
    assert process.returncode is not None


def test_make_lab_lands_on_the_welcome_notebook_with_the_course_settings(lab: Lab) -> None:
    status, headers, _ = lab.api("/")
    assert status in (301, 302, 303, 307), (status, headers)
    assert urllib.parse.urlsplit(headers["Location"]).path == f"/lab/tree/{WELCOME_NOTEBOOK.as_posix()}"
    status, _, settings = lab.api(f"/lab/api/settings/{NOTIFICATION}")
    assert status == 200, settings
    # JupyterLab applies overrides.json as the plugin's defaults.
    defaults = {key: value.get("default") for key, value in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false", "the news pop-up would ask the learner"
    assert defaults["checkForUpdates"] is False


# --- Chromium ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh headless Chromium (Debian's), driven by Playwright: one browser context."""
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(30_000)
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    """A browser tab, collecting the JavaScript errors of the page in ``page.errors``."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    try:
        yield page
    finally:
        page.close()


@contextmanager
def _pictured_on_failure(page: Any, name: str, config: pytest.Config) -> Iterator[None]:
    """When the block fails, save what the browser showed (artifacts/browser/failed-NAME.png)."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"failed-{name}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            _say(config, f"failure screenshot: {shot}")
        except Exception as exc:  # the browser may be what failed
            _say(config, f"no failure screenshot: {exc}")
        raise


def _open_notebook(page: Any, lab: Lab, path: str) -> Any:
    """Open ``path`` in JupyterLab (a fresh layout); wait for its kernel to be idle. The notebook panel."""
    page.goto(f"{lab.url}/lab/tree/{path}?reset&token={TOKEN}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
    _wait_idle(page, panel)
    return panel


def _wait_idle(page: Any, panel: Any, timeout: float = 120_000) -> None:
    """Wait until the notebook's kernel is started, connected and idle.

    Before the kernel exists JupyterLab already draws an "idle" execution indicator, so wait for
    the status bar's kernel item ("Python 3 (ipykernel) | Idle") as well.
    """
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
                 .map(e => e.textContent.trim())
                 .some(t => t.endsWith('| Idle') && !t.startsWith('No Kernel'))""",
        timeout=timeout,
    )
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(state="attached", timeout=timeout)


def _menu(page: Any, menu: str, command: str) -> None:
    """Click ``menu`` in the menu bar, then the item that runs JupyterLab's ``command``."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


_PROMPTS = """panel => [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"""


def _run_all(page: Any, panel: Any, lab: Lab, path: str) -> float:
    """Clear every output, run all cells from the Run menu, wait until all have run. Seconds taken."""
    # Every code cell is in the page (no virtual scrolling: see _user_settings), so that "every
    # prompt shows a count" means "every cell ran".
    page.wait_for_function(
        f"([panel, n]) => ({_PROMPTS})(panel).length === n", arg=[panel.element_handle(), _code_cells(path)]
    )
    _menu(page, "Edit", "editmenu:clear-all")  # Edit → Clear Outputs of All Cells
    page.wait_for_function(
        f"panel => ({_PROMPTS})(panel).every(p => p === '[ ]:')", arg=panel.element_handle(), timeout=30_000
    )  # the cleared execution counts are drawn a moment later
    started = time.monotonic()
    _menu(page, "Run", "runmenu:run-all")  # Run → Run All Cells
    quiet_since = None  # since when no cell has been running or queued ("[*]:")
    while True:
        prompts = panel.evaluate(_PROMPTS)
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            break
        now = time.monotonic()
        quiet_since = None if "[*]:" in prompts else quiet_since or now
        # Quiet for seconds with cells left unrun: a cell failed and Run All stopped there.
        if now > started + RUN_TIMEOUT or (quiet_since is not None and now - quiet_since > 5):
            errors = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            raise AssertionError(
                f"not every cell ran; prompts {prompts}\n"
                f"errors shown: {errors.all_inner_texts()}\npage errors: {page.errors}\n"
                f"JupyterLab's log:\n{lab.log_tail()}"
            )
        time.sleep(0.25)
    _wait_idle(page, panel)
    return time.monotonic() - started


def _code_cells(path: str) -> int:
    return sum(cell["cell_type"] == "code" for cell in json.loads((ROOT / path).read_text())["cells"])


def test_gallery_widget_follows_the_dropdown(page: Any, lab: Lab, pytestconfig: pytest.Config) -> None:
    with _pictured_on_failure(page, "02_authentication", pytestconfig):
        _gallery_widget_follows_the_dropdown(page, lab, pytestconfig)


def _gallery_widget_follows_the_dropdown(page: Any, lab: Lab, pytestconfig: pytest.Config) -> None:
    panel = _open_notebook(page, lab, LESSON)
    seconds = _run_all(page, panel, lab, LESSON)
    _say(pytestconfig, f"{LESSON}: all cells ran in {seconds:.1f} s")

    # The gallery explorer: the output holding an ipywidgets Dropdown and the verdict card.
    explorer = panel.locator(".jp-OutputArea-output", has=page.locator(".widget-dropdown select"))
    select = explorer.locator(".widget-dropdown select")
    verdict = explorer.locator(".widget-html-content .tlslab-gallery")
    from playwright.sync_api import expect

    expect(explorer).to_have_count(1)
    chain = explorer.locator("img.widget-image")  # the chain-of-trust figure
    expect(verdict).to_be_visible(timeout=WIDGET_TIMEOUT)
    # The lesson starts the explorer on the expired server; go to the control server first…
    select.select_option(index=_option_index(select, "control"))
    expect(verdict).to_contain_text("control: handshake completed", timeout=WIDGET_TIMEOUT)
    expect(verdict).not_to_contain_text("expired")
    _wait_idle(page, panel)  # the figure is drawn after the verdict
    control_figure = chain.get_attribute("src")
    # …then back to the expired one: the verdict must follow, with its diagnosis, and the figure.
    select.select_option(index=_option_index(select, "expired"))
    expect(verdict).to_contain_text("expired: the client refused", timeout=WIDGET_TIMEOUT)
    expect(verdict).to_contain_text("certificate has expired")
    _wait_idle(page, panel)
    expect(chain).to_be_visible()
    expect(chain).not_to_have_attribute("src", control_figure or "")

    # No pop-up asked the learner about Jupyter news (the course's settings say never).
    expect(page.locator(".Toastify__toast", has_text="news")).to_have_count(0)
    assert not page.errors, page.errors

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "02_authentication-gallery-expired.png"
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot))
    _say(pytestconfig, f"screenshot: {screenshot}")


def _option_index(select: Any, case: str) -> int:
    index = select.evaluate("(s, name) => [...s.options].findIndex(o => o.value.startsWith(name + ' '))", case)
    assert index >= 0, f"no {case!r} in the dropdown"
    return index


def test_lab_solution_checks_pass(page: Any, lab: Lab, pytestconfig: pytest.Config) -> None:
    with _pictured_on_failure(page, "00_warmup", pytestconfig):
        panel = _open_notebook(page, lab, LAB_SOLUTION)
        seconds = _run_all(page, panel, lab, LAB_SOLUTION)
    _say(pytestconfig, f"{LAB_SOLUTION}: all cells ran in {seconds:.1f} s")
    shown = "\n".join(panel.locator(".jp-OutputArea-output").all_inner_texts())
    for exercise in ("0.1", "0.2", "0.3", "0.4"):
        assert f"Exercise {exercise}: passed" in shown, f"Exercise {exercise} did not pass:\n{shown}"
    assert not page.errors, page.errors
