"""Celery tasks of the crm app: ids in, one service call. Event webhooks run on their own `webhooks` queue and
worker (docs/webhooks.md), so a slow receiver never holds up inbound processing or campaigns."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from crm.webhooks import webhook_deliveries_sweep, webhook_delivery_send

# Acknowledged only after the run; the database being away retries the task with backoff, indefinitely (a send
# first claims its delivery, so a second run is harmless).
WEBHOOKS_RETRY_WHILE_DATABASE_AWAY = {
    "queue": "webhooks",
    "acks_late": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "max_retries": None,
}


@shared_task(**WEBHOOKS_RETRY_WHILE_DATABASE_AWAY)
def webhook_delivery_send_task(delivery_id: int) -> str:
    """POST one event webhook delivery once; a failure schedules the next try (backoff) or gives up."""
    return webhook_delivery_send(delivery_id=delivery_id)


@shared_task(queue="webhooks", acks_late=True)
def webhook_deliveries_sweep_task() -> dict[str, int]:
    return webhook_deliveries_sweep()
