"""Shared set-up for the benchmarks: a Django process on its own database, and a figures table.

Benchmarks run against the real PostgreSQL and Redis of this machine, on a separate database
(`BENCH_DATABASE_URL`, default `whatsapp_crm_bench`) and Redis database (`BENCH_REDIS_URL`, default
`redis://127.0.0.1:6379/13`) that they create, migrate and may wipe; never the demo's.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
    """Print the figures; the exit status is 1 when any target is missed.

    Under `bench/run.py` (`make bench`), the figures are also appended to the file named by `BENCH_RESULTS`, one
    JSON line per table, for the run's summary table."""
    results = os.environ.get("BENCH_RESULTS")
    if results:
        with open(results, "a") as out:
            out.write(json.dumps({"title": title, "figures": [asdict(f) for f in figures]}) + "\n")
    print_rows(title, [(f.name, f.target, f.measured, result_of(f)) for f in figures])
    return 0 if all(f.ok is not False for f in figures) else 1


def result_of(figure: Figure) -> str:
    return "info" if figure.ok is None else ("PASS" if figure.ok else "FAIL")


def print_rows(
    title: str, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("figure", "target", "measured", "result")
) -> None:
    """A fixed-width table under `title`: the header, a rule, then the rows."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def pg_commit_rate(seconds: float = 3.0) -> float:
    """This machine's raw PostgreSQL single-row INSERT + COMMIT rate from Python (psycopg, no ORM), on the
    configured database: the baseline that makes figures comparable across machines. Rows per second."""
    import time

    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"]}
    with psycopg.connect(**{k: v for k, v in params.items() if v}, port=db["PORT"] or None) as conn:
        conn.execute("CREATE TEMPORARY TABLE bench_baseline (id bigserial PRIMARY KEY, body text NOT NULL)")
        conn.commit()
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            conn.execute("INSERT INTO bench_baseline (body) VALUES (%s)", (f"row {done}",))
            conn.commit()
            done += 1
    return done / elapsed
