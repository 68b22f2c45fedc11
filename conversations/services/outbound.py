"""Sending: the one service every outbound message goes through (docs/outbound.md).

Agent replies, AI replies, campaign messages and API sends all call `message_send`, which checks what can be
checked before anything is written (number active, engine able to send, contact reachable and not opted out,
the 24-hour customer-service window) and refuses with `OutboundRefused` (a code and a sentence) otherwise. It
writes the message as `pending` and hands its id to a worker after commit.

`message_deliver` (the worker's side) sends at most once: it moves the message `pending → sending` in its own
transaction before calling the provider, so a second delivery of the same task finds it `sending` and does
nothing. The provider's id is recorded after the call, under the same lock as early statuses. A crash between
the call and the record leaves the message `sending`; the sweeper turns it `unknown` for a human to decide,
never a blind re-send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Contact, Conversation, Message, MessageTemplate
from conversations.services.live import publish_message_created
from conversations.services.statuses import lock_provider_id, message_status_move, message_unmatched_statuses_apply
from sessions.engines import EngineUnavailable, connection_engine_names
from sessions.engines.base import NOT_CONNECTED, OutboundContent, OutboundTemplate, OutboundText, SendError
from sessions.governor import governor_wait, number_interval
from sessions.models import SessionState, WhatsAppNumber
from sessions.selectors import SendRules, number_can_send_here, number_send_queue, number_send_rules
from sessions.services import number_send

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 4096  # Meta's limit for a text message body
MAX_TEMPLATE_VALUE = 1024  # Meta's limit for a body parameter of a template
UNKNOWN_REASON = (
    "Interrupted while sending: the message may or may not have reached WhatsApp. Check with the customer "
    "before sending it again."
)


class OutboundRefused(Exception):
    """The message cannot be sent; nothing was written. `code` is stable for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Template:
    """An approved WhatsApp template: its name, language code and Meta's component objects (parameters)."""

    name: str
    language: str
    components: list[dict[str, Any]] = field(default_factory=list)


def template_to_send(*, template: MessageTemplate, values: Sequence[str]) -> Template:
    """`template` with `values` for the placeholders of its body, {{1}} first, as Meta's components: what an
    agent's composer and an API send hand to `message_send`. The caller has checked the values (one per
    placeholder, each within MAX_TEMPLATE_VALUE)."""
    components = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}] if values else []
    return Template(name=template.name, language=template.language, components=components)


def message_send(
    *,
    conversation: Conversation,
    text: str | None = None,
    template: Template | None = None,
    origin: str = Message.Origin.AGENT,
    sent_by: AbstractBaseUser | None = None,
    reply_to: Message | None = None,
    deliver_here: bool = False,
    slot_taken: bool = False,
) -> Message:
    """Queue `text` or `template` to the conversation's contact from the conversation's number.

    Returns the stored message (status `pending`); its delivery happens on a worker after commit. Raises
    `OutboundRefused` when it cannot be sent; then nothing is written.

    `deliver_here`: the caller has already reserved the governor's slot and hands the message to the provider
    itself right after commit, with `message_hand_over` (campaign dispatch). The message is written `sending`,
    not queued: if the caller dies before recording the result, the sweeper marks it unknown, never re-sends.
    `slot_taken` (without `deliver_here`): the caller reserved the governor's slot but another process holds the
    number's connection; the worker that sends it does not reserve a second one."""
    if (text is None) == (template is None):
        raise OutboundRefused("invalid", _("Send either a text or a template, not both or neither."))
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update(of=("self",))
            .select_related("number", "contact")
            .get(pk=conversation.pk)
        )
        _check_sendable(conversation, text=text, template=template, origin=origin)
        now = timezone.now()
        quoted = reply_to if reply_to is not None and reply_to.conversation_id == conversation.pk else None
        if template is not None:
            kind, body = Message.Kind.TEMPLATE, template_summary(template)
            payload = {
                "template": {
                    "name": template.name,
                    "language": {"code": template.language},
                    "components": template.components,
                }
            }
        else:
            kind, body, payload = Message.Kind.TEXT, text.strip(), {"text": {"body": text.strip()}}
        message = Message.objects.create(
            conversation=conversation,
            number=conversation.number,
            direction=Message.Direction.OUTBOUND,
            origin=origin,
            kind=kind,
            body=body,
            status=Message.Status.SENDING if deliver_here else Message.Status.PENDING,
            status_at=now,
            payload=payload,
            quoted=quoted,
            quoted_provider_message_id=(quoted.provider_message_id or "") if quoted else "",
            sent_by=sent_by,
        )
        conversation.last_message_at = now
        conversation.save(update_fields=["last_message_at", "updated_at"])
        publish_message_created(message, conversation)
        if not deliver_here:
            transaction.on_commit(lambda: _enqueue(message.pk, conversation.number, slot_taken=slot_taken))
    return message


