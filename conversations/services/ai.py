"""The AI assistant: answers first where staff turned it on, and hands over to people (docs/ai.md).

A customer message in a conversation nobody has, on a number or queue whose settings enable the assistant (and
within its hours), puts the conversation in status `ai`: it stays in its queue but is not handed out. Each such
message schedules `conversation_ai_reply` AI_DEBOUNCE_SECONDS later; only the task of the newest message
answers, so a quick burst gets one answer. The answer goes through the outbound service like any message
(governor, 24-hour window) as an AI message.

The assistant stops, and the conversation is routed and assigned as usual with a note saying why, when an agent
takes it or replies, the customer asks for a person (hand-off keywords), the model answers the hand-off marker,
the reply cap is reached, the AI service fails, or its settings no longer let it answer. Agents can turn it back
on for a conversation (`conversation_ai_resume`).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.optout import is_opt_out, normalized
from conversations.llm import Completion, LLMError, chat_complete
from conversations.models import AIActivity, AISettings, Conversation, Message
from conversations.services.live import publish_conversation_updated
from conversations.services.outbound import OutboundRefused, message_send
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

S = Conversation.Status
Why = Conversation.AIStopReason

DEFAULT_SYSTEM_PROMPT = (
    "You are the customer service assistant of {business} on WhatsApp. Answer the customer's questions "
    "kindly, briefly and precisely, as in a chat."
)
# Customer messages the assistant answers (not reactions, system notices or what the engine could not read).
ANSWERABLE = {
    Message.Kind.TEXT,
    Message.Kind.IMAGE,
    Message.Kind.VIDEO,
    Message.Kind.AUDIO,
    Message.Kind.VOICE,
    Message.Kind.DOCUMENT,
    Message.Kind.STICKER,
    Message.Kind.LOCATION,
    Message.Kind.CONTACTS,
    Message.Kind.INTERACTIVE,
    Message.Kind.BUTTON,
    Message.Kind.ORDER,
}
ANSWERABLE_INBOUND = {"direction": Message.Direction.INBOUND, "kind__in": sorted(ANSWERABLE)}
# Reasons told to the customer with the hand-off message (an agent stepping in speaks for themselves).
TELL_CUSTOMER = {Why.KEYWORD, Why.MODEL, Why.CAP, Why.FAILURE, Why.OFF}
# How long after a customer message an unanswered AI conversation is looked at again by the sweeper.
SWEEP_GRACE = timedelta(seconds=30)


# --- Settings --------------------------------------------------------------------------------------------------


def ai_settings_for(conversation: Conversation) -> AISettings | None:
    """The settings that apply to the conversation: its queue's when it has them, else its number's."""
    queue_ids = {conversation.queue_id} if conversation.queue_id else set()
    return _pick(_settings_by_scope(conversation.number_id, queue_ids), conversation)


def _settings_by_scope(number_id: int, queue_ids: set[int]) -> dict[tuple[str, int], AISettings]:
    """One query: the number's settings and those of these queues, by ("number" | "queue", id)."""
    condition = Q(number_id=number_id)
    if queue_ids:
        condition |= Q(queue_id__in=queue_ids)
    rows = AISettings.objects.filter(condition).order_by()
    return {("queue", r.queue_id) if r.queue_id else ("number", r.number_id): r for r in rows}


def _pick(scoped: dict[tuple[str, int], AISettings], conversation: Conversation) -> AISettings | None:
    if conversation.queue_id and ("queue", conversation.queue_id) in scoped:
        return scoped[("queue", conversation.queue_id)]
    return scoped.get(("number", conversation.number_id))


def ai_hours_open(row: AISettings, number: WhatsAppNumber, now: datetime) -> bool:
    """Whether the settings let the assistant answer at `now` (business hours in the number's time zone)."""
    if row.hours == AISettings.Hours.ALWAYS:
        return True
    local = timezone.localtime(now, number.zone)
    start, end, clock = row.opens_at, row.closes_at, local.time()
    if start < end:
        inside = local.isoweekday() in row.business_days and start <= clock < end
    else:  # crosses midnight: the evening belongs to today, the small hours to yesterday
        day = local.isoweekday() if clock >= start else (local.isoweekday() - 2) % 7 + 1
        inside = day in row.business_days and (clock >= start or clock < end)
    return inside if row.hours == AISettings.Hours.INSIDE else not inside


