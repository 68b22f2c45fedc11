"""Shared fixtures. Tests run against the real PostgreSQL and Redis named by config.settings.test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from tests.fakes.graph_api import FakeGraphApi

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests flush every table when they end, which would delete what data migrations created
    (the default client, the role groups). Give them serialized rollback so every test starts from the migrated
    state, whatever ran before it."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker and marker.kwargs.get("transaction") and "serialized_rollback" not in marker.kwargs:
            item.add_marker(
                pytest.mark.django_db(*marker.args, **marker.kwargs, serialized_rollback=True), append=False
            )


@pytest.fixture
def graph_api(settings) -> Iterator[FakeGraphApi]:
    """A running FakeGraphApi; the Cloud engine points at it and backs off for a millisecond between retries."""
    fake = FakeGraphApi().start()
    settings.WHATSAPP_GRAPH_API_URL = fake.url
    settings.WHATSAPP_SEND_BACKOFF = 0.001
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty test Redis database (never the demo's database 0)."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture(autouse=True)
def _default_language():
    """A request in Spanish leaves its language active in the thread (LocaleMiddleware activates, nothing
    deactivates); each test starts in the settings' language."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _forget_webhook_secrets():
    """The web process caches signing secrets; each test starts without what an earlier test cached."""
    from conversations.webhooks import _secrets

    _secrets.clear()
    yield
    _secrets.clear()


@pytest.fixture
def ventas(db):
    """A second client, for tests about what staff of one client may see."""
    from tests.crm.factories import ClientFactory

    return ClientFactory(name="Ventas", slug="ventas")


@pytest.fixture
def marketing(db):
    from tests.crm.factories import ClientFactory

    return ClientFactory(name="Marketing", slug="marketing")


@pytest.fixture
def default_client(db):
    from crm.selectors import client_get_default

    return client_get_default()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process of the project (manage.py, celery, daphne) using the test databases."""
    from django.db import connection

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}",
            "TEST_REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def run_manage(
    *args: str, env: dict[str, str], timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess:
    """manage.py in a child process; `input` is typed at its prompts (without it, stdin is empty)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input if input is not None else "",
    )


def start_celery_worker(env: dict[str, str], *, queues: str, name: str, concurrency: int = 2) -> subprocess.Popen:
    """A real Celery worker of the project consuming `queues`, quiet, in its own process group (a SIGKILL of the
    group takes its pool children too)."""
    celery = Path(sys.executable).parent / "celery"
    return subprocess.Popen(
        [str(celery), "-A", "config", "worker", "-Q", queues, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        + ["-c", str(concurrency), "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_processes(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM every child still running, wait for each, SIGKILL what does not stop in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def openai_api(settings):
    """A running fake OpenAI-compatible API (tests/fakes/openai_api.py), and the settings pointing at it."""
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI() as fake:
        settings.OPENAI_BASE_URL = fake.url
        settings.OPENAI_API_KEY = fake.api_key
        yield fake
