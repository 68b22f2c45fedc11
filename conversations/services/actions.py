"""What agents do to a conversation from the CRM views (docs/crm.md): take, transfer, resolve, reopen, snooze,
write a note, reply, hand back to the AI assistant, mark read; and what an integration does through the REST API
(docs/api.md): send. One function per action, each in one transaction, events after commit. Taking, transferring
or replying stops the AI assistant (docs/ai.md).

These functions check the state of the conversation, not who asks: the views decide with `crm.access` whether
the user may act, and only then call here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message
from conversations.services.ai import ai_hand_off, ai_may_answer, ai_resume, ai_settings_for, ai_stop_for_agent
from conversations.services.live import publish_conversation_updated, publish_message_created
from conversations.services.outbound import Template, message_send
from crm.models import ApiToken, WebhookEventType
from crm.webhooks import webhook_events_emit
from queues.models import Queue, QueueMembership
from queues.services import conversation_assign, conversation_assign_by_policy, queue_dispatch_waiting

logger = logging.getLogger(__name__)

MAX_NOTE_CHARS = 4096
MAX_SNOOZE = timedelta(days=366)


class ConversationActionError(Exception):
    """The action cannot be done in the conversation's current state; nothing was changed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _locked(conversation: Conversation, *, by: AbstractBaseUser, supervising: bool) -> Conversation:
    """The conversation, locked, as it is now. Unless `by` acts as staff or as a supervisor of its queue
    (`supervising`), it must still be theirs or nobody's: the view's check ran before the lock, and a colleague
    (or the assignment policy) may have taken it since."""
    locked = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("queue", "number", "contact", "assigned_to")
        .get(pk=conversation.pk)
    )
    if not supervising and locked.assigned_to_id not in (None, by.pk):
        raise ConversationActionError(
            "assigned_elsewhere",
            _("%(name)s has this conversation now; ask a supervisor.") % {"name": _name(locked.assigned_to)},
        )
    return locked


def _internal(conversation: Conversation, text: str, by: AbstractBaseUser | None, *, kind: str, origin: str) -> Message:
    """A line of the history only agents see: direction `int`, so no engine or sweeper ever sends it."""
    message = Message.objects.create(
        conversation=conversation,
        number_id=conversation.number_id,
        direction=Message.Direction.INTERNAL,
        origin=origin,
        kind=kind,
        body=text,
        status=Message.Status.RECEIVED,
        status_at=timezone.now(),
        sent_by=by,
    )
    publish_message_created(message, conversation)
    return message


def _notice(conversation: Conversation, text: str, by: AbstractBaseUser | None) -> Message:
    """Who took it, where it went, why."""
    return _internal(conversation, text, by, kind=Message.Kind.SYSTEM, origin=Message.Origin.SYSTEM)


def _hand_out_after_commit(queue_id: int | None) -> None:
    """An agent of the queue has room again: give waiting customers to whoever has room, oldest first."""
    if queue_id is not None:
        transaction.on_commit(lambda: queue_dispatch_waiting(queue_id=queue_id))


def _name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _refuse_resolved(conversation: Conversation) -> None:
    if conversation.status == Conversation.Status.RESOLVED:
        raise ConversationActionError("resolved", _("The conversation is resolved: reopen it first."))


@transaction.atomic
def conversation_take(*, conversation: Conversation, user: AbstractBaseUser, supervising: bool = False) -> Conversation:
    """The user assigns the conversation to themselves (an agent picking from the queue, or a supervisor
    stepping in). Capacity is not checked: taking is a deliberate choice."""
    conversation = _locked(conversation, by=user, supervising=supervising)
    _refuse_resolved(conversation)
    if conversation.assigned_to_id == user.pk:
        return conversation
    ai_stop_for_agent(conversation=conversation, reason=Conversation.AIStopReason.AGENT_TOOK)
    conversation_assign(conversation=conversation, user_id=user.pk, assigned_by=user, reason="taken")
    _notice(conversation, _("%(name)s took the conversation.") % {"name": _name(user)}, user)
    return conversation