def conversation_for_outbound(*, number: WhatsAppNumber, contact: Contact) -> Conversation:
    """The conversation a message the business starts (a campaign's) goes into: the contact's open one on the
    number; else the one resolved within CONVERSATION_REOPEN_WINDOW; else a new one, created resolved. Nobody
    has to answer a message nobody asked for: only when the customer replies does the conversation reopen and
    reach its queue, with the campaign's message in its history."""
    return conversations_for_outbound(number=number, contacts=[contact], now=timezone.now())[contact.pk]


def conversations_for_outbound(
    *, number: WhatsAppNumber, contacts: list[Contact], now: datetime
) -> dict[int, Conversation]:
    """`conversation_for_outbound` for many contacts at once (two queries), by contact id."""
    window = now - timedelta(seconds=settings.CONVERSATION_REOPEN_WINDOW)
    found: dict[int, Conversation] = {}
    candidates = (
        Conversation.objects.filter(number=number, contact_id__in={c.pk for c in contacts})
        .filter(~Q(status=Conversation.Status.RESOLVED) | Q(resolved_at__gte=window))
        .order_by("contact_id", "-resolved_at", "-pk")
    )
    for conversation in candidates:
        current = found.get(conversation.contact_id)
        if current is None or (
            current.status == Conversation.Status.RESOLVED and conversation.status != Conversation.Status.RESOLVED
        ):
            found[conversation.contact_id] = conversation
    missing = [c for c in {c.pk: c for c in contacts}.values() if c.pk not in found]
    created = Conversation.objects.bulk_create(
        Conversation(
            client_id=number.client_id,
            number=number,
            contact=contact,
            queue_id=number.queue_id,
            status=Conversation.Status.RESOLVED,
            resolved_at=now,
        )
        for contact in missing
    )
    found.update({conversation.contact_id: conversation for conversation in created})
    return found


def _check_sendable(conversation: Conversation, *, text: str | None, template: Template | None, origin: str) -> None:
    rules = check_number_sendable(conversation.number, template=template)
    check_contact_sendable(conversation.contact, origin=origin, template=template)
    if template is not None:
        check_template(template)
        return
    check_text(text)
    if rules.reply_window is not None:
        last = conversation.last_inbound_at
        if last is None:
            raise OutboundRefused(
                "window_closed",
                _(
                    "The customer has not written on this number yet: only an approved template can start the "
                    "conversation."
                ),
            )
        if last < timezone.now() - rules.reply_window:
            hours = int(rules.reply_window / timedelta(hours=1))
            raise OutboundRefused(
                "window_closed",
                _(
                    "More than %(hours)s hours since the customer last wrote (at %(at)s UTC): only an approved "
                    "template can be sent."
                )
                % {"hours": hours, "at": f"{last:%Y-%m-%d %H:%M}"},
            )


def check_number_sendable(number: WhatsAppNumber, *, template: Template | None) -> SendRules:
    """The number can send (and send templates, when one is given): its engine's rules, or OutboundRefused."""
    if not number.is_active:
        raise OutboundRefused(
            "number_inactive", _("The number %(number)s is inactive: activate it to send.") % {"number": number.alias}
        )
    try:
        rules = number_send_rules(number=number)
    except EngineUnavailable as exc:
        raise OutboundRefused(
            "engine_unavailable", _("%(reason)s (number %(number)s).") % {"reason": exc, "number": number.alias}
        ) from None
    if template is not None and not rules.supports_templates:
        raise OutboundRefused(
            "templates_unsupported", _("The number %(number)s cannot send templates.") % {"number": number.alias}
        )
    return rules