def ai_may_answer(row: AISettings | None, number: WhatsAppNumber, now: datetime) -> bool:
    return row is not None and row.enabled and ai_hours_open(row, number, now)


def handoff_keywords(row: AISettings | None) -> list[str]:
    own = [k.strip() for k in (row.handoff_keywords if row else "").split(",") if k.strip()]
    return own or list(settings.AI_HANDOFF_KEYWORDS)


def asks_for_person(text: str, keywords: list[str]) -> str:
    """The keyword (as configured) a customer's message contains as whole words, or ""."""
    words = f" {normalized(text)} "
    for keyword in keywords:
        wanted = normalized(keyword)
        if wanted and f" {wanted} " in words:
            return keyword
    return ""


def _handoff_message(row: AISettings | None) -> str:
    return ((row.handoff_message if row else "") or settings.AI_HANDOFF_MESSAGE).strip()


# --- Inbound ---------------------------------------------------------------------------------------------------


def conversations_ai_on_inbound(
    *, number: WhatsAppNumber, received: list[tuple[Conversation, list[Message]]], now: datetime
) -> None:
    """For the conversations a batch of customer messages just wrote to (locked by the caller, in its
    transaction): start the assistant, schedule its answer, or hand over. Called before the assignment policy,
    so a conversation the assistant takes is not handed out. The caller leaves out conversations that go back
    to the agent who had them."""
    candidates = [
        (c, rows)
        for c, rows in received
        if c.status in (S.PENDING, S.AI) and c.assigned_to_id is None and not c.ai_stop_reason
    ]
    if not candidates:
        return
    scoped = _settings_by_scope(number.pk, {c.queue_id for c, _rows in candidates if c.queue_id})
    if not scoped:
        return
    for conversation, rows in candidates:
        row = _pick(scoped, conversation)
        answerable = [m for m in rows if m.kind in ANSWERABLE]
        texts = [m.body for m in answerable if m.kind == Message.Kind.TEXT and m.body]
        if not answerable or (len(texts) == len(answerable) and all(is_opt_out(text) for text in texts)):
            # A reaction, an unsupported message, or an opt-out keyword (its confirmation is the answer): nothing
            # to say. Decided, so the sweeper does not answer it either.
            if conversation.status == S.AI:
                _decided(conversation, max(m.pk for m in rows))
            continue
        newest = max(m.pk for m in answerable)
        if conversation.status == S.PENDING:
            if not ai_may_answer(row, number, now):
                continue  # people answer, as without an assistant
        elif not ai_may_answer(row, number, now):
            ai_hand_off(conversation=conversation, reason=Why.OFF, settings_row=row)
            continue
        keyword = next((k for k in (asks_for_person(t, handoff_keywords(row)) for t in texts) if k), "")
        if keyword:
            ai_hand_off(conversation=conversation, reason=Why.KEYWORD, detail=keyword, settings_row=row)
            continue
        if conversation.status == S.AI and row.max_replies and conversation.ai_replies >= row.max_replies:
            ai_hand_off(conversation=conversation, reason=Why.CAP, detail=str(row.max_replies), settings_row=row)
            continue
        if conversation.status == S.PENDING:
            conversation.status = S.AI
            conversation.ai_replies = 0
            conversation.save(update_fields=["status", "ai_replies", "updated_at"])
            publish_conversation_updated(conversation, by=None, action="ai_started")
        _schedule_reply(conversation.pk, newest)


def _decided(conversation: Conversation, message_id: int) -> None:
    """The assistant has answered, or decided not to answer, the customer's messages up to `message_id`."""
    if conversation.ai_answered_message_id is None or conversation.ai_answered_message_id < message_id:
        conversation.ai_answered_message_id = message_id
        conversation.save(update_fields=["ai_answered_message_id"])


