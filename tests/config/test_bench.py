"""The benchmarks keep working: each script runs small against the test database and prints its table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, project_env


@pytest.mark.django_db(transaction=True)
def test_registry_sync_bench_runs_and_prints_its_figures():
    env = project_env()
    env["BENCH_DATABASE_URL"] = env["DATABASE_URL"]

    result = subprocess.run(
        [sys.executable, "bench/registry_sync.py", "--entries", "40", "--repeat", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Registry sync (bench/registry_sync.py)" in lines
    assert any(line.startswith("first sync, 40 entries") and line.endswith("info") for line in lines)
    assert any(line.startswith("re-run, 40 entries, nothing to write") for line in lines)


def run_bench(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = project_env()
    env["BENCH_DATABASE_URL"] = env["BENCH_CRM_DATABASE_URL"] = env["DATABASE_URL"]
    env["BENCH_REDIS_URL"] = settings.REDIS_URL
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.django_db(transaction=True)
def test_webhook_ack_bench_drives_real_daphne_and_prints_its_figures():
    # a short, slow run with generous targets: this checks the harness, not this machine's speed
    result = run_bench(
        "bench/webhook_ack.py", "--seconds", "2", "--rate", "10", "--workers", "0", "--p50", "5000", "--p99", "10000"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Webhook ack latency (bench/webhook_ack.py; daphne, no workers)" in result.stdout
    assert "20 answered 200, 20 stored" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_inbound_throughput_bench_processes_everything_with_real_workers():
    result = run_bench(
        "bench/inbound_throughput.py",
        *("--seconds", "2", "--rate", "40", "--per-body", "8", "--target", "1", "--concurrency", "1"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing lost, nothing twice" in result.stdout
    assert "10/10 acked, 20/20 messages, 0 duplicated, 20/20 outbound read, 0 pending, 0 failed events" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_campaign_rate_bench_sends_every_recipient_once_through_a_real_worker():
    # small and slow: this checks the harness (real worker, governor, timing fake), not this machine's speed
    result = run_bench("bench/campaign_rate.py", "--recipients", "60", "--numbers", "2", "--rate", "20")

    assert "Campaign rate accuracy" in result.stdout, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    sent = next(line for line in lines if line.startswith("messages sent / phones sent twice"))
    assert sent.split()[-1] == "PASS", result.stdout
    assert sum(1 for line in lines if "most in any 1 s" in line) == 2, result.stdout
