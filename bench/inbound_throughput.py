#!/usr/bin/env python
"""Inbound processing throughput (Cloud API issue): >= 1,000 webhook events/s, messages and statuses mixed 1:3,
sustained for 60 s by the real workers, measured from the first POST to the last event processed.

    .venv/bin/python bench/inbound_throughput.py [--seconds 60] [--rate 1250] [--per-body 20] [--workers 1]
                                                 [--concurrency 2] [--target 1000]

Starts daphne and Celery workers on the bench database and Redis (bench/_stack.py), prepares a number in a
queue with agents online, 3,000 customers with open conversations and the outbound messages the statuses name
(bench/_workload.py), then POSTs signed webhooks at `rate` events per second for `seconds`. An "event" is one
message or one status; Meta batches several per webhook under load, and so does this benchmark (`--per-body`,
20 by default: at 1,250 events/s that is 62.5 POSTs a second). It waits until every stored webhook is
processed and checks the result: every message stored once, every outbound message at "read". Exit status 1
when a target is missed or anything is lost or duplicated.

Before the load it measures this machine's raw PostgreSQL single-row INSERT + COMMIT rate from Python
(`--baseline-seconds`), and prints the throughput as a ratio of it, so figures compare across machines.

The offered rate defaults to 1.25 times the target. Measured from the first POST to the last event processed,
a load offered at exactly the target can never pass (the last event is processed a little after it is
posted); offering more shows what the workers keep up with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, pg_commit_rate, print_table, setup_django  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--rate", type=float, default=None, help="events (messages + statuses) per second; default 1.25 x target"
    )
    parser.add_argument("--per-body", type=int, default=20, help="events per webhook body")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    parser.add_argument("--target", type=float, default=1000, help="events per second to pass")
    parser.add_argument(
        "--baseline-seconds", type=float, default=5, help="how long to measure PostgreSQL's raw commit rate"
    )
    args = parser.parse_args()
    if args.rate is None:
        args.rate = args.target * 1.25

    setup_django()
    import _workload
    from _stack import Stack, percentile, post_at_rate, signed
    from django.db.models import Count, Max, Min

    from conversations.models import Message, WebhookEvent

    items = int(args.seconds * args.rate)
    expected = _workload.prepare(items)
    baseline = pg_commit_rate(args.baseline_seconds)
    requests = [signed(body) for body in _workload.bodies(items, args.per_body)]
    post_rate = args.rate / args.per_body

    with Stack(web=True, workers=args.workers, concurrency=args.concurrency) as stack:
        wall_start = time.time()
        results = asyncio.run(post_at_rate(stack.url + "/webhooks/whatsapp/", requests, rate=post_rate))
        posted = time.time()
        deadline = posted + max(120, args.seconds * 3)
        while WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).exists():
            if time.time() > deadline:
                break
            time.sleep(0.2)
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).count()
    failed = WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count()
    span = WebhookEvent.objects.aggregate(first=Min("created_at"), last=Max("processed_at"))
    last_processed = span["last"].timestamp() if span["last"] else time.time()
    elapsed = last_processed - wall_start

    inbound = Message.objects.filter(direction=Message.Direction.INBOUND)
    inbound_stored = inbound.count()
    duplicates = inbound.values("provider_message_id").annotate(n=Count("id")).filter(n__gt=1).count()
    outbound_read = Message.objects.filter(direction=Message.Direction.OUTBOUND, status="read").count()
    ok_posts = sum(1 for r in results if r.status == 200)
    latencies = [r.latency * 1000 for r in results]
    throughput = items / elapsed if elapsed > 0 else 0.0
    complete = (
        pending == 0
        and failed == 0
        and ok_posts == len(requests)
        and inbound_stored == expected.inbound_messages
        and duplicates == 0
        and outbound_read == expected.outbound_messages
    )

    figures = [
        Figure(
            f"processing, {items:,} events ({args.per_body}/webhook) in {args.seconds:g} s of load",
            f">= {args.target:g} events/s",
            f"{throughput:,.0f} events/s (first POST to last processed: {elapsed:.1f} s)",
            throughput >= args.target,
        ),
        Figure(
            "baseline: PostgreSQL single-row INSERT + COMMIT from Python (psycopg, idle machine)",
            "-",
            f"{baseline:,.0f} rows/s",
            None,
        ),
        Figure(
            "processing throughput / baseline (compares across machines)",
            "-",
            f"{throughput / baseline:.2f} (each event costs {baseline / throughput:.2f} baseline commits)"
            if baseline and throughput
            else "-",
            None,
        ),
        Figure(
            "offered load",
            "-",
            f"{len(requests):,} POSTs at {post_rate:g}/s, sent in {posted - wall_start:.1f} s; ack p50 "
            f"{percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms",
            None,
        ),
        Figure(
            "nothing lost, nothing twice",
            "all stored once",
            f"{ok_posts}/{len(requests)} acked, {inbound_stored}/{expected.inbound_messages} messages, "
            f"{duplicates} duplicated, {outbound_read}/{expected.outbound_messages} outbound read, {pending} pending, "
            f"{failed} failed events",
            complete,
        ),
    ]
    return print_table(
        f"Inbound throughput (bench/inbound_throughput.py; {args.workers} worker x {args.concurrency})", figures
    )


if __name__ == "__main__":
    sys.exit(main())
