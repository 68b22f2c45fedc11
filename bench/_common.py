"""Shared set-up for the benchmarks: a Django process on its own database, and a figures table.

Benchmarks run against the real PostgreSQL and Redis of this machine, on a separate database
(`BENCH_DATABASE_URL`, default `whatsapp_crm_bench`) and Redis database (`BENCH_REDIS_URL`, default
`redis://127.0.0.1:6379/13`) that they create, migrate and may wipe; never the demo's.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/whatsapp_crm_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"


def setup_django() -> None:
    """Point Django at the bench database, create and migrate it."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    os.environ.pop("CELERY_BROKER_URL", None)  # the bench Redis is the broker too
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from config.env import exit_on_config_error

    with exit_on_config_error():
        import django

        django.setup()
    from django.core.management import call_command

    call_command("ensure_database", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command("migrate", verbosity=0, interactive=False)


@dataclass
class Figure:
    name: str
    target: str
    measured: str
    ok: bool | None  # None: informational, no target


def timed(fn: Callable[[], object], *, repeat: int, before: Callable[[], object] | None = None) -> list[float]:
    """Wall-clock seconds of `fn` over `repeat` runs; `before` runs untimed ahead of each."""
    import time

    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def seconds_figure(name: str, samples: list[float], *, limit: float | None) -> Figure:
    """Median and worst of the samples; passes when the worst is under the limit."""
    median, worst = statistics.median(samples), max(samples)
    measured = f"median {median:.3f} s, worst {worst:.3f} s (n={len(samples)})"
    if limit is None:
        return Figure(name, "-", measured, None)
    return Figure(name, f"< {limit:g} s", measured, worst < limit)


def print_table(title: str, figures: list[Figure]) -> int:
    """Print the figures; the exit status is 1 when any target is missed."""
    rows = [("figure", "target", "measured", "result")] + [
        (f.name, f.target, f.measured, "info" if f.ok is None else ("PASS" if f.ok else "FAIL")) for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"\n{title}")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    return 0 if all(f.ok is not False for f in figures) else 1