def check_contact_sendable(contact: Contact, *, origin: str, template: Template | None) -> None:
    """The contact can be written to, and has not opted out of what this is (a campaign or a template)."""
    if not contact_address(contact):
        raise OutboundRefused("no_address", _("The contact has no WhatsApp number or id to write to."))
    if contact.opted_out_at is not None and (origin == Message.Origin.CAMPAIGN or template is not None):
        raise OutboundRefused(
            "opted_out",
            _("The contact opted out on %(at)s UTC: no campaign or template messages.")
            % {"at": f"{contact.opted_out_at:%Y-%m-%d %H:%M}"},
        )


def check_template(template: Template) -> None:
    if not template.name.strip() or not template.language.strip():
        raise OutboundRefused("invalid", _("A template needs its name and language code."))
    if not isinstance(template.components, list) or not all(isinstance(c, dict) for c in template.components):
        raise OutboundRefused("invalid", _("A template's components must be a list of objects."))


def check_text(text: str) -> None:
    if not text.strip():
        raise OutboundRefused("empty", _("The message is empty."))
    if "\x00" in text:
        raise OutboundRefused("invalid", _("The message contains a NUL character, which WhatsApp cannot carry."))
    if len(text.strip()) > MAX_TEXT_CHARS:
        raise OutboundRefused(
            "too_long",
            _("The message is %(n)s characters; at most %(max)s.") % {"n": len(text.strip()), "max": MAX_TEXT_CHARS},
        )


def contact_address(contact: Contact) -> str:
    """Where a message to `contact` goes: its WhatsApp id, its phone's digits, or its business-scoped id."""
    if contact.wa_id:
        return contact.wa_id
    if contact.phone:
        return contact.phone.lstrip("+")
    return contact.bsuid


def _recipient(conversation: Conversation) -> str:
    return contact_address(conversation.contact)


def template_summary(template: Template) -> str:
    values = [
        str(parameter.get("text") or parameter.get("payload") or "")
        for component in template.components
        for parameter in component.get("parameters", []) or []
        if isinstance(parameter, dict)
    ]
    summary = f"Template {template.name} ({template.language})"
    shown = [value for value in values if value]
    return f"{summary}: {', '.join(shown)}" if shown else summary


def _enqueue(
    message_id: int, number: WhatsAppNumber, *, countdown: float | None = None, slot_taken: bool = False
) -> None:
    """Hand the message to a worker: any worker for a stateless engine (Cloud API), the worker owning the
    number's connection otherwise (its own queue, consumed only by the lease holder; the message waits there
    while the number is offline)."""
    from conversations.tasks import message_deliver_task

    try:
        message_deliver_task.apply_async(
            (message_id,),
            {"slot_taken": True} if slot_taken else {},
            queue=number_send_queue(number=number),
            countdown=countdown,
        )
    except Exception:  # the broker is down: the message is stored as pending and the sweeper queues it again
        logger.warning("message %s stored but not queued; the outbound sweeper will pick it up", message_id)


def _content(message: Message) -> OutboundContent:
    to = _recipient(message.conversation)
    payload = message.payload or {}
    if message.kind == Message.Kind.TEMPLATE:
        template = payload.get("template", {})
        return OutboundTemplate(
            to=to,
            name=template.get("name", ""),
            language=(template.get("language") or {}).get("code", ""),
            components=template.get("components") or [],
        )
    return OutboundText(to=to, body=message.body, reply_to=message.quoted_provider_message_id or None)