@transaction.atomic
def conversation_transfer(
    *,
    conversation: Conversation,
    by: AbstractBaseUser,
    to_user: AbstractBaseUser | None = None,
    to_queue: Queue | None = None,
    supervising: bool = False,
) -> Conversation:
    """Hand the conversation to another agent, to another queue, or to an agent of another queue.

    To a queue alone: it waits there (pending) and the assignment policy picks an agent. To an agent: they must
    be an active member of the (new) queue."""
    if to_user is None and to_queue is None:
        raise ConversationActionError("invalid", _("Choose an agent or a queue to transfer to."))
    conversation = _locked(conversation, by=by, supervising=supervising)
    _refuse_resolved(conversation)
    queue = to_queue or conversation.queue
    if to_queue is not None and (to_queue.client_id != conversation.client_id or not to_queue.is_active):
        raise ConversationActionError("invalid_queue", _("That queue is not an active queue of this business."))
    if to_user is not None:
        member = (
            queue is not None
            and to_user.is_active
            and QueueMembership.objects.filter(queue=queue, user=to_user).exists()
        )
        if not member:
            raise ConversationActionError(
                "invalid_agent",
                _("%(agent)s is not an agent of the queue %(queue)s.")
                % {"agent": _name(to_user), "queue": queue.name if queue else "-"},
            )
    old_queue_id, old_agent_id = conversation.queue_id, conversation.assigned_to_id
    if to_user is None and queue.pk == old_queue_id:
        raise ConversationActionError("same_queue", _("The conversation is already in that queue."))
    ai_stop_for_agent(conversation=conversation, reason=Conversation.AIStopReason.AGENT_TOOK)
    if not conversation.ai_stop_reason:  # moved by people on purpose: no assistant takes it over after this
        conversation.ai_stop_reason = Conversation.AIStopReason.AGENT_TOOK
        conversation.save(update_fields=["ai_stop_reason"])
    if queue is not None and queue.pk != old_queue_id:
        conversation.queue = queue
        conversation.status = Conversation.Status.PENDING
        conversation.assigned_to = None
        conversation.waiting_since = timezone.now()
        conversation.save(update_fields=["queue", "status", "assigned_to", "waiting_since", "updated_at"])
        publish_conversation_updated(
            conversation, by=by, action="transferred", left_queue_id=old_queue_id, left_agent_id=old_agent_id
        )
    if to_user is not None:
        if conversation.assigned_to_id != to_user.pk:
            conversation_assign(conversation=conversation, user_id=to_user.pk, assigned_by=by, reason="transfer")
        text = _("%(by)s transferred the conversation to %(agent)s.") % {"by": _name(by), "agent": _name(to_user)}
    else:
        text = _("%(by)s transferred the conversation to the queue %(queue)s.") % {"by": _name(by), "queue": queue}
    _notice(conversation, text, by)
    if to_user is None:
        conversation_assign_by_policy(conversation=conversation)
    if old_agent_id and old_queue_id and conversation.assigned_to_id != old_agent_id:
        _hand_out_after_commit(old_queue_id)  # its agent has room for someone waiting there
    logger.info("conversation %s transferred by user %s (queue %s → %s)", conversation.pk, by.pk, old_queue_id, queue)
    return conversation


@transaction.atomic
def conversation_resolve(
    *, conversation: Conversation, by: AbstractBaseUser, supervising: bool = False
) -> Conversation:
    conversation = _locked(conversation, by=by, supervising=supervising)
    if conversation.status == Conversation.Status.RESOLVED:
        return conversation
    conversation.status = Conversation.Status.RESOLVED
    conversation.resolved_at = timezone.now()
    conversation.snoozed_until = None
    conversation.unread_count = 0
    conversation.save(update_fields=["status", "resolved_at", "snoozed_until", "unread_count", "updated_at"])
    _notice(conversation, _("%(name)s resolved the conversation.") % {"name": _name(by)}, by)
    publish_conversation_updated(conversation, by=by, action="resolved")
    webhook_events_emit(
        client_id=conversation.client_id,
        type=WebhookEventType.CONVERSATION_RESOLVED,
        data={
            "conversation": conversation.pk,
            "number": conversation.number_id,
            "contact": conversation.contact_id,
            "queue": conversation.queue_id,
            "agent": conversation.assigned_to_id,
            "by": {"id": by.pk, "username": by.get_username(), "name": by.get_full_name()},
            "resolved_at": conversation.resolved_at,
        },
    )
    _hand_out_after_commit(conversation.queue_id)
    return conversation


