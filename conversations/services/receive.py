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
from django.db.models import Q
from django.utils import timezone

from campaigns.optout import is_opt_out
from conversations.identity import PhoneIdentity, PhoneIdentityError, phone_identity
from conversations.inbound import InboundMessage, InboundSender
from conversations.models import Contact, Conversation, Message
from conversations.services.ai import conversations_ai_on_inbound
from conversations.services.live import publish_message_created
from crm.models import Client, WebhookEventType
from crm.webhooks import webhook_event_wanted, webhook_events_emit_many
from queues.services import conversation_assign_by_policy
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)


NO_SENDER = "the sender has neither a usable phone number nor a business-scoped user id"


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


def _lock_senders(client_id: int, keys: list[str]) -> None:
    """Take the advisory locks of these senders, in sorted order so two batches sharing senders never deadlock."""
    names = sorted({f"sender:{client_id}:{key}" for key in keys})
    with connection.cursor() as cursor:
        cursor.execute(
            # Volatile functions run after the sort (PostgreSQL >= 9.6): the locks are taken in array order.
            "SELECT pg_advisory_xact_lock(hashtextextended(name, 0)) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n",
            [names],
        )


class _ContactBook:
    """The client's contacts for a batch of senders, read in one query and kept as they are created."""

    def __init__(self, client: Client, identities: list[PhoneIdentity], bsuids: list[str]) -> None:
        self.client = client
        self.by_key: dict[str, Contact] = {}
        self.by_bsuid: dict[str, Contact] = {}
        keys = sorted({i.key for i in identities})
        wanted_bsuids = sorted({b for b in bsuids if b})
        if keys or wanted_bsuids:
            condition = Q(identity_key__in=keys)
            if wanted_bsuids:
                condition |= Q(bsuid__in=wanted_bsuids)
            for contact in Contact.objects.filter(condition, client=client).order_by():
                self._remember(contact)

    def _remember(self, contact: Contact) -> None:
        if contact.identity_key:
            self.by_key.setdefault(contact.identity_key, contact)
        if contact.bsuid:
            self.by_bsuid.setdefault(contact.bsuid, contact)

    def identify(self, sender: InboundSender, identity: PhoneIdentity | None) -> Contact:
        contact = self.by_key.get(identity.key) if identity is not None else None
        if contact is None and sender.bsuid:
            contact = self.by_bsuid.get(sender.bsuid)
        contact = self._create_or_update(contact, sender, identity)
        self._remember(contact)
        return contact

    def _create_or_update(
        self, contact: Contact | None, sender: InboundSender, identity: PhoneIdentity | None
    ) -> Contact:
        client = self.client
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
            if sender.bsuid not in self.by_bsuid:  # the book read every contact with this id
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


def contact_identify(*, client: Client, sender: InboundSender, identity: PhoneIdentity | None = None) -> Contact:
    """The client's contact for this sender, created on first contact; fills in what was missing.

    Matches the phone's identity key first (national variants are one person), then the business-scoped id."""
    identity = identity if identity is not None else _identity(sender)
    if identity is None and not sender.bsuid:
        raise InboundRejected(NO_SENDER)
    book = _ContactBook(client, [identity] if identity is not None else [], [sender.bsuid or ""])
    return book.identify(sender, identity)


def _conversation_reopen_or_open(
    *, number: WhatsAppNumber, contact: Contact, at
) -> tuple[Conversation, str, int | None]:
    """For a contact without an open conversation on the number: a recently resolved one reopened, or a new one.

    Also returns who had a reopened conversation, so they can get it back."""
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


def inbound_message_receive(*, number: WhatsAppNumber, message: InboundMessage) -> ReceiveResult:
    """Store one inbound message exactly once and route its conversation. Safe to call again with the same one."""
    (result,) = inbound_messages_receive(number=number, messages=[message])
    if isinstance(result, Exception):
        raise result
    return result


@dataclass
class _Touched:
    """A conversation the batch wrote to, and what to do with it before the commit."""

    conversation: Conversation
    action: str
    previous_agent: int | None
    fields: set[str]


