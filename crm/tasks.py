"""Celery tasks of the crm app: ids in, one service call. Event webhooks run on their own `webhooks` queue and
worker (docs/webhooks.md), so a slow receiver never holds up inbound processing or campaigns."""

from __future__ import annotations

from celery import shared_task

from config.celery import retry_while_database_away
from crm.webhooks import webhook_deliveries_sweep, webhook_delivery_send

# A send first claims its delivery, so a second run is harmless.
WEBHOOKS_RETRY_WHILE_DATABASE_AWAY = retry_while_database_away("webhooks")


@shared_task(**WEBHOOKS_RETRY_WHILE_DATABASE_AWAY)
def webhook_delivery_send_task(delivery_id: int) -> str:
    """POST one event webhook delivery once; a failure schedules the next try (backoff) or gives up."""
    return webhook_delivery_send(delivery_id=delivery_id)


@shared_task(queue="webhooks", acks_late=True)
def webhook_deliveries_sweep_task() -> dict[str, int]:
    return webhook_deliveries_sweep()
