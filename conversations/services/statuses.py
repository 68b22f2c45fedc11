"""Delivery statuses of outbound messages (docs/inbound.md "Statuses").

A status only moves a message forward (read never becomes delivered). A status for a message whose provider id
is not recorded yet (the webhook beat the send's bookkeeping) is kept as an UnmatchedStatus and applied when the
id is recorded; both sides take the same advisory lock on the provider id, so none slips between them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from conversations.inbound import StatusUpdate
from conversations.models import Conversation, Message, UnmatchedStatus
from crm.events import publish_on_commit, queue_group, user_group
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

S = Message.Status
# Later states win. A failure after "sent" is news; "delivered" after a failure is the truth and wins too.
RANK = {
    S.PENDING: 0,
    S.SENDING: 1,
    S.UNKNOWN: 2,
    S.ACCEPTED: 3,
    S.SENT: 4,
    S.FAILED: 5,
    S.DELIVERED: 6,
    S.READ: 7,
    S.PLAYED: 8,
}
PROVIDER_STATUSES = {S.SENT, S.DELIVERED, S.READ, S.PLAYED, S.FAILED}
UNMATCHED_TTL = timedelta(days=7)


def lock_provider_id(number_id: int, provider_message_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"wamid:{number_id}:{provider_message_id}"]
        )


def _apply(message: Message, *, status: str, at, error_code: str = "", error_reason: str = "") -> bool:
    """Move `message` to `status` unless it is already further along. True when it moved."""
    lower = [name for name, rank in RANK.items() if rank < RANK[status]]
    values = {"status": status, "status_at": at, "updated_at": timezone.now()}
    if status == S.FAILED:
        values.update(error_code=error_code[:32], error_reason=error_reason[:500])
    moved = Message.objects.filter(pk=message.pk, status__in=lower).update(**values) == 1
    if moved:
        conversation: Conversation = message.conversation
        event = {
            "type": "message.status",
            "data": {
                "conversation": conversation.pk,
                "message": message.pk,
                "status": status,
                "error_code": values.get("error_code", ""),
                "error_reason": values.get("error_reason", ""),
            },
        }
        if conversation.queue_id:
            publish_on_commit(queue_group(conversation.queue_id), event)
        if conversation.assigned_to_id:
            publish_on_commit(user_group(conversation.assigned_to_id), event)
    return moved


@transaction.atomic
def message_status_apply(*, number: WhatsAppNumber, update: StatusUpdate) -> str:
    """Apply a provider status. Returns "applied", "stale" (already further), "unmatched" (kept for later) or
    "ignored" (a status this product does not track, or one about an inbound message)."""
    if update.status not in PROVIDER_STATUSES:
        return "ignored"

    def find() -> Message | None:
        return (
            Message.objects.filter(number=number, provider_message_id=update.provider_message_id)
            .select_related("conversation")
            .only("pk", "direction", "status", "conversation__queue_id", "conversation__assigned_to_id")
            .first()
        )

    message = find()
    if message is None:
        lock_provider_id(number.pk, update.provider_message_id)
        message = find()
    if message is None:
        UnmatchedStatus.objects.create(
            number=number,
            provider_message_id=update.provider_message_id[:128],
            status=update.status,
            status_at=update.timestamp,
            error_code=update.error_code[:32],
            error_reason=update.error_reason[:500],
            payload=update.raw,
        )
        return "unmatched"
    if message.direction != Message.Direction.OUTBOUND:
        return "ignored"
    moved = _apply(
        message,
        status=update.status,
        at=update.timestamp,
        error_code=update.error_code,
        error_reason=update.error_reason,
    )
    return "applied" if moved else "stale"


def message_unmatched_statuses_apply(*, message: Message) -> int:
    """Apply the statuses that arrived before `message`'s provider id was recorded. Call under
    `lock_provider_id` in the transaction that records the id. Returns how many applied."""
    early = list(
        UnmatchedStatus.objects.filter(number_id=message.number_id, provider_message_id=message.provider_message_id)
    )
    if not early:
        return 0
    applied = 0
    for status in sorted(early, key=lambda s: RANK.get(s.status, 0)):
        message.refresh_from_db(fields=["status"])
        applied += _apply(
            message,
            status=status.status,
            at=status.status_at,
            error_code=status.error_code,
            error_reason=status.error_reason,
        )
    UnmatchedStatus.objects.filter(pk__in=[s.pk for s in early]).delete()
    return applied


def unmatched_statuses_sweep() -> dict[str, int]:
    """Apply kept statuses whose message is now known; forget those older than a week (sent outside the
    product, e.g. from Meta's own tools). Beat runs it every few minutes."""
    applied = expired = 0
    pending = (
        UnmatchedStatus.objects.values_list("number_id", "provider_message_id").distinct().order_by("number_id")[:1000]
    )
    for number_id, provider_message_id in pending:
        with transaction.atomic():
            lock_provider_id(number_id, provider_message_id)
            message = (
                Message.objects.filter(number_id=number_id, provider_message_id=provider_message_id)
                .select_related("conversation")
                .first()
            )
            if message is not None and message.direction == Message.Direction.OUTBOUND:
                applied += message_unmatched_statuses_apply(message=message)
    expired, _ = UnmatchedStatus.objects.filter(created_at__lt=timezone.now() - UNMATCHED_TTL).delete()
    if applied or expired:
        logger.info("unmatched statuses: %s applied, %s expired", applied, expired)
    return {"applied": applied, "expired": expired}
