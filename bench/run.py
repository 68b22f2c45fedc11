#!/usr/bin/env python
"""Every benchmark in one run (`make bench`): each script's own table as it goes, then one summary table of
every figure with its target, measured value and result. Exit status 1 when any target is missed or a script
fails.

    .venv/bin/python bench/run.py [--smoke] [--only NAME ...]

`--smoke` runs each benchmark small, with loose targets and short sessions leases: it checks that the harness
works end to end in under two minutes (CI runs it), not this machine's speed. Without it the benchmarks run at
the sizes and targets of their issues (about 9 minutes on a two-core machine, plus ~2 minutes the first time
`crm_at_scale` loads its data).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Figure, print_rows, result_of  # noqa: E402

# (script, smoke arguments). Full runs use each script's defaults: the issues' targets.
BENCHES: list[tuple[str, list[str]]] = [
    ("registry_sync.py", ["--entries", "40", "--repeat", "1"]),
    ("webhook_ack.py", ["--seconds", "2", "--rate", "10", "--workers", "0", "--p50", "5000", "--p99", "10000"]),
    (
        "inbound_throughput.py",
        ["--seconds", "2", "--rate", "40", "--per-body", "8", "--target", "1", "--concurrency", "1"]
        + ["--baseline-seconds", "1"],
    ),
    ("campaign_rate.py", ["--recipients", "60", "--numbers", "2", "--rate", "20", "--loose"]),
    (
        "crm_at_scale.py",
        ["--conversations", "300", "--messages", "3000", "--requests", "5", "--live-messages", "3"]
        + ["--live-agents", "5", "--p95-page", "5000", "--p95-live", "10000"],
    ),
    (
        "sessions_footprint.py",
        ["--numbers", "10", "--idle-seconds", "2", "--settle-seconds", "0.5"]
        + ["--lease-seconds", "4", "--heartbeat-seconds", "1"],
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick, loose targets (CI)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these benchmarks only (e.g. webhook_ack)")
    args = parser.parse_args()

    chosen = [b for b in BENCHES if not args.only or b[0].removesuffix(".py") in args.only]
    unknown = set(args.only or []) - {b[0].removesuffix(".py") for b in BENCHES}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(b[0] for b in BENCHES)}")

    rows: list[tuple[str, Figure]] = []
    timings: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        for script, smoke_args in chosen:
            results = Path(tmp) / f"{script}.jsonl"
            env = {**os.environ, "BENCH_RESULTS": str(results)}
            command = [sys.executable, str(ROOT / "bench" / script), *(smoke_args if args.smoke else [])]
            print(f"\n=== bench/{script} {' '.join(command[2:])}".rstrip(), flush=True)
            start = time.monotonic()
            code = subprocess.run(command, cwd=ROOT, env=env).returncode
            timings.append((script, time.monotonic() - start, code))
            tables = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
            for table in tables:
                rows += [(script, Figure(**figure)) for figure in table["figures"]]
            missed = any(f.ok is False for name, f in rows if name == script)
            if code != 0 and not missed:  # it crashed (or was stopped) rather than missing a target
                rows.append((script, Figure("the script itself", "exit 0", f"exit {code} (see its output)", False)))
    return summary(rows, timings, smoke=args.smoke)


def summary(rows: list[tuple[str, Figure]], timings: list[tuple[str, float, int]], *, smoke: bool) -> int:
    title = f"Summary of every benchmark{' (smoke run: small sizes, loose targets)' if smoke else ''}"
    print_rows(
        title,
        [(script.removesuffix(".py"), f.name, f.target, f.measured, result_of(f)) for script, f in rows],
        header=("bench", "figure", "target", "measured", "result"),
    )
    failed = sum(1 for _, f in rows if f.ok is False)
    passed = sum(1 for _, f in rows if f.ok)
    spent = ", ".join(f"{script.removesuffix('.py')} {seconds:.0f} s" for script, seconds, _ in timings)
    print(f"\n{passed} passed, {failed} failed, {len(rows) - passed - failed} informational; time: {spent}")
    return 1 if failed or any(code for _, _, code in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