@transaction.atomic
def conversation_reopen(*, conversation: Conversation, by: AbstractBaseUser, supervising: bool = False) -> Conversation:
    """A resolved conversation is open again: with its agent when it had one, else waiting in its queue."""
    conversation = _locked(conversation, by=by, supervising=supervising)
    if conversation.status != Conversation.Status.RESOLVED:
        return conversation
    newer = (
        Conversation.objects.filter(number_id=conversation.number_id, contact_id=conversation.contact_id)
        .exclude(status=Conversation.Status.RESOLVED)
        .values_list("pk", flat=True)
        .first()
    )
    if newer is not None:
        raise ConversationActionError(
            "newer_open",
            _("This customer already has an open conversation on this number (#%(id)s): continue there.")
            % {"id": newer},
        )
    now = timezone.now()
    conversation.resolved_at = None
    if conversation.assigned_to_id:
        conversation.status = Conversation.Status.OPEN
    else:
        conversation.status = Conversation.Status.PENDING
        conversation.waiting_since = now
    try:
        with transaction.atomic():
            conversation.save(update_fields=["status", "resolved_at", "waiting_since", "updated_at"])
    except IntegrityError:  # a customer message opened a new one meanwhile
        raise ConversationActionError(
            "newer_open", _("This customer already has an open conversation on this number.")
        ) from None
    _notice(conversation, _("%(name)s reopened the conversation.") % {"name": _name(by)}, by)
    publish_conversation_updated(conversation, by=by, action="reopened")
    if conversation.status == Conversation.Status.PENDING:
        conversation_assign_by_policy(conversation=conversation)
    return conversation


@transaction.atomic
def conversation_snooze(
    *, conversation: Conversation, by: AbstractBaseUser, until: datetime | None, supervising: bool = False
) -> Conversation:
    """Hide the conversation from the inbox until `until` (None: show it again now). A customer message brings
    it back earlier."""
    conversation = _locked(conversation, by=by, supervising=supervising)
    _refuse_resolved(conversation)
    if until is not None and until <= timezone.now():
        raise ConversationActionError("invalid", _("Choose a time in the future."))
    if until is not None and until > timezone.now() + MAX_SNOOZE:
        raise ConversationActionError("invalid", _("Snooze for at most a year."))
    conversation.snoozed_until = until
    conversation.save(update_fields=["snoozed_until", "updated_at"])
    if until is None:
        text = _("%(name)s brought the conversation back to the inbox.") % {"name": _name(by)}
    else:
        local = timezone.localtime(until)
        text = _("%(name)s snoozed the conversation until %(until)s.") % {
            "name": _name(by),
            "until": local.strftime("%Y-%m-%d %H:%M"),
        }
    _notice(conversation, text, by)
    snoozed_until = until.isoformat() if until else None
    publish_conversation_updated(conversation, by=by, action="snoozed", snoozed_until=snoozed_until)
    return conversation


@transaction.atomic
def conversation_note_add(
    *, conversation: Conversation, by: AbstractBaseUser, text: str, supervising: bool = False
) -> Message:
    """An internal note: stored with the history, shown to agents, never sent to the customer."""
    text = text.strip()
    if not text:
        raise ConversationActionError("empty", _("The note is empty."))
    if "\x00" in text:
        raise ConversationActionError("invalid", _("The note contains a NUL character."))
    if len(text) > MAX_NOTE_CHARS:
        raise ConversationActionError("too_long", _("A note has at most %(n)s characters.") % {"n": MAX_NOTE_CHARS})
    conversation = _locked(conversation, by=by, supervising=supervising)
    return _internal(conversation, text, by, kind=Message.Kind.NOTE, origin=Message.Origin.AGENT)


