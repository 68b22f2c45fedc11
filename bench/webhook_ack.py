#!/usr/bin/env python
"""Webhook acknowledgement latency (Cloud API issue): p50 <= 25 ms and p99 <= 100 ms at 200 signed requests/s.

    .venv/bin/python bench/webhook_ack.py [--seconds 30] [--rate 200] [--workers 1] [--concurrency 2]

Starts daphne (and, unless `--workers 0`, Celery workers processing what arrives, as in production) on the bench
database and Redis, then POSTs signed single-item webhooks (1 message : 3 statuses) on a fixed schedule: an
open loop, so a slow answer never delays the next request and queueing shows in the figures. Latency is counted
from each request's scheduled time to its full response; every answer must be 200 and every body stored once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, print_table, setup_django  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="signed POSTs per second")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes running meanwhile")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--p50", type=float, default=25.0, help="target median, ms")
    parser.add_argument("--p99", type=float, default=100.0, help="target 99th percentile, ms")
    args = parser.parse_args()

    setup_django()
    import _workload
    from _stack import Stack, percentile, post_at_rate, signed

    from conversations.models import WebhookEvent

    count = int(args.seconds * args.rate)
    _workload.prepare(count)
    requests = [signed(body) for body in _workload.bodies(count, 1)]

    with Stack(web=True, workers=args.workers, concurrency=args.concurrency) as stack:
        results = asyncio.run(post_at_rate(stack.url + "/webhooks/whatsapp/", requests, rate=args.rate))
    latencies = [r.latency * 1000 for r in results]
    ok = sum(1 for r in results if r.status == 200)
    stored = WebhookEvent.objects.count()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)

    figures = [
        Figure(
            f"ack p50 at {args.rate:g} req/s ({count:,} requests)",
            f"<= {args.p50:g} ms",
            f"{p50:.1f} ms",
            p50 <= args.p50,
        ),
        Figure(f"ack p99 at {args.rate:g} req/s", f"<= {args.p99:g} ms", f"{p99:.1f} ms", p99 <= args.p99),
        Figure("ack max", "-", f"{max(latencies):.1f} ms", None),
        Figure(
            "answered 200 and stored once",
            f"{count:,}",
            f"{ok:,} answered 200, {stored:,} stored",
            ok == stored == count,
        ),
    ]
    workers = f"{args.workers} worker x {args.concurrency} processing" if args.workers else "no workers"
    return print_table(f"Webhook ack latency (bench/webhook_ack.py; daphne, {workers})", figures)


if __name__ == "__main__":
    sys.exit(main())
