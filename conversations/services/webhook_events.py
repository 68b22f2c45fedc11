"""Webhook events: stored before the 200, processed by a worker, requeued if a worker never got them.

Processing takes the messages, then the statuses, of the events in hand as one batch per number, each in its own
transaction; a batch that fails is split, event by event and then item by item, so one poison item fails alone
(its event is marked failed with the error) and never blocks the others. Everything is idempotent, so an event
processed twice (a requeue racing a slow worker, an operator's "reprocess") changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from conversations.inbound import ParsedWebhook, WebhookShapeError, parse_webhook
from conversations.models import WebhookEvent
from conversations.services.receive import inbound_messages_receive
from conversations.services.statuses import message_statuses_apply
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

MAX_ERROR_LINES = 50
REQUEUE_BATCH = 20


def webhook_events_enqueue(event_ids: list[int]) -> bool:
    """Hand stored events to a worker, several per task. False when the broker is away: the events are stored,
    and the requeue sweep hands them out later."""
    from conversations.tasks import webhook_events_process_task

    try:
        webhook_events_process_task.delay(list(event_ids))
    except Exception:
        logger.warning("webhook event(s) %s stored but not queued; the requeue sweep will pick them up", event_ids)
        return False
    return True


def webhook_event_store(
    *, body: dict, phone_number_ids: list[str], client_id: int | None, enqueue: bool = True
) -> WebhookEvent:
    """Store a verified webhook body durably, then (after commit) hand it to a worker unless the caller will.

    One INSERT in autocommit: when this returns, the event is committed (or, inside a caller's transaction,
    will be with it, and the hand-off waits for that commit)."""
    event = WebhookEvent.objects.create(body=body, phone_number_ids=phone_number_ids, client_id=client_id)
    if enqueue:
        transaction.on_commit(lambda: webhook_events_enqueue([event.pk]))
    return event


@dataclass
class _Run:
    """One event being processed: what it holds and what happened to it."""

    event: WebhookEvent
    parsed: ParsedWebhook | None
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _start(event: WebhookEvent) -> _Run:
    try:
        return _Run(event, parse_webhook(event.body))
    except WebhookShapeError as exc:  # the view rejects these; an event stored by other means may still be odd
        return _Run(event, None, errors=[f"not a WhatsApp webhook: {exc}"])
    except Exception as exc:  # one unreadable event fails alone: it must never hold up the others of its batch
        logger.exception("webhook event %s could not be read", event.pk)
        return _Run(event, None, errors=[f"could not be read: {type(exc).__name__}: {str(exc)[:200]}"])


def webhook_event_process(*, event_id: int, force: bool = False) -> WebhookEvent | None:
    """Process one stored event. Skips a processed event unless `force` (an operator's reprocess)."""
    events = webhook_events_process(event_ids=[event_id], force=force)
    return events[0] if events else None


def webhook_events_process(*, event_ids: list[int], force: bool = False) -> list[WebhookEvent]:
    """Process several stored events together (processed ones only with `force`): one batch of messages and one
    of statuses per number for all of them, so a busy line costs a few queries per batch instead of per event."""
    events = WebhookEvent.objects.filter(pk__in=event_ids).order_by("pk")
    if not force:
        events = events.exclude(status=WebhookEvent.Status.PROCESSED)
    events = list(events)
    if events:
        _process(events)
    return events


# kind -> (batch service, its keyword for the items)
_BATCHES = {"messages": (inbound_messages_receive, "messages"), "statuses": (message_statuses_apply, "updates")}


def _process(events: list[WebhookEvent]) -> None:
    runs = [_start(event) for event in events]
    parsed_runs = [run for run in runs if run.parsed is not None]
    wanted = sorted({pnid for run in parsed_runs for pnid in run.parsed.phone_number_ids})
    numbers = {
        n.phone_number_id: n
        for n in WhatsAppNumber.objects.filter(phone_number_id__in=wanted).select_related("client").order_by()
    }
    groups: dict[tuple[str, str], list[tuple[_Run, list]]] = {}  # (kind, phone_number_id) -> each event's items
    for run in parsed_runs:
        parsed = run.parsed
        for kind, items in (("messages", parsed.messages), ("statuses", parsed.statuses)):
            mine: dict[str, list] = {}
            for item in items:
                if item.phone_number_id in numbers:
                    mine.setdefault(item.phone_number_id, []).append(item)
                else:
                    run.counts[f"{kind}_unknown_number"] += 1
            for phone_number_id, own in mine.items():
                groups.setdefault((kind, phone_number_id), []).append((run, own))
        unknown = [pnid for pnid in parsed.phone_number_ids if pnid not in numbers]
        if unknown:
            run.errors.append(
                f"unknown phone_number_id {', '.join(unknown)}: its messages and statuses are kept in this event; "
                "add the number (or sync the registry) and reprocess it"
            )
        run.errors += [f"skipped: {problem}" for problem in parsed.problems]
        run.counts["ignored_changes"] = len(parsed.ignored)
    for kind in _BATCHES:  # messages first, then statuses
        for (group_kind, phone_number_id), event_items in groups.items():
            if group_kind == kind:
                _handle(kind, numbers[phone_number_id], event_items)
    now = timezone.now()
    for run in runs:
        _finish(run, now)
    WebhookEvent.objects.bulk_update(
        events, ["status", "error", "report", "attempts", "processed_at", "updated_at"], batch_size=500
    )
    for run in runs:
        if run.errors:
            logger.warning("webhook event %s failed: %s error(s)", run.event.pk, len(run.errors))


def _handle(kind: str, number: WhatsAppNumber, event_items: list[tuple[_Run, list]]) -> None:
    """The items of one number, from one or more events, in one batch call (its own transaction). A batch that
    fails is rolled back as a whole and split, event by event and then item by item, so a poison item fails
    alone and everything else is stored."""
    batch, keyword = _BATCHES[kind]
    flat = [item for _, items in event_items for item in items]
    try:
        results = batch(number=number, **{keyword: flat})
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries the whole batch later
    except Exception as exc:
        if len(flat) == 1:
            run = event_items[0][0]
            logger.exception("webhook event %s: %s %s failed", run.event.pk, kind, flat[0].provider_message_id)
            _count(run, kind, flat, [exc])
            return
        logger.warning("a batch of %s %s failed; splitting it", len(flat), kind, exc_info=True)
        if len(event_items) > 1:
            parts = [[one] for one in event_items]
        else:
            run, items = event_items[0]
            parts = [[(run, [item])] for item in items]
        for part in parts:
            _handle(kind, number, part)
        return
    start = 0
    for run, items in event_items:
        _count(run, kind, items, results[start : start + len(items)])
        start += len(items)


def _count(run: _Run, kind: str, items: list, results: list) -> None:
    for item, result in zip(items, results, strict=True):
        if isinstance(result, Exception):
            what = "message" if kind == "messages" else f"status {item.status} of"
            run.errors.append(f"{what} {item.provider_message_id}: {type(result).__name__}: {result}")
            run.counts[f"{kind}_failed"] += 1
        elif kind == "statuses":
            run.counts[f"statuses_{result}"] += 1
        else:
            run.counts["messages_stored" if result.created else "messages_duplicate"] += 1


def _finish(run: _Run, now) -> None:
    """Record on the event what happened to it (saved with the others of its batch)."""
    event, errors, counts = run.event, run.errors, run.counts
    event.status = WebhookEvent.Status.FAILED if errors else WebhookEvent.Status.PROCESSED
    event.error = "\n".join(errors[:MAX_ERROR_LINES]) + (
        f"\n… {len(errors) - MAX_ERROR_LINES} more" if len(errors) > MAX_ERROR_LINES else ""
    )
    event.report = {
        **{key: value for key, value in counts.items() if value},
        "ignored": [{"field": i.field, "reason": i.reason} for i in run.parsed.ignored] if run.parsed else [],
    }
    event.attempts += 1
    event.processed_at = event.updated_at = now


def webhook_events_requeue() -> int:
    """Hand pending events older than WEBHOOK_REQUEUE_AFTER to a worker again (lost enqueue, killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER)
    ids = list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:5000]
    )
    for start in range(0, len(ids), REQUEUE_BATCH):
        webhook_events_enqueue(ids[start : start + REQUEUE_BATCH])
    if ids:
        logger.warning("requeued %s webhook event(s) that no worker processed", len(ids))
    return len(ids)
