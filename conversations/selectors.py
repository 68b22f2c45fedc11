"""Reads about conversations, messages, webhook events and the AI assistant used by admin and reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import AIActivity, Conversation, Message, WebhookEvent
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


@dataclass
class AIUsageRow:
    """What the AI assistant did for one number or queue in a period."""

    scope: object  # the WhatsAppNumber or Queue
    replies: int
    handoffs: dict[str, int]  # by Conversation.AIStopReason
    failures: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def handoffs_total(self) -> int:
        return sum(self.handoffs.values())

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def ai_usage(*, user: AbstractBaseUser, since: datetime) -> dict[str, list[AIUsageRow]]:
    """Replies, hand-offs by reason, failures and tokens of the AI assistant since `since`, per number and per
    queue (two grouped queries), among what `user` may see. Hand-offs count every stop, failures included."""
    from queues.models import Queue
    from sessions.models import WhatsAppNumber

    reasons = Conversation.AIStopReason.values
    aggregates = {
        "replies": Count("pk", filter=Q(kind=AIActivity.Kind.REPLY)),
        "failures": Count("pk", filter=Q(kind=AIActivity.Kind.FAILURE)),
        "prompt": Coalesce(Sum("prompt_tokens"), 0),
        "completion": Coalesce(Sum("completion_tokens"), 0),
        **{f"h_{reason}": Count("pk", filter=Q(reason=reason) & ~Q(kind=AIActivity.Kind.REPLY)) for reason in reasons},
    }
    activity = client_scope(AIActivity.objects.filter(created_at__gte=since), user).order_by()
    result: dict[str, list[AIUsageRow]] = {}
    for key, model in (("number", WhatsAppNumber), ("queue", Queue)):
        grouped = activity.exclude(**{f"{key}_id": None}).values(f"{key}_id").annotate(**aggregates)
        scopes = model.objects.in_bulk([row[f"{key}_id"] for row in grouped])
        rows = [
            AIUsageRow(
                scope=scopes[row[f"{key}_id"]],
                replies=row["replies"],
                handoffs={reason: row[f"h_{reason}"] for reason in reasons if row[f"h_{reason}"]},
                failures=row["failures"],
                prompt_tokens=row["prompt"],
                completion_tokens=row["completion"],
            )
            for row in grouped
            if row[f"{key}_id"] in scopes
        ]
        result[f"{key}s"] = sorted(rows, key=lambda r: str(r.scope))
    return result
