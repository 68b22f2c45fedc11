"""Receiving one customer message, whatever engine brought it (docs/inbound.md).

Cloud API webhooks and WhatsApp Web sessions both end here: identify the contact, find or open the
conversation, store the message once (unique provider id per number), route and assign, publish after commit.
Everything for one sender runs under one advisory lock, so duplicates delivered concurrently, and a contact's
first messages arriving at two workers at once, never race.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations.identity import PhoneIdentity, PhoneIdentityError, phone_identity
from conversations.inbound import InboundMessage, InboundSender
from conversations.models import Contact, Conversation, Message
from conversations.services.live import publish_message_created
from crm.models import Client
from queues.services import conversation_assign_by_policy
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)


class InboundRejected(Exception):
    """The message cannot be attributed to anyone (no usable phone number nor business-scoped id)."""


@dataclass(frozen=True)
class ReceiveResult:
    message: Message
    created: bool  # False: a duplicate of a message already stored
    conversation: str  # "existing", "created" or "reopened"


def _identity(sender: InboundSender) -> PhoneIdentity | None:
    if not sender.wa_id:
        return None
    try:
        return phone_identity(sender.wa_id)
    except PhoneIdentityError:
        return None


def _lock_sender(client_id: int, key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"sender:{client_id}:{key}"])


def contact_identify(*, client: Client, sender: InboundSender, identity: PhoneIdentity | None = None) -> Contact:
    """The client's contact for this sender, created on first contact; fills in what was missing.

    Matches the phone's identity key first (national variants are one person), then the business-scoped id."""
    identity = identity if identity is not None else _identity(sender)
    if identity is None and not sender.bsuid:
        raise InboundRejected("the sender has neither a usable phone number nor a business-scoped user id")
    contact = None
    if identity is not None:
        contact = Contact.objects.filter(client=client, identity_key=identity.key).first()
    if contact is None and sender.bsuid:
        contact = Contact.objects.filter(client=client, bsuid=sender.bsuid).first()
    if contact is None:
        contact = Contact(client=client, name=sender.name[:200], username=(sender.username or "")[:100])
        contact.bsuid = (sender.bsuid or "")[:160]
        if identity is not None:
            contact.phone, contact.identity_key, contact.wa_id = identity.e164, identity.key, sender.wa_id or ""
        contact.save()
        return contact

    changed: list[str] = []
    if identity is not None and not contact.identity_key:
        contact.phone, contact.identity_key = identity.e164, identity.key
        changed += ["phone", "identity_key"]
    if sender.wa_id and identity is not None and contact.wa_id != sender.wa_id:
        contact.wa_id = sender.wa_id  # the form WhatsApp uses for this person now: reply to it
        changed.append("wa_id")
    if sender.bsuid and not contact.bsuid:
        if not Contact.objects.filter(client=client, bsuid=sender.bsuid).exists():
            contact.bsuid = sender.bsuid[:160]
            changed.append("bsuid")
    if sender.name and not contact.name:
        contact.name = sender.name[:200]
        changed.append("name")
    if sender.username and contact.username != sender.username:
        contact.username = sender.username[:100]
        changed.append("username")
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])
    return contact


def _conversation_for(*, number: WhatsAppNumber, contact: Contact, at) -> tuple[Conversation, str, int | None]:
    """The open conversation of (number, contact), a recently resolved one reopened, or a new one.

    Also returns who had a reopened conversation, so they can get it back."""
    conversation = (
        Conversation.objects.select_for_update()
        .filter(number=number, contact=contact)
        .exclude(status=Conversation.Status.RESOLVED)
        .first()
    )
    if conversation is not None:
        return conversation, "existing", None
    window = timedelta(seconds=settings.CONVERSATION_REOPEN_WINDOW)
    last = (
        Conversation.objects.select_for_update()
        .filter(number=number, contact=contact, status=Conversation.Status.RESOLVED, resolved_at__gte=at - window)
        .order_by("-resolved_at", "-pk")
        .first()
    )
    if last is not None:
        previous_agent = last.assigned_to_id
        last.status = Conversation.Status.PENDING
        last.resolved_at = None
        last.assigned_to = None
        last.waiting_since = at
        last.queue_id = last.queue_id or number.queue_id
        last.save(update_fields=["status", "resolved_at", "assigned_to", "waiting_since", "queue", "updated_at"])
        return last, "reopened", previous_agent
    conversation = Conversation.objects.create(
        client_id=number.client_id,
        number=number,
        contact=contact,
        queue_id=number.queue_id,
        status=Conversation.Status.PENDING,
        waiting_since=at,
    )
    return conversation, "created", None


@transaction.atomic
def inbound_message_receive(*, number: WhatsAppNumber, message: InboundMessage) -> ReceiveResult:
    """Store one inbound message exactly once and route its conversation. Safe to call again with the same one."""
    identity = _identity(message.sender)
    lock_key = identity.key if identity is not None else (message.sender.bsuid or "")
    if not lock_key:
        raise InboundRejected("the sender has neither a usable phone number nor a business-scoped user id")
    _lock_sender(number.client_id, lock_key)

    existing = (
        Message.objects.filter(number=number, provider_message_id=message.provider_message_id)
        .select_related("conversation")
        .first()
    )
    if existing is not None:
        return ReceiveResult(existing, False, "existing")

    contact = contact_identify(client=number.client, sender=message.sender, identity=identity)
    at = min(message.timestamp, timezone.now())
    conversation, action, previous_agent = _conversation_for(number=number, contact=contact, at=at)
    quoted_id = message.quoted_provider_id or ""
    quoted = (
        Message.objects.filter(number=number, provider_message_id=quoted_id).values_list("pk", flat=True).first()
        if quoted_id
        else None
    )
    media = message.media
    stored = Message.objects.create(
        conversation=conversation,
        number=number,
        direction=Message.Direction.INBOUND,
        kind=message.kind if message.kind in Message.Kind.values else Message.Kind.UNSUPPORTED,
        body=message.body,
        provider_message_id=message.provider_message_id,
        status=Message.Status.RECEIVED,
        status_at=message.timestamp,
        provider_timestamp=message.timestamp,
        payload=message.raw,
        media_id=media.media_id[:128] if media else "",
        media_mime_type=media.mime_type[:100] if media else "",
        media_filename=media.filename[:255] if media else "",
        quoted_id=quoted,
        quoted_provider_message_id=quoted_id[:128],
        error_code=message.error_code[:32],
        error_reason=message.error_reason[:500],
    )

    fields = ["updated_at"]
    if conversation.last_message_at is None or message.timestamp > conversation.last_message_at:
        conversation.last_message_at = message.timestamp
        fields.append("last_message_at")
    if conversation.last_inbound_at is None or message.timestamp > conversation.last_inbound_at:
        conversation.last_inbound_at = message.timestamp  # opens (or extends) the 24-hour window
        fields.append("last_inbound_at")
    if conversation.snoozed_until is not None:
        conversation.snoozed_until = None  # the customer wrote: back in the inbox
        fields.append("snoozed_until")
    if conversation.status == Conversation.Status.PENDING and conversation.queue_id is None and number.queue_id:
        conversation.queue_id = number.queue_id
        fields.append("queue")
    conversation.save(update_fields=fields)
    if conversation.status == Conversation.Status.PENDING and conversation.queue_id:
        conversation_assign_by_policy(conversation=conversation, preferred_user_id=previous_agent)

    publish_message_created(stored, conversation, action)
    return ReceiveResult(stored, True, action)
