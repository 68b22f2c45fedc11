"""End-to-end tests: the real product in headless Chromium (Debian's /usr/bin/chromium), driven by Playwright.

Every test in this folder is marked `e2e`. A test gets a fresh browser context (`page`) whose base URL is the
pytest-django live server, so `page.goto("/admin/")` works. When a test fails, a screenshot of its page is
saved in `test-artifacts/` (git-ignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, project_env, stop_processes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium tries to reach Google's services, which the sandboxed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item (`item.rep_setup`, `item.rep_call`) for the screenshot finalizer."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def _playwright() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the e2e tests need Debian's Chromium. Install it with "
            "`sudo apt-get install chromium` (do not run `playwright install`; browser downloads are blocked).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio event loop running in this thread for as long as it is started,
    # and Django refuses ORM calls (SynchronousOnlyOperation) from a thread with a running loop. The tests
    # drive the browser and the ORM one after the other, never concurrently, so the check is lifted for
    # exactly the lifetime of Playwright.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # asgiref keeps Django's connections per thread, but per *context* in a thread with a running loop: once
    # Playwright starts, this thread would get new connection objects, without the test database's serialized
    # contents (serialized_rollback silently restores nothing) and never closed (the test database cannot be
    # dropped). Hand the same connection objects to the loop's context.
    from django.db import connections

    thread_connections = {alias: connections[alias] for alias in connections}
    playwright = sync_playwright().start()
    for alias, connection in thread_connections.items():
        connections[alias] = connection
    try:
        yield playwright
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser(_playwright):
    browser = _playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def _no_persistent_db_connections() -> Iterator[None]:
    """The live server answers each browser connection in its own thread, which stays alive while Chromium keeps
    the connection open. With persistent database connections (CONN_MAX_AGE) those threads hold PostgreSQL
    sessions past the end of the tests, and the test database cannot be dropped. Close them after each request.
    """
    from django.db import connections

    previous = {alias: connections[alias].settings_dict.get("CONN_MAX_AGE") for alias in connections}
    for alias in connections:
        connections[alias].settings_dict["CONN_MAX_AGE"] = 0  # shared by every thread's connection
    yield
    for alias, value in previous.items():
        connections[alias].settings_dict["CONN_MAX_AGE"] = value


@pytest.fixture
def page(browser, _no_persistent_db_connections, live_server, request: pytest.FixtureRequest):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    if any(report is not None and report.failed for report in reports):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"could not save a screenshot of the failing page: {exc}")  # noqa: T201
    context.close()


BIN = ROOT / ".venv" / "bin"


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (loopback)
            return
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


class Stack:
    """daphne (HTTP + WebSocket) and a sessions worker (which owns the sandbox connections, receives customer
    messages and sends replies) on the test database. `restart_web` stops daphne and starts it again on the same
    port, as a deploy or a crash would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = project_env(SESSIONS_HEARTBEAT_SECONDS="0.5", SESSIONS_LEASE_SECONDS="5", LOG_LEVEL="WARNING")
        celery = str(BIN / "celery") if (BIN / "celery").exists() else "celery"
        self.worker = subprocess.Popen(
            [celery, "-A", "config", "worker", "-Q", "sessions", "-n", f"e2e-{uuid.uuid4().hex[:6]}@%h"]
            + ["-P", "threads", "-c", "2", "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.web = self._start_web()

    def _start_web(self) -> subprocess.Popen:
        daphne = str(BIN / "daphne") if (BIN / "daphne").exists() else "daphne"
        web = subprocess.Popen(
            [daphne, "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return web

    def wait_web(self) -> None:
        _wait_http(self.url + "/login/")

    def stop_web(self) -> None:
        stop_processes([self.web])

    def start_web(self) -> None:
        self.web = self._start_web()
        self.wait_web()

    def stop(self) -> None:
        stop_processes([self.web, self.worker])


@pytest.fixture
def stack() -> Iterator[Stack]:
    """The real product on the test database (see `Stack`)."""
    running = Stack()
    try:
        running.wait_web()
        yield running
    finally:
        running.stop()
