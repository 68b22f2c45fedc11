"""Celery tasks of the sessions app: thin wrappers around services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from sessions.models import RegistrySyncRun
from sessions.services import number_sync_from_registry, sessions_check

logger = logging.getLogger(__name__)


@shared_task(queue="default", acks_late=True)
def number_sync_from_registry_task() -> dict:
    """Beat's hourly reconciliation. Without a configured registry there is nothing to sync (and no run to record)."""
    if not settings.WHATSAPP_CONNECTIONS_FILE:
        logger.info("registry sync skipped: WHATSAPP_CONNECTIONS_FILE is not set")
        return {"skipped": "WHATSAPP_CONNECTIONS_FILE is not set"}
    run = number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)
    return {"run": run.pk, "success": run.success, "summary": run.summary}


@shared_task(queue="default")
def sessions_check_task() -> dict[str, int]:
    """Beat, every 5 minutes: every WhatsApp Web / sandbox number held, heartbeating and consistent."""
    return sessions_check()