def _schedule_reply(conversation_id: int, message_id: int, countdown: float | None = None) -> None:
    from conversations.tasks import conversation_ai_reply_task

    delay = settings.AI_DEBOUNCE_SECONDS if countdown is None else countdown

    def enqueue() -> None:
        try:
            conversation_ai_reply_task.apply_async((conversation_id, message_id), countdown=delay)
        except Exception:  # the broker is away: the message is stored; the sweeper queues its answer later
            logger.warning("AI reply for conversation %s not queued; the sweeper will", conversation_id, exc_info=True)

    transaction.on_commit(enqueue)


# --- Answering -------------------------------------------------------------------------------------------------


def _newest_inbound_id(conversation_id: int) -> int | None:
    """The newest customer message the assistant would answer."""
    return Message.objects.filter(conversation_id=conversation_id, **ANSWERABLE_INBOUND).aggregate(newest=Max("pk"))[
        "newest"
    ]


def _waiting_for_answer(conversation: Conversation, message_id: int) -> str:
    """ "" when the assistant should answer `message_id` now, else why not."""
    if conversation.status != S.AI or conversation.assigned_to_id is not None:
        return "not_ai"
    if conversation.ai_answered_message_id is not None and conversation.ai_answered_message_id >= message_id:
        return "answered"
    newest = _newest_inbound_id(conversation.pk)
    if newest is not None and newest > message_id:
        return "superseded"  # a later message's task answers them together
    return ""


def _system_text(row: AISettings, *, business: str, zone: ZoneInfo, now: datetime) -> str:
    parts = [(row.system_prompt.strip() or DEFAULT_SYSTEM_PROMPT).replace("{business}", business)]
    if row.business_context.strip():
        parts.append("What you know about the business (rely only on this):\n" + row.business_context.strip())
    if row.language.strip():
        parts.append(f"Always answer in {row.language.strip()}.")
    else:
        parts.append("Answer in the language the customer writes in.")
    local = timezone.localtime(now, zone)
    parts.append(
        "Never invent prices, stock, dates or policies you were not told. If the customer asks for a person, or "
        f"you cannot help with what you know, answer only {settings.AI_HANDOFF_MARKER} followed by a short reason "
        f"for the team. Now it is {local:%A %Y-%m-%d %H:%M} ({zone.key})."
    )
    return "\n\n".join(parts)


def ai_prompt(conversation: Conversation, row: AISettings, now: datetime | None = None) -> list[dict[str, str]]:
    """The messages sent to the model: the system prompt (settings, business context, language, how to ask for
    a person) and the conversation's last `max_history` messages, oldest first (notes and notices left out)."""
    number = conversation.number
    system = _system_text(row, business=conversation.client.name, zone=number.zone, now=now or timezone.now())
    history = list(
        Message.objects.filter(conversation=conversation)
        .exclude(direction=Message.Direction.INTERNAL)
        .exclude(status=Message.Status.FAILED)
        .order_by("-created_at", "-id")
        .only("direction", "kind", "body", "media_filename")[: row.max_history]
    )
    messages = [{"role": "system", "content": system}]
    for message in reversed(history):
        role = "user" if message.direction == Message.Direction.INBOUND else "assistant"
        messages.append({"role": role, "content": _as_text(message)})
    return messages


def ai_prompt_preview(row: AISettings, question: str) -> list[dict[str, str]]:
    """What the model would get for a first customer message `question` under these settings (admin's "Try")."""
    zone = row.number.zone if row.number_id else ZoneInfo(settings.TIME_ZONE)
    system = _system_text(row, business=row.client.name, zone=zone, now=timezone.now())
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _as_text(message: Message) -> str:
    if message.kind in (Message.Kind.TEXT, Message.Kind.TEMPLATE, Message.Kind.BUTTON, Message.Kind.INTERACTIVE):
        return message.body or f"[{message.get_kind_display()}]"
    label = f"[{message.get_kind_display()}{': ' + message.media_filename if message.media_filename else ''}]"
    return f"{label} {message.body}".strip()


