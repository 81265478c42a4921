"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, the dashboard served
by uvicorn on a loopback port, and workers running in this process.

Everything is real: the session's redis-server, a real Worker, real HTTP and a real browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from conveyor import Conveyor
from conveyor.api.config import ApiSettings
from conveyor.dashboard.app import create_dashboard
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from conveyor.worker.runtime import Worker
from tests.support.worker import wait_until_sync

#: Debian's Chromium; the tests are skipped without it (Playwright's own builds are not used).
CHROMIUM = Path("/usr/bin/chromium")
#: No sandbox (containers), and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: How long a browser expectation waits: live data is at most ~2 s stale, plus a loaded machine.
EXPECT_MS = 10_000
expect.set_options(timeout=EXPECT_MS)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, for one test module (its event loop must not outlive the module)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the module. Playwright gives each launch a fresh temporary
    user-data-dir (and deletes it at close); each test then opens its own contexts."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


#: Where this run's screenshots went, for the terminal summary.
SHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where screenshots go: $CONVEYOR_TEST_ARTIFACTS or a temporary directory (kept)."""
    chosen = os.environ.get("CONVEYOR_TEST_ARTIFACTS")
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="conveyor-dashboard-"))
    folder.mkdir(parents=True, exist_ok=True)
    request.config.stash[SHOTS] = folder
    return folder


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Name the screenshots' folder at the end of the run (output of fixtures is captured)."""
    folder = config.stash.get(SHOTS, None)
    if folder is not None:
        shots = sorted(p.name for p in folder.glob("*.png"))
        terminalreporter.write_line(f"dashboard screenshots in {folder}: {', '.join(shots)}")


#: Makes a page in a fresh browser context (no cookies, no storage) of the given viewport.
PageFactory = Callable[..., Page]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[PageFactory]:
    """`new_page()`: a page in its own context; the test fails on any uncaught script error
    or Content-Security-Policy violation."""
    contexts = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 900) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(EXPECT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        # the server's CSP forbids inline script and style: the page must never trip it
        page.on("console", lambda m: errors.append(m.text) if "Security Policy" in m.text else None)
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@contextlib.contextmanager
def serving(settings: Settings, api: ApiSettings | None = None) -> Iterator[str]:
    """The dashboard app under uvicorn in a thread, on a free loopback port; yields its URL."""
    app = create_dashboard(settings, api or ApiSettings())
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning",
        timeout_graceful_shutdown=1,  # the event stream never ends by itself
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    try:
        wait_until_sync(lambda: server.started or not thread.is_alive(), 20, "the dashboard")
        assert server.started, "the dashboard did not start"
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def dashboard(settings: Settings) -> Iterator[str]:
    """The open dashboard (no tokens) on this test's keyspace; yields its base URL."""
    with serving(settings) as url:
        yield url


class WorkerThread:
    """A real Worker running in its own event loop on a thread of this process, so the
    test's handlers (defined in the test module) need no import path. Its app is its own:
    the app's asyncio clients belong to the worker's loop."""

    def __init__(self, app: Conveyor, queues: str) -> None:
        self.app = app
        self.worker = Worker(app, queues, concurrency=4)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"worker-{queues}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.worker.run())
        except BaseException as exc:  # reported by stop(), in the test's thread
            self.error = exc
        finally:
            self.loop.run_until_complete(self.app.aclose())
            self.loop.close()

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Graceful stop; re-raises what the worker died of, if it did."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error


#: `start_worker(app, "a,b")`: a worker of `app` (an app of its own) on those queues.
WorkerFactory = Callable[[Conveyor, str], WorkerThread]


@pytest.fixture
def start_worker() -> Iterator[WorkerFactory]:
    """Starts workers; each is stopped (and its app closed) after the test."""
    started: list[WorkerThread] = []

    def start(app: Conveyor, queues: str) -> WorkerThread:
        started.append(WorkerThread(app, queues).start())
        return started[-1]

    yield start
    for each in started:
        each.stop()
        each.app.close()
