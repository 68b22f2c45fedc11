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
from conversations.services.live import publish_message_status
from crm.models import WebhookEventType
from crm.webhooks import webhook_events_emit, webhook_events_emit_many
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


def message_status_move(message: Message, *, status: str, at, error_code: str = "", error_reason: str = "") -> bool:
    """Move `message` to `status` unless it is already as far or further along. True when it moved.

    `message.conversation` must be loaded (its queue and agent receive the live event)."""
    lower = [name for name, rank in RANK.items() if rank < RANK[status]]
    values = {"status": status, "status_at": at, "updated_at": timezone.now()}
    if status in (S.FAILED, S.UNKNOWN):
        values.update(error_code=error_code[:32], error_reason=error_reason[:500])
    else:  # a later success is the truth: the earlier error no longer describes the message
        values.update(error_code="", error_reason="")
    moved = Message.objects.filter(pk=message.pk, status__in=lower).update(**values) == 1
    if moved:
        message.status = status
        code, reason = values.get("error_code", ""), values.get("error_reason", "")
        publish_message_status(message.pk, message.conversation, status, code, reason)
        conversation = message.conversation
        webhook_events_emit(
            client_id=conversation.client_id,
            type=WebhookEventType.MESSAGE_STATUS,
            data=_status_data(message.pk, conversation.pk, message.number_id, status, at, code, reason),
        )
    return moved


def _status_data(
    message_id: int, conversation_id: int, number_id: int, status: str, at, error_code: str, error_reason: str
) -> dict:
    """The `message.status` event webhook's data (docs/webhooks.md)."""
    return {
        "message": message_id,
        "conversation": conversation_id,
        "number": number_id,
        "status": status,
        "status_at": at,
        "error_code": error_code,
        "error_reason": error_reason,
    }


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
            .only(
                "pk",
                "direction",
                "status",
                "number",
                "conversation__client_id",
                "conversation__queue_id",
                "conversation__assigned_to_id",
            )
            .first()
        )

    message = find()
    if message is None:
        lock_provider_id(number.pk, update.provider_message_id)
        message = find()
    if message is None:
        # once per message and status: a redelivery, or the same event processed twice, adds nothing
        UnmatchedStatus.objects.bulk_create(
            [
                UnmatchedStatus(
                    number=number,
                    provider_message_id=update.provider_message_id[:128],
                    status=update.status,
                    status_at=update.timestamp,
                    error_code=update.error_code[:32],
                    error_reason=update.error_reason[:500],
                    payload=update.raw,
                )
            ],
            ignore_conflicts=True,
        )
        return "unmatched"
    if message.direction != Message.Direction.OUTBOUND:
        return "ignored"
    moved = message_status_move(
        message,
        status=update.status,
        at=update.timestamp,
        error_code=update.error_code,
        error_reason=update.error_reason,
    )
    return "applied" if moved else "stale"


_RANK_SQL = "CASE m.status " + " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in RANK.items()) + " ELSE 99 END"


def message_statuses_apply(*, number: WhatsAppNumber, updates: list[StatusUpdate]) -> list[str]:
    """`message_status_apply` for many statuses of one number at once: one query finds their messages, one
    moves them (each to the furthest status it got, still never backwards). Statuses whose message is not
    stored yet go through `message_status_apply` one by one (kept for later). Returns each update's outcome,
    in order."""
    outcomes = ["ignored"] * len(updates)
    furthest: dict[str, int] = {}  # provider id -> index of its furthest tracked update
    for index, update in enumerate(updates):
        if update.status not in PROVIDER_STATUSES:
            continue
        best = furthest.get(update.provider_message_id)
        if best is None or RANK[update.status] >= RANK[updates[best].status]:
            furthest[update.provider_message_id] = index
    if not furthest:
        return outcomes

    with transaction.atomic():
        found = {
            row["provider_message_id"]: row
            for row in Message.objects.filter(number=number, provider_message_id__in=list(furthest))
            .order_by()
            .values(
                "pk",
                "provider_message_id",
                "direction",
                "conversation_id",
                "conversation__client_id",
                "conversation__queue_id",
                "conversation__assigned_to_id",
            )
        }
        moves = []
        for provider_id, index in furthest.items():
            row = found.get(provider_id)
            if row is None or row["direction"] != Message.Direction.OUTBOUND:
                continue
            update = updates[index]
            failure = update.status == S.FAILED
            moves.append(
                (
                    row["pk"],
                    update.status,
                    update.timestamp,
                    update.error_code[:32] if failure else "",
                    update.error_reason[:500] if failure else "",
                    RANK[update.status],
                )
            )
        by_pk = {row["pk"]: row for row in found.values()}
        moved: set[int] = set()
        if moves:
            values = ", ".join(["(%s::bigint, %s, %s::timestamptz, %s, %s, %s::int)"] * len(moves))
            with connection.cursor() as cursor:
                # Only placeholders and this module's constants are formatted in: no input reaches the SQL text.
                cursor.execute(
                    f"""UPDATE conversations_message AS m
                    SET status = v.status, status_at = v.at, error_code = v.code, error_reason = v.reason,
                        updated_at = now()
                    FROM (VALUES {values}) AS v(id, status, at, code, reason, rank)
                    WHERE m.id = v.id AND {_RANK_SQL} < v.rank
                    RETURNING m.id""",  # noqa: S608
                    [value for move in moves for value in move],
                )
                moved = {row[0] for row in cursor.fetchall()}
        events: dict[int, list] = {}  # by client
        for pk, status, at, code, reason, _rank in moves:
            if pk in moved:
                row = by_pk[pk]
                conversation = Conversation(
                    pk=row["conversation_id"],
                    client_id=row["conversation__client_id"],
                    queue_id=row["conversation__queue_id"],
                    assigned_to_id=row["conversation__assigned_to_id"],
                )
                publish_message_status(pk, conversation, status, code, reason)
                data = _status_data(pk, conversation.pk, number.pk, status, at, code, reason)
                events.setdefault(conversation.client_id, []).append((WebhookEventType.MESSAGE_STATUS, data))
        for client_id, client_events in events.items():
            webhook_events_emit_many(client_id=client_id, events=client_events)

    for index, update in enumerate(updates):
        if update.status not in PROVIDER_STATUSES:
            continue
        row = found.get(update.provider_message_id)
        if row is None:
            outcomes[index] = message_status_apply(number=number, update=update)  # kept until its message is known
        elif row["direction"] != Message.Direction.OUTBOUND:
            outcomes[index] = "ignored"
        else:
            applied = furthest[update.provider_message_id] == index and row["pk"] in moved
            outcomes[index] = "applied" if applied else "stale"
    return outcomes


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
        applied += message_status_move(
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