def conversation_ai_reply(*, conversation_id: int, message_id: int) -> str:
    """Answer the customer's messages up to `message_id`, unless a later message, an agent or a hand-off came
    first. Returns what happened: "replied", "handed_off", or why nothing was done. Safe to run twice: the
    answer is written under the conversation's lock only if that message is still unanswered."""
    conversation = Conversation.objects.select_related("number", "client").filter(pk=conversation_id).first()
    if conversation is None:
        return "gone"
    skip = _waiting_for_answer(conversation, message_id)
    if skip:
        return skip
    row = ai_settings_for(conversation)
    if not ai_may_answer(row, conversation.number, timezone.now()):
        return _hand_off_locked(conversation_id, message_id, Why.OFF, "")
    if row.max_replies and conversation.ai_replies >= row.max_replies:
        return _hand_off_locked(conversation_id, message_id, Why.CAP, str(row.max_replies))
    model = row.model.strip() or settings.AI_DEFAULT_MODEL
    try:
        completion = chat_complete(model=model, messages=ai_prompt(conversation, row), temperature=row.temperature)
    except LLMError as exc:
        logger.warning("AI reply for conversation %s failed: %s", conversation_id, exc.code)
        return _hand_off_locked(conversation_id, message_id, Why.FAILURE, exc.message, model=model)
    except Exception as exc:  # whatever it was, the customer must not wait for an answer that never comes
        logger.exception("AI reply for conversation %s failed unexpectedly", conversation_id)
        detail = _("unexpected error (%(kind)s); see the worker's log") % {"kind": type(exc).__name__}
        return _hand_off_locked(conversation_id, message_id, Why.FAILURE, detail, model=model)

    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().select_related("number").get(pk=conversation_id)
        skip = _waiting_for_answer(conversation, message_id)
        if skip:  # an agent took it, or the customer wrote again, while the model was thinking
            return skip
        conversation.ai_answered_message_id = message_id
        conversation.save(update_fields=["ai_answered_message_id"])
        handoff = _handoff_requested(completion.text)
        if handoff is not None:
            reason = handoff[:300]
            ai_hand_off(
                conversation=conversation, reason=Why.MODEL, detail=reason, settings_row=row, completion=completion
            )
            return "handed_off"
        try:
            message = message_send(conversation=conversation, text=completion.text[:4096], origin=Message.Origin.AI)
        except OutboundRefused as exc:
            detail = _("The answer could not be sent: %(reason)s") % {"reason": exc.message}
            ai_hand_off(conversation=conversation, reason=Why.FAILURE, detail=detail, settings_row=row)
            return "handed_off"
        conversation.ai_replies += 1
        conversation.save(update_fields=["ai_replies", "updated_at"])
        _activity(conversation, AIActivity.Kind.REPLY, message=message, completion=completion)
    logger.info("AI replied in conversation %s (message %s)", conversation_id, message.pk)
    return "replied"


def _handoff_requested(text: str) -> str | None:
    """The reason the model gives when its answer asks for a person (AI_HANDOFF_MARKER anywhere, any case; or the
    marker's bare word opening the answer, as models sometimes drop the brackets), else None."""
    marker = settings.AI_HANDOFF_MARKER.strip()
    if not marker:
        return None
    found = re.search(re.escape(marker), text, flags=re.IGNORECASE)
    if found is None:
        word = marker.strip("[]<>(){} ").strip()
        found = re.match(rf"\s*{re.escape(word)}\b[:\s-]*", text, flags=re.IGNORECASE) if word else None
    if found is None:
        return None
    return (text[: found.start()] + " " + text[found.end() :]).strip(" :-\n")


def _hand_off_locked(conversation_id: int, message_id: int, reason: str, detail: str, model: str = "") -> str:
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().select_related("number").get(pk=conversation_id)
        skip = _waiting_for_answer(conversation, message_id)
        if skip and skip != "superseded":
            return skip
        conversation.ai_answered_message_id = message_id
        conversation.save(update_fields=["ai_answered_message_id"])
        ai_hand_off(conversation=conversation, reason=reason, detail=detail, model=model)
    return "handed_off"


