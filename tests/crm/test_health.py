"""/healthz reports database, Redis, a worker per queue and beat, with real processes behind it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import ROOT, free_port, project_env, stop_processes

CELERY = str(Path(sys.executable).parent / "celery")


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last


@pytest.fixture
def throwaway_redis(tmp_path):
    """A real redis-server of our own, so the test can stop it without disturbing the suite's Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    assert wait_for(lambda: _pings(url), timeout=10), "throwaway redis did not start"
    yield proc, url
    proc.kill()
    proc.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis_lib.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis_lib.RedisError:
        return False


@pytest.mark.django_db
def test_a_stopped_redis_is_reported_unhealthy_by_name_without_crashing(client, settings, throwaway_redis):
    proc, url = throwaway_redis
    settings.REDIS_URL = url
    before = client.get("/healthz").json()
    assert before["checks"]["redis"] == {"ok": True}

    proc.terminate()
    proc.wait(timeout=10)
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert "redis" in body["failing"]
    assert "redis unreachable" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["workers"]["error"] == "not checked: redis is down"
    assert elapsed < 10  # bounded by HEALTH_CHECK_TIMEOUT, not a hang


@pytest.mark.django_db(transaction=True)
def test_healthz_names_queues_without_a_worker_and_is_green_when_every_process_runs(client):
    env = project_env(APP_COMPONENT="test")
    tag = uuid.uuid4().hex[:8]
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        procs.append(
            subprocess.Popen(
                [CELERY, "-A", "config", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )

    def status():
        return client.get("/healthz")

    try:
        # given: a worker for default+campaigns and beat, but nobody on the sessions and webhooks queues
        start("worker", "-Q", "default,campaigns", "-n", f"worker-{tag}@%h", "--pool=solo", "--without-mingle")
        start("beat", "--loglevel=WARNING", "-s", "/tmp/unused")
        partial = wait_for(
            lambda: (r := status()).json()["checks"].get("beat", {}).get("ok")
            and r.json()["checks"]["workers"]["detail"]["default"]
            and r,
            timeout=45,
        )
        assert partial, status().json()
        assert partial.status_code == 503
        assert partial.json()["failing"] == ["workers"]
        assert partial.json()["checks"]["workers"]["error"] == "no worker consumes queue(s): sessions, webhooks"

        # when: the sessions and webhooks workers start
        start("worker", "-Q", "sessions", "-n", f"sessions-{tag}@%h", "--pool=solo", "--without-mingle")
        start("worker", "-Q", "webhooks", "-n", f"webhooks-{tag}@%h", "--pool=solo", "--without-mingle")

        # then: everything is healthy
        healthy = wait_for(lambda: (r := status()).status_code == 200 and r, timeout=45)
        assert healthy, status().json()
        body = healthy.json()
        assert body["status"] == "ok" and body["failing"] == []
        assert any(name.startswith(f"sessions-{tag}@") for name in body["checks"]["workers"]["detail"]["sessions"])
        assert any(name.startswith(f"webhooks-{tag}@") for name in body["checks"]["workers"]["detail"]["webhooks"])
        assert body["checks"]["beat"]["detail"]["last_tick_age_seconds"] < 30
    finally:
        stop_processes(procs)
