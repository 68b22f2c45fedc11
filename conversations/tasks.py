"""Celery tasks of the conversations app: ids in, one service call (docs/inbound.md, docs/outbound.md)."""

from __future__ import annotations

from celery import shared_task

from config.celery import retry_while_database_away
from conversations.services import (
    message_deliver,
    outbound_messages_sweep,
    unmatched_statuses_sweep,
    webhook_events_process,
    webhook_events_requeue,
)
from conversations.services.ai import ai_replies_sweep, conversation_ai_reply

# The services are safe to run twice.
RETRY_WHILE_DATABASE_AWAY = retry_while_database_away("default")


@shared_task(**RETRY_WHILE_DATABASE_AWAY)
def webhook_events_process_task(event_ids: list[int]) -> dict[str, int]:
    """Process stored webhook events together; one task per batch the web process collected. A retry skips the
    events already processed; everything else is recorded on the events (failed, with the error) by the
    service."""
    outcomes: dict[str, int] = {}
    for event in webhook_events_process(event_ids=event_ids):
        outcomes[event.status] = outcomes.get(event.status, 0) + 1
    return outcomes


@shared_task(queue="default")
def webhook_events_requeue_task() -> int:
    return webhook_events_requeue()


@shared_task(queue="default")
def unmatched_statuses_sweep_task() -> dict[str, int]:
    return unmatched_statuses_sweep()


@shared_task(**RETRY_WHILE_DATABASE_AWAY)
def message_deliver_task(message_id: int, slot_taken: bool = False) -> str:
    """Send one pending outbound message. Safe to run twice: only a `pending` message is ever handed to the
    provider (docs/outbound.md). `slot_taken`: the sender already reserved the governor's slot (a campaign)."""
    return message_deliver(message_id=message_id, slot_taken=slot_taken)


@shared_task(queue="default")
def outbound_messages_sweep_task() -> dict[str, int]:
    return outbound_messages_sweep()


@shared_task(**RETRY_WHILE_DATABASE_AWAY)
def conversation_ai_reply_task(conversation_id: int, message_id: int) -> str:
    """The AI assistant answers the customer's messages up to `message_id` (docs/ai.md), unless a later message
    (its own task answers), an agent or a hand-off came first. Safe to run twice."""
    return conversation_ai_reply(conversation_id=conversation_id, message_id=message_id)


@shared_task(queue="default")
def ai_replies_sweep_task() -> dict[str, int]:
    return ai_replies_sweep()