# --- Hand-off and resume ---------------------------------------------------------------------------------------


def _activity(
    conversation: Conversation,
    kind: str,
    *,
    reason: str = "",
    detail: str = "",
    message: Message | None = None,
    completion: Completion | None = None,
    model: str = "",
) -> AIActivity:
    return AIActivity.objects.create(
        client_id=conversation.client_id,
        conversation=conversation,
        number_id=conversation.number_id,
        queue_id=conversation.queue_id,
        kind=kind,
        reason=reason,
        detail=detail[:500],
        message=message,
        model=completion.model if completion is not None else model,
        prompt_tokens=completion.prompt_tokens if completion is not None else 0,
        completion_tokens=completion.completion_tokens if completion is not None else 0,
        latency_ms=completion.latency_ms if completion is not None else 0,
    )


def _notice(conversation: Conversation, text: str) -> Message:
    from conversations.services.actions import _notice as notice

    return notice(conversation, text, None)


def _handoff_note(reason: str, detail: str) -> str:
    texts = {
        Why.KEYWORD: _("The AI assistant handed over: the customer asked for a person (“%(detail)s”)."),
        Why.MODEL: _("The AI assistant handed over: %(detail)s"),
        Why.CAP: _("The AI assistant handed over: it answered %(detail)s times, the most for one conversation."),
        Why.FAILURE: _("The AI assistant could not answer and handed over: %(detail)s"),
        Why.OFF: _("The AI assistant handed over: it is turned off or outside its hours now."),
    }
    text = texts.get(reason, _("The AI assistant stopped: %(detail)s"))
    return text % {"detail": detail or _("no reason given")}


def ai_hand_off(
    *,
    conversation: Conversation,
    reason: str,
    detail: str = "",
    settings_row: AISettings | None = None,
    completion: Completion | None = None,
    model: str = "",
) -> Conversation:
    """The assistant stops; the conversation waits in its queue like any other and the policy assigns it. The
    agents get a note saying why; the customer is told (AI_HANDOFF_MESSAGE) unless nothing is configured. The
    caller holds the conversation's lock, in its transaction."""
    from queues.services import conversation_assign_by_policy

    now = timezone.now()
    was_ai = conversation.status == S.AI
    conversation.ai_stop_reason, conversation.ai_stopped_at = reason, now
    fields = ["ai_stop_reason", "ai_stopped_at", "updated_at"]
    if was_ai:
        conversation.status, conversation.waiting_since = S.PENDING, now
        fields += ["status", "waiting_since"]
    conversation.save(update_fields=fields)
    kind = AIActivity.Kind.FAILURE if reason == Why.FAILURE else AIActivity.Kind.HANDOFF
    _activity(conversation, kind, reason=reason, detail=detail, completion=completion, model=model)
    _notice(conversation, _handoff_note(reason, detail))
    text = _handoff_message(settings_row if settings_row is not None else ai_settings_for(conversation))
    if reason in TELL_CUSTOMER and text:
        try:
            message_send(conversation=conversation, text=text, origin=Message.Origin.SYSTEM)
        except OutboundRefused as exc:
            logger.warning("hand-off message in conversation %s not sent: %s", conversation.pk, exc.code)
    publish_conversation_updated(
        conversation, by=None, action="ai_handed_off", ai_stop_reason=conversation.ai_stop_reason
    )
    logger.info("AI handed conversation %s over (%s)", conversation.pk, reason)
    conversation_assign_by_policy(conversation=conversation)
    return conversation


def ai_stop_for_agent(*, conversation: Conversation, reason: str) -> None:
    """An agent steps in (takes, replies, transfers): the assistant stops at once, nothing told to the customer.
    The caller holds the lock and then assigns or moves the conversation itself."""
    if conversation.status != S.AI:
        return
    now = timezone.now()
    conversation.ai_stop_reason, conversation.ai_stopped_at = reason, now
    conversation.status = S.PENDING
    conversation.save(update_fields=["ai_stop_reason", "ai_stopped_at", "status", "updated_at"])
    _activity(conversation, AIActivity.Kind.HANDOFF, reason=reason)


