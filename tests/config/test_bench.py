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