def message_deliver(*, message_id: int, slot_taken: bool = False) -> str:
    """Hand one pending outbound message to its number's engine, at most once.

    Returns what happened: "accepted", "failed", "unknown" (the provider may or may not have sent it),
    "skipped" (not pending: already delivered, in flight, or gone), "waiting" (the number's connection is not
    online in this process: the message stays pending and is queued again when the number connects) or
    "throttled" (the number's governor has no slot soon enough: queued again for when it has)."""
    head = (
        Message.objects.filter(pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.PENDING)
        .select_related("conversation__contact", "number")
        .first()
    )
    if head is None:
        return "skipped"
    if not slot_taken and head.number.is_active and number_can_send_here(number=head.number):
        # Take the number's next slot (shared with campaigns and every other sender) before claiming the
        # message, so a crash while waiting leaves it pending, never unknown.
        # At least two intervals: a campaign holds its next slot at most half an interval ahead, so a reply always
        # gets the slot after it instead of being outrun by the campaign at every try.
        wait = max(settings.GOVERNOR_REPLY_MAX_WAIT, 2 * number_interval(head.number))
        slot = governor_wait(
            number=head.number, to=_recipient(head.conversation), max_wait=wait, deadline=time.monotonic() + wait
        )
        if not slot.granted:
            _enqueue(head.pk, head.number, countdown=slot.wait)
            return "throttled"
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation__contact", "number")
            .filter(pk=message_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if message is None or message.status != Message.Status.PENDING:
            return "skipped"
        if not message.number.is_active:
            message_status_move(
                message,
                status=Message.Status.FAILED,
                at=timezone.now(),
                error_code="number_inactive",
                error_reason=f"The number {message.number.alias} was deactivated before the message was sent.",
            )
            return "failed"
        if not number_can_send_here(number=message.number):
            return "waiting"
        message.status, message.status_at = Message.Status.SENDING, timezone.now()
        message.save(update_fields=["status", "status_at", "updated_at"])
    return message_hand_over(message=message)


def message_hand_over(*, message: Message) -> str:
    """Hand a message already marked `sending` to its number's engine and record what happened: "accepted",
    "failed", "unknown" or "waiting" (nothing reached a provider: pending again). `message` needs its number and
    its conversation's contact loaded. The caller took the governor's slot."""
    # The point of no return: from here on the message is never handed to a provider again.
    try:
        result = number_send(number=message.number, content=_content(message))
    except (SendError, EngineUnavailable) as exc:
        error = exc if isinstance(exc, SendError) else SendError("engine_unavailable", str(exc))
        if error.code == NOT_CONNECTED:
            # The connection went away between the check and the send: nothing reached a provider, so the
            # message is pending again and goes when the number next connects.
            Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
                status=Message.Status.PENDING, status_at=timezone.now()
            )
            return "waiting"
        status = Message.Status.UNKNOWN if error.ambiguous else Message.Status.FAILED
        with transaction.atomic():
            message_status_move(
                message, status=status, at=timezone.now(), error_code=error.code, error_reason=error.reason
            )
        logger.info("message %s %s: code %s", message.pk, status, error.code)
        return str(status)

    with transaction.atomic():
        lock_provider_id(message.number_id, result.provider_message_id)
        Message.objects.filter(pk=message.pk).update(provider_message_id=result.provider_message_id)
        message.provider_message_id = result.provider_message_id
        message_status_move(message, status=Message.Status.ACCEPTED, at=timezone.now())
        message_unmatched_statuses_apply(message=message)
    return "accepted"


def outbound_pending_enqueue(*, number: WhatsAppNumber) -> int:
    """Queue again every pending message of `number` (its connection just came online). Safe: a message is
    handed to the provider only while pending, once."""
    pending = list(
        Message.objects.filter(number=number, direction=Message.Direction.OUTBOUND, status=Message.Status.PENDING)
        .order_by("status_at", "pk")
        .values_list("pk", flat=True)
    )
    for message_id in pending:
        _enqueue(message_id, number)
    return len(pending)


def outbound_messages_sweep() -> dict[str, int]:
    """Beat's outbound housekeeping: queue again messages still `pending` after OUTBOUND_PENDING_REQUEUE_AFTER
    seconds (their task was lost; they never reached a provider, so this is safe), and mark `unknown` those
    `sending` for longer than OUTBOUND_SENDING_STALE_AFTER (a worker died mid-send: never re-sent blindly)."""
    now = timezone.now()
    pending = list(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.PENDING,
            status_at__lt=now - timedelta(seconds=settings.OUTBOUND_PENDING_REQUEUE_AFTER),
        )
        # A WhatsApp Web or sandbox number that is offline keeps its messages; they are queued when it connects.
        .exclude(Q(number__engine__in=connection_engine_names()) & ~Q(number__session__state=SessionState.CONNECTED))
        .select_related("number")
        .order_by("status_at")[:5000]
    )
    for message in pending:
        _enqueue(message.pk, message.number)

    stale = Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENDING,
        status_at__lt=now - timedelta(seconds=settings.OUTBOUND_SENDING_STALE_AFTER),
    ).select_related("conversation")[:1000]
    unknown = 0
    for message in stale:
        with transaction.atomic():
            unknown += message_status_move(
                message, status=Message.Status.UNKNOWN, at=now, error_code="interrupted", error_reason=UNKNOWN_REASON
            )
    if pending or unknown:
        logger.warning("outbound sweep: %s pending message(s) queued again, %s marked unknown", len(pending), unknown)
    return {"requeued": len(pending), "unknown": unknown}
