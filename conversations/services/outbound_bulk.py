"""Many messages from one number at its full pace (campaigns on Cloud API numbers; docs/outbound.md "Bulk").

The same checks as `message_send`, made once per batch instead of once per message, and the same records, written
for a batch of results in one transaction. Between the two the caller marks each message as being handed over in
its own durable record (a campaign recipient's `sent_at`), reserves the governor's slot and calls
`sessions.services.number_send` itself, so a crash mid-send leaves a mark that says "unknown", never a re-send.

Campaign messages are written into `conversation_for_outbound`'s conversation; only those landing in a
conversation someone is working (not resolved) are announced live, so a campaign does not flood agents' pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from conversations.models import Contact, Conversation, Message
from conversations.services.live import publish_message_created
from conversations.services.outbound import (
    OutboundRefused,
    Template,
    check_contact_sendable,
    check_number_sendable,
    check_template,
    check_text,
    contact_address,
    conversations_for_outbound,
    template_summary,
)
from conversations.services.statuses import message_unmatched_statuses_apply
from sessions.engines.base import OutboundContent, OutboundTemplate, OutboundText, SendError
from sessions.models import WhatsAppNumber


@dataclass(frozen=True)
class BulkSend:
    """One message ready for the provider. `key` is the caller's (a recipient id)."""

    key: int
    contact: Contact
    text: str | None
    template: Template | None

    @property
    def content(self) -> OutboundContent:
        to = contact_address(self.contact)
        if self.template is not None:
            return OutboundTemplate(
                to=to, name=self.template.name, language=self.template.language, components=self.template.components
            )
        return OutboundText(to=to, body=self.text or "")


@dataclass(frozen=True)
class BulkResult:
    """What the provider answered for one BulkSend: its message id, or the error."""

    send: BulkSend
    at: datetime
    provider_message_id: str | None = None
    error: SendError | None = None


def outbound_bulk_prepare(
    *, number: WhatsAppNumber, items: list[tuple[int, Contact, str | None, Template | None]], origin: str
) -> tuple[list[BulkSend], dict[int, OutboundRefused]]:
    """Check a batch of (key, contact, text, template) for `number`. Returns what may be sent and, by key, why the
    rest may not. Raises OutboundRefused when the number itself cannot send (nothing of the batch can)."""
    sends: list[BulkSend] = []
    refused: dict[int, OutboundRefused] = {}
    rules = check_number_sendable(number, template=next((t for *_r, t in items if t is not None), None))
    for key, contact, text, template in items:
        try:
            if (text is None) == (template is None):
                raise OutboundRefused("invalid", "Send either a text or a template, not both or neither.")
            check_contact_sendable(contact, origin=origin, template=template)
            if template is not None:
                check_template(template)
            else:
                check_text(text)
                if rules.reply_window is not None:  # the window lives on conversations: one by one, not in bulk
                    raise OutboundRefused(
                        "window_closed", "Only an approved template can be sent to many customers from this number."
                    )
        except OutboundRefused as exc:
            refused[key] = exc
        else:
            sends.append(BulkSend(key, contact, text.strip() if text else None, template))
    return sends, refused


@transaction.atomic
def outbound_bulk_record(*, number: WhatsAppNumber, results: list[BulkResult], origin: str) -> dict[int, Message]:
    """Write the messages of a batch the provider answered (accepted, failed, or unknown when the answer was
    lost), into their conversations, and apply statuses that arrived before them. Returns the messages by key."""
    if not results:
        return {}
    now = timezone.now()
    conversations = conversations_for_outbound(number=number, contacts=[r.send.contact for r in results], now=now)
    ids = sorted({r.provider_message_id for r in results if r.provider_message_id})
    if ids:  # the same locks a status webhook takes when it finds no message: none slips between
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(name, 0)) "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n",
                [[f"wamid:{number.pk}:{pid}" for pid in ids]],
            )
    rows = []
    for result in results:
        send, error = result.send, result.error
        if error is None:
            status, code, reason = Message.Status.ACCEPTED, "", ""
        else:
            status = Message.Status.UNKNOWN if error.ambiguous else Message.Status.FAILED
            code, reason = error.code[:32], error.reason[:500]
        if send.template is not None:
            kind, body = Message.Kind.TEMPLATE, template_summary(send.template)
            payload = {
                "template": {
                    "name": send.template.name,
                    "language": {"code": send.template.language},
                    "components": send.template.components,
                }
            }
        else:
            kind, body, payload = Message.Kind.TEXT, send.text or "", {"text": {"body": send.text or ""}}
        rows.append(
            Message(
                conversation=conversations[send.contact.pk],
                number=number,
                direction=Message.Direction.OUTBOUND,
                origin=origin,
                kind=kind,
                body=body,
                status=status,
                status_at=result.at,
                provider_message_id=result.provider_message_id,
                error_code=code,
                error_reason=reason,
                payload=payload,
            )
        )
    _insert(rows, now)
    Conversation.objects.filter(pk__in={c.pk for c in conversations.values()}).filter(
        Q(last_message_at__isnull=True) | Q(last_message_at__lt=now)
    ).update(last_message_at=now, updated_at=now)
    if ids:
        from conversations.models import UnmatchedStatus

        early = set(
            UnmatchedStatus.objects.filter(number=number, provider_message_id__in=ids).values_list(
                "provider_message_id", flat=True
            )
        )
        for message in rows:
            if message.provider_message_id in early:
                message_unmatched_statuses_apply(message=message)
    for message in rows:
        if message.conversation.status != Conversation.Status.RESOLVED:
            publish_message_created(message, message.conversation)
    return {result.send.key: message for result, message in zip(results, rows, strict=True)}


def _insert(rows: list[Message], now: datetime) -> None:
    """Insert the batch's messages in one statement (arrays, not a row of Python per field: this is a campaign's
    hot path) and give each object its id."""
    columns = [
        [m.conversation_id for m in rows],
        [m.kind for m in rows],
        [m.body for m in rows],
        [m.provider_message_id for m in rows],
        [m.status for m in rows],
        [m.error_code for m in rows],
        [m.error_reason for m in rows],
        [m.status_at for m in rows],
        [json.dumps(m.payload) for m in rows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO conversations_message (
                conversation_id, number_id, direction, origin, kind, body, provider_message_id, status, error_code,
                error_reason, status_at, payload, media_id, media_mime_type, media_filename,
                quoted_provider_message_id, created_at, updated_at)
            SELECT c, %s, %s, %s, k, b, p, s, ec, er, sa, pl::jsonb, '', '', '', '', %s, %s
              FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                          %s::timestamptz[], %s::text[]) WITH ORDINALITY AS t(c, k, b, p, s, ec, er, sa, pl, n)
             ORDER BY n
            RETURNING id
            """,
            [rows[0].number_id, Message.Direction.OUTBOUND, rows[0].origin, now, now, *columns],
        )
        for message, (pk,) in zip(rows, cursor.fetchall(), strict=True):
            message.pk, message.created_at, message.updated_at = pk, now, now
            message._state.adding = False