@transaction.atomic
def inbound_messages_receive(
    *, number: WhatsAppNumber, messages: list[InboundMessage]
) -> list[ReceiveResult | InboundRejected]:
    """Store inbound messages of one number exactly once each and route their conversations, in one transaction.

    The result has one entry per message, in order: what was stored (or found already stored), or why the
    message was rejected. The senders' locks are taken first, in sorted order; then a handful of queries serve
    the whole batch (duplicates, contacts, open conversations, quoted messages, one insert). Any other error
    rolls the whole batch back; callers that must isolate a poison message retry one by one."""
    results: list[ReceiveResult | InboundRejected | None] = [None] * len(messages)
    identities: list[PhoneIdentity | None] = []
    accepted: list[int] = []
    for index, message in enumerate(messages):
        identity = _identity(message.sender)
        identities.append(identity)
        if identity is None and not message.sender.bsuid:
            results[index] = InboundRejected(NO_SENDER)
        else:
            accepted.append(index)
    if not accepted:
        return results  # type: ignore[return-value]
    _lock_senders(
        number.client_id,
        [identities[i].key if identities[i] is not None else messages[i].sender.bsuid or "" for i in accepted],
    )

    stored_by_wamid: dict[str, Message] = {
        m.provider_message_id: m
        for m in Message.objects.filter(
            number=number, provider_message_id__in={messages[i].provider_message_id for i in accepted}
        )
        .select_related("conversation")
        .order_by()
    }
    fresh = [i for i in accepted if messages[i].provider_message_id not in stored_by_wamid]
    book = _ContactBook(
        number.client,
        [identities[i] for i in fresh if identities[i] is not None],
        [messages[i].sender.bsuid or "" for i in fresh],
    )
    contacts: dict[int, Contact] = {}
    for i in fresh:
        contacts[i] = book.identify(messages[i].sender, identities[i])
    open_conversations = {
        c.contact_id: c
        for c in Conversation.objects.select_for_update()
        .filter(number=number, contact_id__in={c.pk for c in contacts.values()})
        .exclude(status=Conversation.Status.RESOLVED)
        .order_by()
    }
    quoted_wamids = {messages[i].quoted_provider_id for i in fresh if messages[i].quoted_provider_id}
    quoted_pks = (
        dict(
            Message.objects.filter(number=number, provider_message_id__in=quoted_wamids)
            .order_by()
            .values_list("provider_message_id", "pk")
        )
        if quoted_wamids
        else {}
    )

    touched: dict[int, _Touched] = {}
    rows: list[tuple[int, Message]] = []
    now = timezone.now()
    for i in fresh:
        message = messages[i]
        if message.provider_message_id in stored_by_wamid:  # the same message twice in this batch
            continue
        contact = contacts[i]
        entry = touched.get(contact.pk)
        if entry is None:
            conversation = open_conversations.get(contact.pk)
            if conversation is not None:
                entry = _Touched(conversation, "existing", None, set())
            else:
                at = min(message.timestamp, now)
                entry = _Touched(*_conversation_reopen_or_open(number=number, contact=contact, at=at), set())
            touched[contact.pk] = entry
        stored = _message_row(number, entry.conversation, message, quoted_pks)
        stored_by_wamid[message.provider_message_id] = stored
        rows.append((i, stored))
        _conversation_note_message(entry, message, number)

    Message.objects.bulk_create([row for _, row in rows])
    in_batch_quotes = [
        row for _, row in rows if row.quoted_id is None and stored_by_wamid.get(row.quoted_provider_message_id)
    ]
    for row in in_batch_quotes:  # a reply to a message that arrived in the same batch
        row.quoted_id = stored_by_wamid[row.quoted_provider_message_id].pk
    if in_batch_quotes:
        Message.objects.bulk_update(in_batch_quotes, ["quoted"])
    changed = [entry.conversation for entry in touched.values() if entry.fields]
    if changed:  # one UPDATE for all: every object is current (read under lock), so writing all fields is exact
        for conversation in changed:
            conversation.updated_at = now
        fields = sorted({name for entry in touched.values() for name in entry.fields})
        Conversation.objects.bulk_update(changed, [*fields, "updated_at"])
    # The AI assistant first (docs/ai.md): a conversation it answers is not handed out.
    # A reopened conversation goes back to the agent who had it, as without an assistant.
    by_conversation: dict[int, list[Message]] = {}
    for _i, row in rows:
        if not touched[row.conversation.contact_id].previous_agent:
            by_conversation.setdefault(row.conversation.contact_id, []).append(row)
    conversations_ai_on_inbound(
        number=number,
        received=[(touched[key].conversation, found) for key, found in by_conversation.items()],
        now=now,
    )
    for entry in touched.values():
        conversation = entry.conversation
        if conversation.status == Conversation.Status.PENDING and conversation.queue_id:
            conversation_assign_by_policy(conversation=conversation, preferred_user_id=entry.previous_agent)

    stored_rows = dict(rows)
    announced: set[int] = set()  # a conversation is "created" or "reopened" by its first message only
    received: list[tuple[Message, Contact, str]] = []
    for i in accepted:
        message = messages[i]
        row = stored_rows.get(i)
        if row is not None:
            entry = touched[row.conversation.contact_id]
            action = "existing" if row.conversation_id in announced else entry.action
            announced.add(row.conversation_id)
            publish_message_created(row, entry.conversation, action)
            results[i] = ReceiveResult(row, True, action)
            received.append((row, contacts[i], action))
        else:
            results[i] = ReceiveResult(stored_by_wamid[message.provider_message_id], False, "existing")
    if received and webhook_event_wanted(client_id=number.client_id, type=WebhookEventType.MESSAGE_RECEIVED):
        webhook_events_emit_many(
            client_id=number.client_id,
            events=[
                (WebhookEventType.MESSAGE_RECEIVED, _received_data(row, contact, action))
                for row, contact, action in received
            ],
        )
    if rows:
        from campaigns.services.recipients import recipients_mark_replied

        # A reply to a campaign is an ordinary conversation; the campaign counts it as replied.
        recipients_mark_replied(number_id=number.pk, contact_ids=sorted({contacts[i].pk for i, _ in rows}), at=now)
    _contacts_opt_out(
        [(contacts[i], row) for i, row in rows if row.kind == Message.Kind.TEXT and is_opt_out(row.body)], at=now
    )
    return results  # type: ignore[return-value]


