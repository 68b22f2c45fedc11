"""Reads about conversations, messages and webhook events used by admin and reports."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from conversations.models import Message, WebhookEvent
from crm.selectors import client_scope

RECENT = timedelta(days=7)


def delivery_problem_counts(*, user: AbstractBaseUser) -> dict[str, int]:
    """What needs a human, among what `user` may see: failed webhook events (any age: they hold customer
    messages not yet stored) and outbound messages of the last week whose fate is unknown."""
    failed_events = client_scope(WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED), user)
    if not user.is_superuser:
        failed_events = failed_events.exclude(client__isnull=True)  # unknown numbers: superusers only
    unknown = client_scope(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.UNKNOWN,
            status_at__gte=timezone.now() - RECENT,
        ),
        user,
    )
    return {"failed_events": failed_events.count(), "unknown_messages": unknown.count()}
