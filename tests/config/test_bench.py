"""`make bench` keeps working: its smoke run (`bench/run.py --smoke`) runs every benchmark small against the test
database and real daphne, Celery and sessions workers, and ends with one summary table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.config.tables import table_rows
from tests.conftest import ROOT, project_env


def run_bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = project_env()
    env["BENCH_DATABASE_URL"] = env["BENCH_CRM_DATABASE_URL"] = env["DATABASE_URL"]
    env["BENCH_REDIS_URL"] = settings.REDIS_URL
    return subprocess.run(
        [sys.executable, "bench/run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def summary_rows(stdout: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(bench, figure) -> (measured, result) from the summary table."""
    rows = table_rows(stdout, "Summary of every benchmark", ("bench", "figure", "target", "measured", "result"))
    return {(bench, figure): (measured, result) for bench, figure, _target, measured, result in rows}


@pytest.mark.timeout(300)
@pytest.mark.django_db(transaction=True)
def test_the_bench_smoke_run_drives_every_benchmark_and_prints_one_summary():
    result = run_bench("--smoke")

    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    rows = summary_rows(out)
    benches = {bench for bench, _ in rows}
    assert benches == {
        "registry_sync",
        "webhook_ack",
        "inbound_throughput",
        "campaign_rate",
        "crm_at_scale",
        "sessions_footprint",
    }
    assert all(result in {"PASS", "info"} for _, result in rows.values())
    # registry sync: the service, first run and re-run
    assert ("registry_sync", "re-run, 40 entries, nothing to write") in rows
    # webhook ack through real daphne: every request answered and stored once
    assert rows[("webhook_ack", "answered 200 and stored once")] == ("20 answered 200, 20 stored", "PASS")
    # inbound throughput with real workers, and the machine's baseline it is compared with
    assert rows[("inbound_throughput", "nothing lost, nothing twice")][0] == (
        "10/10 acked, 20/20 messages, 0 duplicated, 20/20 outbound read, 0 pending, 0 failed events"
    )
    baseline = rows[
        ("inbound_throughput", "baseline: PostgreSQL single-row INSERT + COMMIT from Python (psycopg, idle machine)")
    ]
    assert baseline[0].endswith(" rows/s") and float(baseline[0].split()[0].replace(",", "")) > 50
    assert ("inbound_throughput", "processing throughput / baseline (compares across machines)") in rows
    # campaign rate: every recipient sent once through a real worker, never above the rate in any second
    assert rows[("campaign_rate", "messages sent / phones sent twice")] == ("60 / 0", "PASS")
    assert sum(1 for bench, figure in rows if bench == "campaign_rate" and figure.endswith("most in any 1 s")) == 2
    # CRM at scale: every page kind timed, live events delivered over WebSockets
    for page in ("inbox, Mine tab", "inbox, search by message text", "conversation page, longest conversations"):
        assert any(b == "crm_at_scale" and f.startswith(page) for b, f in rows), page
    assert rows[("crm_at_scale", "live: events delivered (5 agents connected)")] == ("3/3 acked, 3/3 delivered", "PASS")
    # sessions: footprint of a real sessions worker, and a takeover after SIGKILL
    assert rows[("sessions_footprint", "leases held by B after the takeover")] == ("10/10", "PASS")
    assert ("sessions_footprint", "takeover: SIGKILL A to 10 connected on B") in rows
    assert "failed, " in out.splitlines()[-1] and " 0 failed" in out.splitlines()[-1]


def test_an_unknown_benchmark_name_is_refused_with_the_known_ones():
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "unknown benchmark(s): nope; known: registry_sync.py" in result.stderr
