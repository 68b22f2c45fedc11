"""The CRM-at-scale benchmark keeps working: run small against the test database, it loads its data, times the
pages and delivers live events through real daphne and Celery processes, and prints its table."""

from __future__ import annotations

import pytest

from tests.config.test_bench import run_bench


@pytest.mark.django_db(transaction=True)
def test_crm_at_scale_bench_loads_times_pages_and_delivers_live_events():
    # small data and generous targets: this checks the harness, not this machine's speed
    result = run_bench(
        "bench/crm_at_scale.py",
        *("--conversations", "300", "--messages", "3000", "--requests", "5"),
        *("--live-messages", "3", "--live-agents", "5", "--p95-page", "5000", "--p95-live", "10000"),
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert "loading 300 conversations and 3,000 messages into client bench-crm" in out
    assert "CRM at scale (bench/crm_at_scale.py; pages in-process, live via daphne + Celery)" in lines
    assert any(line.startswith("data: 300 conversations, 3,000 messages") for line in lines)
    for page in (
        "inbox, Mine tab",
        "inbox, Queue tab",
        "inbox, All tab (staff)",
        "inbox, search",
        "conversation page, random conversations",
        "conversation page, longest conversations (676 messages)",
    ):
        assert any(line.startswith(page) and line.endswith("PASS") for line in lines), page
    assert any(line.startswith("pages answered 200") and line.endswith("PASS") for line in lines)
    assert any(line.startswith("live: webhook POST to agent's WebSocket, n=3") for line in lines)
    assert "3/3 acked, 3/3 delivered" in out
