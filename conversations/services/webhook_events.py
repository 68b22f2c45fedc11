"""Webhook events: stored before the 200, processed by a worker, requeued if a worker never got them.

Processing walks every message and status of the event, each in its own transaction, so one poison item fails
alone (the event is marked failed with its error) and never blocks the others. Everything is idempotent, so an
event processed twice (a requeue racing a slow worker, an operator's "reprocess") changes nothing the second
time.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from conversations.inbound import WebhookShapeError, parse_webhook
from conversations.models import WebhookEvent
from conversations.services.receive import inbound_message_receive
from conversations.services.statuses import message_status_apply, message_statuses_apply
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

MAX_ERROR_LINES = 50


def _enqueue(event_id: int) -> None:
    from conversations.tasks import webhook_event_process_task

    try:
        webhook_event_process_task.delay(event_id)
    except Exception:  # the broker is down: the event is stored, and the requeue sweep hands it out later
        logger.warning("webhook event %s stored but not queued; the requeue sweep will pick it up", event_id)


def webhook_event_store(*, body: dict, phone_number_ids: list[str], client_id: int | None) -> WebhookEvent:
    """Store a verified webhook body durably, then (after commit) hand it to a worker."""
    with transaction.atomic():
        event = WebhookEvent.objects.create(body=body, phone_number_ids=phone_number_ids, client_id=client_id)
        transaction.on_commit(lambda: _enqueue(event.pk))
    return event


def webhook_event_process(*, event_id: int, force: bool = False) -> WebhookEvent | None:
    """Process one stored event. Skips processed events unless `force` (an operator's reprocess)."""
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None or (event.status == WebhookEvent.Status.PROCESSED and not force):
        return None
    errors: list[str] = []
    counts: Counter[str] = Counter()
    try:
        parsed = parse_webhook(event.body)
    except WebhookShapeError as exc:  # the view rejects these; an event stored by other means may still be odd
        parsed = None
        errors.append(f"not a WhatsApp webhook: {exc}")
    if parsed is not None:
        numbers = {
            n.phone_number_id: n
            for n in WhatsAppNumber.objects.filter(phone_number_id__in=parsed.phone_number_ids).select_related("client")
        }
        for message in parsed.messages:
            number = numbers.get(message.phone_number_id)
            if number is None:
                counts["messages_unknown_number"] += 1
                continue
            try:
                result = inbound_message_receive(number=number, message=message)
            except (OperationalError, InterfaceError):
                raise  # the database is away: the task retries the whole event later
            except Exception as exc:
                logger.exception("webhook event %s: message %s failed", event.pk, message.provider_message_id)
                errors.append(f"message {message.provider_message_id}: {type(exc).__name__}: {exc}")
                counts["messages_failed"] += 1
                continue
            counts["messages_stored" if result.created else "messages_duplicate"] += 1
        by_number: dict[str, list] = {}
        for update in parsed.statuses:
            if update.phone_number_id in numbers:
                by_number.setdefault(update.phone_number_id, []).append(update)
            else:
                counts["statuses_unknown_number"] += 1
        for phone_number_id, updates in by_number.items():
            _apply_statuses(event, numbers[phone_number_id], updates, counts, errors)
        unknown = [pnid for pnid in parsed.phone_number_ids if pnid not in numbers]
        if unknown:
            errors.append(
                f"unknown phone_number_id {', '.join(unknown)}: its messages and statuses are kept in this event; "
                "add the number (or sync the registry) and reprocess it"
            )
        errors += [f"skipped: {problem}" for problem in parsed.problems]
        counts["ignored_changes"] = len(parsed.ignored)

    event.status = WebhookEvent.Status.FAILED if errors else WebhookEvent.Status.PROCESSED
    event.error = "\n".join(errors[:MAX_ERROR_LINES]) + (
        f"\n… {len(errors) - MAX_ERROR_LINES} more" if len(errors) > MAX_ERROR_LINES else ""
    )
    event.report = {
        **{key: value for key, value in counts.items() if value},
        "ignored": [{"field": i.field, "reason": i.reason} for i in parsed.ignored] if parsed else [],
    }
    event.attempts += 1
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "error", "report", "attempts", "processed_at", "updated_at"])
    if errors:
        logger.warning("webhook event %s failed: %s error(s)", event.pk, len(errors))
    return event


def _apply_statuses(event: WebhookEvent, number: WhatsAppNumber, updates: list, counts: Counter, errors: list) -> None:
    """All statuses of one number in one batch; if the batch fails, one by one, so a poison status fails alone."""
    try:
        outcomes = message_statuses_apply(number=number, updates=updates)
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries the whole event later
    except Exception:
        logger.warning("webhook event %s: status batch failed; applying one by one", event.pk, exc_info=True)
    else:
        counts.update(f"statuses_{outcome}" for outcome in outcomes)
        return
    for update in updates:
        try:
            counts[f"statuses_{message_status_apply(number=number, update=update)}"] += 1
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            logger.exception("webhook event %s: status of %s failed", event.pk, update.provider_message_id)
            errors.append(f"status {update.status} of {update.provider_message_id}: {type(exc).__name__}: {exc}")
            counts["statuses_failed"] += 1


def webhook_events_requeue() -> int:
    """Hand pending events older than WEBHOOK_REQUEUE_AFTER to a worker again (lost enqueue, killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER)
    ids = list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:5000]
    )
    for event_id in ids:
        _enqueue(event_id)
    if ids:
        logger.warning("requeued %s webhook event(s) that no worker processed", len(ids))
    return len(ids)