@transaction.atomic
def conversation_reply(
    *,
    conversation: Conversation,
    by: AbstractBaseUser,
    text: str | None = None,
    template: Template | None = None,
    reply_to: Message | None = None,
    supervising: bool = False,
) -> Message:
    """An agent's answer. Answering a conversation nobody has takes it; either both happen or neither.

    Raises `OutboundRefused` (nothing written) when it cannot be sent."""
    current = _locked(conversation, by=by, supervising=supervising)
    _refuse_resolved(current)
    ai_stop_for_agent(conversation=current, reason=Conversation.AIStopReason.AGENT_REPLIED)
    if current.assigned_to_id is None:
        conversation_take(conversation=current, user=by, supervising=supervising)
    message = message_send(conversation=current, text=text, template=template, sent_by=by, reply_to=reply_to)
    conversation_mark_read(conversation=current)
    return message


@transaction.atomic
def conversation_send_for_integration(
    *,
    conversation: Conversation,
    by: ApiToken,
    text: str | None = None,
    template: Template | None = None,
    reply_to: Message | None = None,
) -> Message:
    """An integration's message through an API token `by`, sent as itself (origin `api`, sent by the token's
    user). Unlike an agent's reply it assigns nobody: the token's user is in no queue, and a conversation given to
    it would reach no person. If the AI assistant was answering, it hands over as when an agent steps in (reason
    agent_replied): the conversation waits in its queue and the policy gives it to an agent. The customer's
    messages count as read. All or nothing.

    Raises `ConversationActionError` (resolved) or `OutboundRefused` (nothing written)."""
    current = Conversation.objects.select_for_update(of=("self",)).select_related("number").get(pk=conversation.pk)
    _refuse_resolved(current)
    if current.status == Conversation.Status.AI:
        ai_hand_off(
            conversation=current,
            reason=Conversation.AIStopReason.AGENT_REPLIED,
            detail=_("%(name)s sent a message through the API.") % {"name": by.name},
        )
    message = message_send(
        conversation=current,
        text=text,
        template=template,
        origin=Message.Origin.API,
        sent_by=by.user,
        reply_to=reply_to,
    )
    conversation_mark_read(conversation=current)
    return message


@transaction.atomic
def conversation_ai_resume(
    *, conversation: Conversation, by: AbstractBaseUser, supervising: bool = False
) -> Conversation:
    """Hand the conversation back to the AI assistant (docs/ai.md): nobody's again, the assistant answers what
    the customer writes, its reply count restarted; the customer's last message, if unanswered, at once."""
    conversation = _locked(conversation, by=by, supervising=supervising)
    _refuse_resolved(conversation)
    if conversation.status == Conversation.Status.AI:
        return conversation
    row = ai_settings_for(conversation)
    if row is None or not row.enabled:
        raise ConversationActionError(
            "ai_not_enabled", _("No AI assistant is turned on for this conversation's number or queue.")
        )
    if not ai_may_answer(row, conversation.number, timezone.now()):
        raise ConversationActionError(
            "ai_off_hours",
            _("The AI assistant does not answer at this hour (%(hours)s).") % {"hours": row.get_hours_display()},
        )
    previous_agent = ai_resume(conversation=conversation, by=by)
    _notice(conversation, _("%(name)s handed the conversation back to the AI assistant.") % {"name": _name(by)}, by)
    if previous_agent:
        _hand_out_after_commit(conversation.queue_id)  # its agent has room for someone waiting
    logger.info("conversation %s handed back to the AI by user %s", conversation.pk, by.pk)
    return conversation


def conversation_mark_read(*, conversation: Conversation) -> bool:
    """Its agent opened it: no unread customer messages left. True when the count changed."""
    return Conversation.objects.filter(pk=conversation.pk, unread_count__gt=0).update(unread_count=0) == 1