def _received_data(row: Message, contact: Contact, action: str) -> dict:
    """The `message.received` event webhook's data (docs/webhooks.md)."""
    return {
        "message": row.pk,
        "conversation": row.conversation_id,
        "conversation_action": action,
        "number": row.number_id,
        "contact": {"id": contact.pk, "name": contact.name, "phone": contact.phone},
        "kind": row.kind,
        "body": row.body,
        "media": {"mime_type": row.media_mime_type, "filename": row.media_filename} if row.media_id else None,
        "timestamp": row.provider_timestamp,
    }


def _contacts_opt_out(found: list[tuple[Contact, Message]], *, at) -> None:
    """Customers who wrote an opt-out keyword (campaigns/optout.py) get no more campaigns; each is told once, in
    the conversation where they asked (the confirmation is an ordinary system message any agent sees)."""
    from conversations.services.outbound import OutboundRefused, message_send

    seen: set[int] = set()
    for contact, row in found:
        if contact.pk in seen or contact.opted_out_at is not None:
            continue
        seen.add(contact.pk)
        if not Contact.objects.filter(pk=contact.pk, opted_out_at__isnull=True).update(opted_out_at=at, updated_at=at):
            continue  # opted out meanwhile: already confirmed
        contact.opted_out_at = at
        logger.info("contact %s opted out of campaigns (message %s)", contact.pk, row.pk)
        if not settings.OPT_OUT_CONFIRMATION.strip():
            continue
        try:
            message_send(
                conversation=row.conversation, text=settings.OPT_OUT_CONFIRMATION, origin=Message.Origin.SYSTEM
            )
        except OutboundRefused as exc:  # the opt-out stands; only the confirmation could not go
            logger.warning("opt-out confirmation to contact %s not sent: %s", contact.pk, exc.message)


def _message_row(
    number: WhatsAppNumber, conversation: Conversation, message: InboundMessage, quoted_pks: dict[str, int]
) -> Message:
    media = message.media
    quoted_id = message.quoted_provider_id or ""
    return Message(
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
        quoted_id=quoted_pks.get(quoted_id) if quoted_id else None,
        quoted_provider_message_id=quoted_id[:128],
        error_code=message.error_code[:32],
        error_reason=message.error_reason[:500],
    )


def _conversation_note_message(entry: _Touched, message: InboundMessage, number: WhatsAppNumber) -> None:
    """What a customer's message changes on its conversation (saved once per conversation per batch)."""
    conversation = entry.conversation
    if conversation.last_message_at is None or message.timestamp > conversation.last_message_at:
        conversation.last_message_at = message.timestamp
        entry.fields.add("last_message_at")
    if conversation.last_inbound_at is None or message.timestamp > conversation.last_inbound_at:
        conversation.last_inbound_at = message.timestamp  # opens (or extends) the 24-hour window
        entry.fields.add("last_inbound_at")
    conversation.unread_count += 1
    entry.fields.add("unread_count")
    if conversation.snoozed_until is not None:
        conversation.snoozed_until = None  # the customer wrote: back in the inbox
        entry.fields.add("snoozed_until")
    if conversation.status == Conversation.Status.PENDING and conversation.queue_id is None and number.queue_id:
        conversation.queue_id = number.queue_id
        entry.fields.add("queue")
