"""Celery tasks of the conversations app: ids in, one service call (docs/inbound.md, docs/outbound.md)."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from conversations.services import (
    message_deliver,
    outbound_messages_sweep,
    unmatched_statuses_sweep,
    webhook_event_process,
    webhook_events_requeue,
)

# Acknowledged only after the run; the database being away retries the task with backoff, indefinitely (the
# services are safe to run twice).
RETRY_WHILE_DATABASE_AWAY = {
    "queue": "default",
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": None,
}


@shared_task(**RETRY_WHILE_DATABASE_AWAY)
def webhook_event_process_task(event_id: int) -> str | None:
    """Process one stored webhook event. The database being away retries it; everything else is recorded on
    the event (failed, with its error) by the service."""
    event = webhook_event_process(event_id=event_id)
    return event.status if event is not None else None


@shared_task(queue="default")
def webhook_events_requeue_task() -> int:
    return webhook_events_requeue()


@shared_task(queue="default")
def unmatched_statuses_sweep_task() -> dict[str, int]:
    return unmatched_statuses_sweep()


@shared_task(**RETRY_WHILE_DATABASE_AWAY)
def message_deliver_task(message_id: int) -> str:
    """Send one pending outbound message. Safe to run twice: only a `pending` message is ever handed to the
    provider (docs/outbound.md)."""
    return message_deliver(message_id=message_id)


@shared_task(queue="default")
def outbound_messages_sweep_task() -> dict[str, int]:
    return outbound_messages_sweep()
