"""`make chaos` keeps working: its smoke run (`bench/chaos.py --smoke`) starts a PostgreSQL and a Redis of its own,
the whole stack and the fake Graph API, runs every fault scenario small and ends with one table in which every
check passes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.config.tables import table_rows
from tests.conftest import ROOT, project_env

SCENARIOS = [
    "kill-web",
    "kill-worker",
    "kill-sessions",
    "kill-beat",
    "restart-redis",
    "restart-postgres",
    "duplicates",
    "two-sessions-workers",
    "hostile",
]


@pytest.mark.timeout(420)
def test_the_chaos_smoke_run_survives_every_fault_with_nothing_lost_or_twice():
    result = subprocess.run(
        [sys.executable, "bench/chaos.py", "--smoke"],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )

    out = result.stdout
    assert result.returncode == 0, out[-8000:] + result.stderr[-3000:]
    rows = table_rows(out, "Fault scenarios", ("scenario", "check", "target", "measured", "result"))
    assert [s for s in SCENARIOS if not any(row[0] == s for row in rows)] == []
    assert all(row[4] in {"PASS", "info"} for row in rows)
    checks = {(row[0], row[1]): row[3] for row in rows}
    # a kill during load: everything acked, every message stored once, the provider never given a phone twice
    assert " 0 twice; 0 events pending, 0 failed" in checks[("kill-worker", "SIGKILL worker: webhooks")]
    assert checks[("kill-worker", "SIGKILL worker: campaign")].endswith(", 0 twice")
    # PostgreSQL away: only 5xx while it is down
    assert "503 x" in checks[("restart-postgres", "PostgreSQL restart: answers given while it was down")]
    # two sessions workers: never two owners of a number
    assert "; 0 overlaps" in checks[("whole run", "owners of a sandbox number at once (presence log)")]