def ai_resume(*, conversation: Conversation, by: AbstractBaseUser) -> int | None:
    """Hand a locked conversation back to the assistant (conversations.services.actions.conversation_ai_resume
    checks first): nobody's again, in status `ai`, the reply count restarted; if the customer's last message is
    unanswered, the assistant answers it now. Returns the agent who had it."""
    previous_agent = conversation.assigned_to_id
    conversation.status = S.AI
    conversation.assigned_to = None
    conversation.ai_stop_reason, conversation.ai_stopped_at, conversation.ai_replies = "", None, 0
    conversation.save(
        update_fields=["status", "assigned_to", "ai_stop_reason", "ai_stopped_at", "ai_replies", "updated_at"]
    )
    publish_conversation_updated(conversation, by=by, action="ai_resumed", left_agent_id=previous_agent)
    # The customer's newest message, unless an agent, the assistant or an integration answered after it (a
    # hand-off notice is no answer): the assistant answers it now.
    conversation.ai_answered_message_id = None
    conversation.save(update_fields=["ai_answered_message_id"])
    newest = _newest_inbound_id(conversation.pk)
    replied = (
        Message.objects.filter(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            origin__in=[Message.Origin.AGENT, Message.Origin.AI, Message.Origin.API],
        )
        .exclude(status=Message.Status.FAILED)
        .aggregate(last=Max("pk"))["last"]
    )
    if newest is not None and (replied is None or replied < newest):
        _schedule_reply(conversation.pk, newest, countdown=0)
    return previous_agent


# --- Sweeper ---------------------------------------------------------------------------------------------------


def ai_replies_sweep() -> dict[str, int]:
    """Beat, every minute, for conversations the assistant has:

    - whose newest customer message is unanswered longer after it arrived than an answer can take (its task was
      lost with a worker or a broker restart): the answer task is queued again;
    - whose latest AI answer the provider reported failed (undeliverable, blocked): handed to people, with the
      provider's reason in the note, so the customer does not wait for an answer that never arrived."""
    from conversations.tasks import conversation_ai_reply_task

    longest = settings.AI_DEBOUNCE_SECONDS + settings.AI_TIMEOUT * (settings.AI_MAX_RETRIES + 1)
    before = timezone.now() - timedelta(seconds=longest) - SWEEP_GRACE
    answerable = Q(messages__direction=Message.Direction.INBOUND, messages__kind__in=sorted(ANSWERABLE))
    answers = Q(messages__direction=Message.Direction.OUTBOUND, messages__origin=Message.Origin.AI)
    rows = (
        Conversation.objects.filter(status=S.AI, assigned_to__isnull=True)
        .annotate(
            newest=Max("messages__pk", filter=answerable),
            newest_at=Max("messages__created_at", filter=answerable),
            last_answer=Max("messages__pk", filter=answers),
        )
        .values_list("pk", "newest", "newest_at", "ai_answered_message_id", "last_answer")
        .order_by("pk")
    )
    rows = list(rows)
    failed = dict(
        Message.objects.filter(pk__in=[r[4] for r in rows if r[4]], status=Message.Status.FAILED).values_list(
            "conversation_id", "error_reason"
        )
    )
    queued = handed_off = 0
    for conversation_id, newest, newest_at, answered, _last_answer in rows:
        if conversation_id in failed:
            with transaction.atomic():
                conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
                if conversation.status == S.AI and conversation.assigned_to_id is None:
                    reason = failed[conversation_id] or _("no reason given")
                    detail = _("WhatsApp did not deliver its answer: %(reason)s") % {"reason": reason}
                    ai_hand_off(conversation=conversation, reason=Why.FAILURE, detail=detail)
                    handed_off += 1
            continue
        if newest is not None and newest_at < before and (answered is None or answered < newest):
            try:
                conversation_ai_reply_task.delay(conversation_id, newest)
            except Exception:  # the broker is away: the next sweep tries again
                logger.warning("AI reply for conversation %s not queued", conversation_id, exc_info=True)
                break
            queued += 1
    return {"queued": queued, "handed_off": handed_off}
