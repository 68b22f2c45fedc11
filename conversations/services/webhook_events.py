"""Webhook events: stored before the 200, processed by a worker, requeued if a worker never got them.

Processing takes the event's messages, then its statuses, one batch per number in one transaction each; a batch
that fails is redone item by item, so one poison item fails alone (the event is marked failed with its error)
and never blocks the others. Everything is idempotent, so an
event processed twice (a requeue racing a slow worker, an operator's "reprocess") changes nothing the second
time.
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
from conversations.services.receive import inbound_message_receive, inbound_messages_receive
from conversations.services.statuses import message_status_apply, message_statuses_apply
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


def webhook_event_process(*, event_id: int, force: bool = False) -> WebhookEvent | None:
    """Process one stored event. Skips processed events unless `force` (an operator's reprocess)."""
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or (event.status == WebhookEvent.Status.PROCESSED and not force):
        return None
    run = _start(event)
    _process_together([run])
    _finish(run)
    return event


def webhook_events_process(*, event_ids: list[int]) -> list[WebhookEvent]:
    """Process several stored events together (those not processed yet): one batch of messages and one of
    statuses per number for all of them, so a busy line costs a few queries per batch instead of per event.
    A batch that fails is redone event by event, and then item by item, so a poison item still fails alone."""
    events = list(
        WebhookEvent.objects.filter(pk__in=event_ids).exclude(status=WebhookEvent.Status.PROCESSED).order_by("pk")
    )
    runs = [_start(event) for event in events]
    _process_together(runs)
    for run in runs:
        _finish(run)
    return events


def _process_together(runs: list[_Run]) -> None:
    parsed_runs = [run for run in runs if run.parsed is not None]
    wanted = sorted({pnid for run in parsed_runs for pnid in run.parsed.phone_number_ids})
    numbers = {
        n.phone_number_id: n
        for n in WhatsAppNumber.objects.filter(phone_number_id__in=wanted).select_related("client").order_by()
    }
    messages: dict[str, list[tuple[_Run, list]]] = {}
    statuses: dict[str, list[tuple[_Run, list]]] = {}
    for run in parsed_runs:
        parsed = run.parsed
        for kind, items, groups in (("messages", parsed.messages, messages), ("statuses", parsed.statuses, statuses)):
            mine: dict[str, list] = {}
            for item in items:
                if item.phone_number_id in numbers:
                    mine.setdefault(item.phone_number_id, []).append(item)
                else:
                    run.counts[f"{kind}_unknown_number"] += 1
            for phone_number_id, own in mine.items():
                groups.setdefault(phone_number_id, []).append((run, own))
        unknown = [pnid for pnid in parsed.phone_number_ids if pnid not in numbers]
        if unknown:
            run.errors.append(
                f"unknown phone_number_id {', '.join(unknown)}: its messages and statuses are kept in this event; "
                "add the number (or sync the registry) and reprocess it"
            )
        run.errors += [f"skipped: {problem}" for problem in parsed.problems]
        run.counts["ignored_changes"] = len(parsed.ignored)
    for phone_number_id, groups in messages.items():
        _together(numbers[phone_number_id], groups, inbound_messages_receive, "messages", _receive_messages)
    for phone_number_id, groups in statuses.items():
        _together(numbers[phone_number_id], groups, message_statuses_apply, "updates", _apply_statuses)


def _together(number: WhatsAppNumber, groups: list[tuple[_Run, list]], batch, argument: str, one_event) -> None:
    """Items of several events in one batch call; if it fails (rolled back as a whole), event by event."""
    if len(groups) > 1:
        flat = [item for _, items in groups for item in items]
        try:
            results = batch(number=number, **{argument: flat})
        except (OperationalError, InterfaceError):
            raise  # the database is away: the task retries the whole batch later
        except Exception:
            logger.warning("%s of %s events failed as one batch; event by event", argument, len(groups), exc_info=True)
        else:
            start = 0
            for run, items in groups:
                _count(run, argument, items, results[start : start + len(items)])
                start += len(items)
            return
    for run, items in groups:
        one_event(run, number, items)


def _count(run: _Run, argument: str, items: list, results: list) -> None:
    for item, result in zip(items, results, strict=True):
        if argument == "updates":
            run.counts[f"statuses_{result}"] += 1
        elif isinstance(result, Exception):
            run.errors.append(f"message {item.provider_message_id}: {type(result).__name__}: {result}")
            run.counts["messages_failed"] += 1
        else:
            run.counts["messages_stored" if result.created else "messages_duplicate"] += 1


def _finish(run: _Run) -> None:
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
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "error", "report", "attempts", "processed_at", "updated_at"])
    if errors:
        logger.warning("webhook event %s failed: %s error(s)", event.pk, len(errors))


def _receive_messages(run: _Run, number: WhatsAppNumber, messages: list) -> None:
    """One event's messages of one number in one batch; if it fails, one by one, so a poison message fails alone."""
    try:
        results = inbound_messages_receive(number=number, messages=messages)
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries the whole event later
    except Exception:
        logger.warning("webhook event %s: message batch failed; receiving one by one", run.event.pk, exc_info=True)
        results = []
        for message in messages:
            try:
                results.append(inbound_message_receive(number=number, message=message))
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                logger.exception("webhook event %s: message %s failed", run.event.pk, message.provider_message_id)
                results.append(exc)
    _count(run, "messages", messages, results)


def _apply_statuses(run: _Run, number: WhatsAppNumber, updates: list) -> None:
    """One event's statuses of one number in one batch; if it fails, one by one, so a poison status fails alone."""
    try:
        outcomes = message_statuses_apply(number=number, updates=updates)
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries the whole event later
    except Exception:
        logger.warning("webhook event %s: status batch failed; applying one by one", run.event.pk, exc_info=True)
    else:
        _count(run, "updates", updates, outcomes)
        return
    for update in updates:
        try:
            run.counts[f"statuses_{message_status_apply(number=number, update=update)}"] += 1
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            logger.exception("webhook event %s: status of %s failed", run.event.pk, update.provider_message_id)
            run.errors.append(f"status {update.status} of {update.provider_message_id}: {type(exc).__name__}: {exc}")
            run.counts["statuses_failed"] += 1


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
