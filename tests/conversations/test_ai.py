"""The AI assistant (docs/ai.md) against the real PostgreSQL and Redis and a fake OpenAI-compatible API on
127.0.0.1: settings precedence, the prompt, replies, debounce, every hand-off path, failures and timeouts, and
never answering a conversation an agent owns."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from conversations.inbound import parse_webhook
from conversations.models import AIActivity, AISettings, Conversation, Message
from conversations.selectors import ai_usage
from conversations.services.actions import (
    ConversationActionError,
    conversation_ai_resume,
    conversation_reply,
    conversation_resolve,
    conversation_take,
    conversation_transfer,
)
from conversations.services.ai import (
    ai_hours_open,
    ai_replies_sweep,
    ai_settings_for,
    asks_for_person,
    conversation_ai_reply,
)
from conversations.services.receive import inbound_messages_receive
from queues.models import AgentAvailability
from queues.services import agent_availability_set
from sessions.leases import redis_connection
from tests.conversations import meta_payloads as meta
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory

pytestmark = pytest.mark.django_db

S = Conversation.Status
Why = Conversation.AIStopReason
CUSTOMER = "51987001234"
_wamids = itertools.count(1)


def agent(queue, name: str):
    user = UserFactory(username=name)
    ClientMembershipFactory(user=user, client=queue.client)
    QueueMembershipFactory(queue=queue, user=user)
    agent_availability_set(user=user, status=AgentAvailability.Status.ONLINE)
    return user


def say(number, *texts: str, customer: str = CUSTOMER) -> list[Message]:
    """The customer writes `texts` (one webhook batch), now; returns the stored messages."""
    now = int(time.time())
    payload = meta.webhook(
        meta.messages_change(
            number.phone_number_id,
            messages=[
                meta.text_message(f"wamid.ai{next(_wamids)}", customer, text, timestamp=str(now)) for text in texts
            ],
            contacts=[meta.contact(customer, "Rosa")],
        )
    )
    results = inbound_messages_receive(number=number, messages=parse_webhook(payload).messages)
    return [r.message for r in results]


def queued_ai_replies() -> list[list[int]]:
    """The AI answer tasks waiting in the broker (Redis, queue "default"): their arguments."""
    found = []
    for raw in redis_connection().lrange("default", 0, -1):
        envelope = json.loads(raw)
        if envelope["headers"]["task"] == "conversations.tasks.conversation_ai_reply_task":
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            found.append(args)
    return found


def ai_on(scope, **fields) -> AISettings:
    key = "queue" if scope.__class__.__name__ == "Queue" else "number"
    defaults = {"system_prompt": "Eres el asistente de Panadería Rosa.", "business_context": "Abrimos de 7 a 20."}
    return AISettings.objects.create(**{key: scope}, **{**defaults, **fields})


def answer(message: Message) -> str:
    return conversation_ai_reply(conversation_id=message.conversation_id, message_id=message.pk)


def ai_messages(conversation: Conversation) -> list[str]:
    return list(
        conversation.messages.filter(direction=Message.Direction.OUTBOUND, origin=Message.Origin.AI)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def handoff_messages(conversation: Conversation) -> list[str]:
    """What the customer was told when the assistant handed over (a system message, not the assistant's)."""
    return list(
        conversation.messages.filter(direction=Message.Direction.OUTBOUND, origin=Message.Origin.SYSTEM)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def notes(conversation: Conversation) -> list[str]:
    return list(conversation.messages.filter(direction=Message.Direction.INTERNAL).values_list("body", flat=True))


# --- settings ----------------------------------------------------------------------------------------------------


def test_a_queues_settings_win_over_its_numbers_and_may_turn_the_assistant_off(number, queue):
    # given settings on the number and on its queue
    number_settings = ai_on(number, model="number-model")
    queue_settings = ai_on(queue, model="queue-model")
    conversation = say(number, "Hola")[0].conversation

    # then the queue's apply; without them the number's; a queue's disabled settings keep the assistant away
    assert ai_settings_for(conversation) == queue_settings
    queue_settings.delete()
    assert ai_settings_for(conversation) == number_settings
    other_queue = QueueFactory(client=queue.client, name="Soporte")
    AISettings.objects.create(queue=other_queue, enabled=False)
    long_ago = timezone.now() - timedelta(days=9)
    Conversation.objects.filter(pk=conversation.pk).update(status=S.RESOLVED, resolved_at=long_ago)
    number.queue = other_queue
    number.save()
    fresh = say(number, "Hola otra vez")[0].conversation
    assert fresh.pk != conversation.pk and fresh.status == S.PENDING


def test_without_settings_nothing_changes(number, queue):
    ana = agent(queue, "ana")
    conversation = say(number, "Hola")[0].conversation
    conversation.refresh_from_db()
    assert conversation.status == S.OPEN and conversation.assigned_to == ana
    assert not AIActivity.objects.exists()


def test_business_hours_decide_when_the_assistant_answers(number):
    # given settings answering only outside Monday-Friday 9:00-18:00 in Lima
    number.time_zone = "America/Lima"
    number.save()
    row = ai_on(number, hours=AISettings.Hours.OUTSIDE, business_days=[1, 2, 3, 4, 5])
    lima = ZoneInfo("America/Lima")

    def at(day: int, hour: int, minute: int = 0) -> datetime:  # day 1: Monday 2026-11-30
        return datetime(2026, 11, 30, tzinfo=lima) + timedelta(days=day - 1, hours=hour, minutes=minute)

    # then it answers at night and on weekends, not during business hours
    assert ai_hours_open(row, number, at(1, 8, 59)) and not ai_hours_open(row, number, at(1, 9))
    assert not ai_hours_open(row, number, at(5, 17, 59)) and ai_hours_open(row, number, at(5, 18))
    assert ai_hours_open(row, number, at(6, 12))  # Saturday
    # and "only inside" is the reverse; hours may cross midnight (a night shift from Friday 22:00 to 6:00)
    row.hours, row.opens_at, row.closes_at, row.business_days = AISettings.Hours.INSIDE, clock(22), clock(6), [5]
    assert ai_hours_open(row, number, at(5, 23)) and ai_hours_open(row, number, at(6, 5, 59))
    assert not ai_hours_open(row, number, at(6, 22)) and not ai_hours_open(row, number, at(5, 5))


def test_hand_off_keywords_match_whole_words_in_any_case_and_accent():
    keywords = ["asesor", "humano", "hablar con alguien"]
    assert asks_for_person("Quiero hablar con un ASESÓR por favor", keywords) == "asesor"
    assert asks_for_person("¿me pasas con un humano?", keywords) == "humano"
    assert asks_for_person("necesito Hablar con alguien ya", keywords) == "hablar con alguien"
    assert asks_for_person("los asesores son buenos", keywords) == ""
    assert asks_for_person("inhumano", keywords) == ""


# --- answering ---------------------------------------------------------------------------------------------------


def test_an_inbound_message_starts_the_assistant_instead_of_an_agent(number, queue, django_capture_on_commit_callbacks):
    # given an online agent and the assistant on for the number
    agent(queue, "ana")
    ai_on(number)

    # when a customer writes
    with django_capture_on_commit_callbacks(execute=True):
        message = say(number, "Hola, ¿abren el domingo?")[0]

    # then the assistant has it, nobody was assigned, and its answer is queued for after the debounce
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.status == S.AI and conversation.assigned_to is None
    assert queued_ai_replies() == [[conversation.pk, message.pk]]


def test_the_prompt_holds_the_settings_and_the_latest_history(number, openai_api, settings):
    # given a conversation with an earlier exchange, a note, and settings reading 3 messages of history
    ai_on(number, language="Spanish", max_history=3, temperature=0.7)
    first = say(number, "Hola")[0]
    assert answer(first) == "replied"
    conversation = first.conversation
    Message.objects.create(
        conversation=conversation,
        number=number,
        direction=Message.Direction.INTERNAL,
        kind=Message.Kind.NOTE,
        body="nota interna que no debe verse",
    )
    second = say(number, "¿Y cuánto cuesta el pan integral?")[0]

    # when the assistant answers
    assert answer(second) == "replied"

    # then the model got the system prompt (settings, business context, language, the hand-off marker) and the
    # last three messages, oldest first, as user/assistant turns, at the configured model and temperature
    request = openai_api.completions[-1]
    system = request["messages"][0]
    assert system["role"] == "system"
    assert "Eres el asistente de Panadería Rosa." in system["content"]
    assert "Abrimos de 7 a 20." in system["content"] and "Spanish" in system["content"]
    assert settings.AI_HANDOFF_MARKER in system["content"]
    assert [(m["role"], m["content"]) for m in request["messages"][1:]] == [
        ("user", "Hola"),
        ("assistant", openai_api.default_reply),
        ("user", "¿Y cuánto cuesta el pan integral?"),
    ]
    assert request["model"] == settings.AI_DEFAULT_MODEL and request["temperature"] == 0.7
    assert "nota interna" not in str(request)


def test_the_reply_is_stored_as_an_ai_message_and_queued_to_send(number, openai_api):
    ai_on(number)
    openai_api.reply_next("¡Hola Rosa! Abrimos el domingo de 7 a 13.", prompt_tokens=120, completion_tokens=14)
    message = say(number, "¿abren el domingo?")[0]

    assert answer(message) == "replied"

    conversation = Conversation.objects.get(pk=message.conversation_id)
    reply = conversation.messages.get(origin=Message.Origin.AI)
    assert reply.body == "¡Hola Rosa! Abrimos el domingo de 7 a 13."
    assert reply.direction == Message.Direction.OUTBOUND and reply.status == Message.Status.PENDING
    assert conversation.status == S.AI and conversation.ai_replies == 1
    activity = AIActivity.objects.get()
    assert activity.kind == AIActivity.Kind.REPLY and activity.message == reply
    assert (activity.prompt_tokens, activity.completion_tokens) == (120, 14)
    # and the same task again (a redelivery) changes nothing
    assert answer(message) == "answered"
    assert len(openai_api.completions) == 1 and len(ai_messages(conversation)) == 1


def test_a_quick_burst_gets_one_answer(number, openai_api):
    # given three messages in quick succession (three tasks, each scheduled after its own message)
    ai_on(number)
    messages = [say(number, text)[0] for text in ("Hola", "quería saber", "¿tienen delivery?")]

    # when their tasks run
    outcomes = [answer(m) for m in messages]

    # then only the newest answers, with all three in the prompt
    assert outcomes == ["superseded", "superseded", "replied"]
    assert len(openai_api.completions) == 1
    users = [m["content"] for m in openai_api.completions[0]["messages"] if m["role"] == "user"]
    assert users == ["Hola", "quería saber", "¿tienen delivery?"]
    assert len(ai_messages(messages[0].conversation)) == 1


# --- hand-off ------------------------------------------------------------------------------------------------------


def test_asking_for_a_person_hands_over_at_once(number, queue, openai_api, settings):
    ana = agent(queue, "ana")
    ai_on(number)
    assert answer(say(number, "Hola")[0]) == "replied"

    conversation = say(number, "Quiero hablar con un ASESOR")[0].conversation

    conversation.refresh_from_db()
    assert conversation.status == S.OPEN and conversation.assigned_to == ana
    assert conversation.ai_stop_reason == Why.KEYWORD
    assert handoff_messages(conversation) == [settings.AI_HANDOFF_MESSAGE]
    assert any("asked for a person" in n and "asesor" in n for n in notes(conversation))
    assert AIActivity.objects.filter(kind=AIActivity.Kind.HANDOFF, reason=Why.KEYWORD).count() == 1
    assert len(openai_api.completions) == 1  # the model was not asked about it


def test_the_model_can_ask_for_a_person(number, queue, openai_api, settings):
    ana = agent(queue, "ana")
    ai_on(number, handoff_message="Ya te atiende alguien del equipo.")
    openai_api.reply_next(f"{settings.AI_HANDOFF_MARKER} pide un reembolso de un pedido")
    message = say(number, "Quiero que me devuelvan el dinero")[0]

    assert answer(message) == "handed_off"

    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.status == S.OPEN and conversation.assigned_to == ana
    assert conversation.ai_stop_reason == Why.MODEL
    assert handoff_messages(conversation) == ["Ya te atiende alguien del equipo."]
    assert ai_messages(conversation) == []  # never the marker itself, nor the model's reason
    assert any("pide un reembolso de un pedido" in n for n in notes(conversation))


def test_the_reply_cap_sends_the_next_message_to_a_person(number, queue, openai_api):
    ana = agent(queue, "ana")
    ai_on(number, max_replies=2)
    assert answer(say(number, "uno")[0]) == "replied"
    assert answer(say(number, "dos")[0]) == "replied"

    conversation = say(number, "tres")[0].conversation

    conversation.refresh_from_db()
    assert conversation.ai_stop_reason == Why.CAP and conversation.assigned_to == ana
    assert len(openai_api.completions) == 2
    assert any("answered 2 times" in n for n in notes(conversation))


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (lambda fake: fake.fail_next(2, status=500), "answered 500"),
        (lambda fake: fake.fail_next(2, status=429, message="Rate limit reached"), "rate limiting"),
        (lambda fake: fake.slow_next(2, seconds=2), "did not answer within 0.5 s"),
        (lambda fake: fake.drop_next(2), "could not be reached"),
        (lambda fake: fake.reply_next("   "), "no text"),
    ],
    ids=["5xx", "429", "timeout", "connection dropped", "empty answer"],
)
def test_a_failing_ai_service_hands_the_conversation_to_people_with_the_reason(
    number, queue, openai_api, settings, script, expected
):
    # given the AI service failing every attempt (one retry allowed, half a second each)
    settings.AI_TIMEOUT, settings.AI_MAX_RETRIES = 0.5, 1
    ana = agent(queue, "ana")
    ai_on(number)
    script(openai_api)
    message = say(number, "Hola")[0]

    # when the assistant tries to answer
    started = time.monotonic()
    assert answer(message) == "handed_off"

    # then it gave up within its bounds, and the conversation went to an agent with a note saying why
    assert time.monotonic() - started < 5
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.ai_stop_reason == Why.FAILURE and conversation.assigned_to == ana
    assert any(expected in n for n in notes(conversation)), notes(conversation)
    assert AIActivity.objects.get().kind == AIActivity.Kind.FAILURE
    assert openai_api.api_key not in " ".join(notes(conversation))


def test_no_key_configured_hands_over_with_a_clear_note(number, queue, settings):
    settings.OPENAI_API_KEY = ""
    agent(queue, "ana")
    ai_on(number)
    message = say(number, "Hola")[0]

    assert answer(message) == "handed_off"
    assert any("OPENAI_API_KEY" in n for n in notes(message.conversation))


def test_turning_the_assistant_off_hands_over_at_the_next_message(number, queue, openai_api):
    ana = agent(queue, "ana")
    row = ai_on(number)
    assert answer(say(number, "Hola")[0]) == "replied"
    row.enabled = False
    row.save()

    conversation = say(number, "sigo aquí")[0].conversation

    conversation.refresh_from_db()
    assert conversation.ai_stop_reason == Why.OFF and conversation.assigned_to == ana


def test_an_opt_out_keyword_is_not_answered_by_the_assistant(number, openai_api):
    ai_on(number)
    conversation = say(number, "BAJA")[0].conversation
    conversation.refresh_from_db()
    assert conversation.status == S.PENDING and conversation.contact.opted_out_at is not None


# --- agents --------------------------------------------------------------------------------------------------------


def test_an_agent_taking_or_replying_stops_the_assistant(number, queue, openai_api):
    ana = agent(queue, "ana")
    AgentAvailability.objects.filter(user=ana).update(status=AgentAvailability.Status.OFFLINE)
    ai_on(number)
    message = say(number, "Hola")[0]
    conversation = message.conversation

    conversation_take(conversation=conversation, user=ana)

    conversation.refresh_from_db()
    assert conversation.status == S.OPEN and conversation.ai_stop_reason == Why.AGENT_TOOK
    assert answer(message) == "not_ai" and not openai_api.completions
    assert ai_messages(conversation) == []  # nothing told to the customer: the agent speaks for themselves

    # and an agent replying to one the assistant has stops it too
    other = say(number, "Hola", customer="51987009999")[0]
    conversation_reply(conversation=other.conversation, by=ana, text="Hola, soy Ana")
    other.conversation.refresh_from_db()
    assert other.conversation.ai_stop_reason == Why.AGENT_REPLIED and other.conversation.assigned_to == ana


@pytest.mark.django_db(transaction=True)
def test_an_answer_the_model_was_still_writing_is_dropped_when_an_agent_takes_over(default_client, openai_api):
    # given the model taking a second to answer
    queue = QueueFactory(client=default_client, name="Ventas")
    from tests.sessions.factories import WhatsAppNumberFactory

    number = WhatsAppNumberFactory(client=default_client, queue=queue)
    ana = agent(queue, "ana")
    AgentAvailability.objects.filter(user=ana).update(status=AgentAvailability.Status.OFFLINE)
    ai_on(number)
    openai_api.slow_next(seconds=1)
    message = say(number, "Hola")[0]
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(answer(message))
        finally:
            connection.close()

    # when an agent takes the conversation while the model is thinking
    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.3)
    conversation_take(conversation=message.conversation, user=ana)
    worker.join()

    # then the assistant's answer is never sent
    assert outcome == ["not_ai"]
    assert ai_messages(message.conversation) == []


def test_an_agent_hands_the_conversation_back_to_the_assistant(
    number, queue, openai_api, django_capture_on_commit_callbacks
):
    ana = agent(queue, "ana")
    ai_on(number)
    conversation = say(number, "Quiero un asesor")[0].conversation
    conversation.refresh_from_db()
    assert conversation.assigned_to == ana and conversation.ai_stop_reason == Why.KEYWORD
    last = say(number, "¿sigues ahí?")[0]  # unanswered

    with django_capture_on_commit_callbacks(execute=True):
        conversation_ai_resume(conversation=conversation, by=ana)

    conversation.refresh_from_db()
    assert conversation.status == S.AI and conversation.assigned_to is None
    assert conversation.ai_stop_reason == "" and conversation.ai_replies == 0
    assert queued_ai_replies() == [[conversation.pk, last.pk]]  # its answer to the last message, at once
    assert answer(last) == "replied"
    assert any("handed the conversation back" in n for n in notes(conversation))


def test_handing_back_is_refused_without_an_enabled_assistant(number, queue):
    ana = agent(queue, "ana")
    conversation = say(number, "Hola")[0].conversation
    with pytest.raises(ConversationActionError) as refused:
        conversation_ai_resume(conversation=conversation, by=ana)
    assert refused.value.code == "ai_not_enabled"
    conversation.refresh_from_db()
    assert conversation.status == S.OPEN and conversation.assigned_to == ana


# --- sweeper and usage ---------------------------------------------------------------------------------------------


def test_the_sweeper_requeues_answers_lost_with_a_worker(number, openai_api, settings):
    ai_on(number)
    lost = say(number, "Hola")[0]
    answered = say(number, "Hola", customer="51987005555")[0]
    assert answer(answered) == "replied"
    long_ago = timezone.now() - timedelta(minutes=10)
    Message.objects.update(created_at=long_ago)

    assert ai_replies_sweep() == {"queued": 1, "handed_off": 0}
    assert queued_ai_replies() == [[lost.conversation_id, lost.pk]]
    assert Conversation.objects.get(pk=lost.conversation_id).status == S.AI


def test_an_answer_whatsapp_reports_failed_hands_the_conversation_to_people(number, queue, openai_api):
    ana = agent(queue, "ana")
    ai_on(number)
    message = say(number, "Hola")[0]
    assert answer(message) == "replied"
    reply = message.conversation.messages.get(origin=Message.Origin.AI)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.FAILED, error_reason="Re-engagement message")

    assert ai_replies_sweep() == {"queued": 0, "handed_off": 1}

    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.ai_stop_reason == Why.FAILURE and conversation.assigned_to == ana
    assert any("did not deliver its answer: Re-engagement message" in n for n in notes(conversation))


def test_reactions_and_opt_outs_in_an_ai_conversation_get_no_answer_even_after_a_sweep(number, openai_api):
    ai_on(number, max_replies=1)
    first = say(number, "Hola")[0]
    assert answer(first) == "replied"
    reply = first.conversation.messages.get(origin=Message.Origin.AI)
    payload = meta.webhook(
        meta.messages_change(
            number.phone_number_id,
            messages=[meta.reaction_message("wamid.react1", CUSTOMER, reply.provider_message_id or "wamid.x", "👍")],
            contacts=[meta.contact(CUSTOMER, "Rosa")],
        )
    )
    inbound_messages_receive(number=number, messages=parse_webhook(payload).messages)
    say(number, "BAJA")
    Message.objects.update(created_at=timezone.now() - timedelta(minutes=10))

    assert ai_replies_sweep() == {"queued": 0, "handed_off": 0}
    conversation = Conversation.objects.get(pk=first.conversation_id)
    # neither counted against the cap (1) nor handed over: the assistant still has it
    assert conversation.status == S.AI and conversation.ai_stop_reason == ""
    assert len(openai_api.completions) == 1


def test_handing_back_after_a_failure_answers_the_customers_waiting_question(
    number, queue, openai_api, django_capture_on_commit_callbacks
):
    # given the AI service failing on the customer's question: handed to Ana, the customer told so
    ana = agent(queue, "ana")
    ai_on(number)
    openai_api.fail_next(2, status=500)
    question = say(number, "¿hacen envíos a Cusco?")[0]
    assert answer(question) == "handed_off"
    conversation = Conversation.objects.get(pk=question.conversation_id)
    assert conversation.assigned_to == ana

    # when Ana hands it back without answering
    with django_capture_on_commit_callbacks(execute=True):
        conversation_ai_resume(conversation=conversation, by=ana)

    # then the assistant answers the question still waiting (the hand-off notice was no answer)
    assert queued_ai_replies() == [[conversation.pk, question.pk]]
    assert answer(question) == "replied"


def test_handing_back_outside_the_assistants_hours_is_refused(number, queue):
    ana = agent(queue, "ana")
    ai_on(number, hours=AISettings.Hours.INSIDE, business_days=[], opens_at=clock(9), closes_at=clock(18))
    conversation = say(number, "Hola")[0].conversation
    with pytest.raises(ConversationActionError) as refused:
        conversation_ai_resume(conversation=conversation, by=ana)
    assert refused.value.code == "ai_off_hours"


def test_a_transfer_by_people_keeps_the_assistant_out(number, queue, openai_api):
    ana = agent(queue, "ana")
    ai_on(number)
    conversation = say(number, "Quiero un asesor")[0].conversation  # handed to Ana
    other = QueueFactory(client=queue.client, name="Postventa")
    ai_on(other)

    conversation_transfer(conversation=conversation, by=ana, to_queue=other)
    say(number, "¿hola?")

    conversation.refresh_from_db()
    assert conversation.queue == other and conversation.status == S.PENDING
    assert not openai_api.completions


def test_a_reopened_conversation_goes_back_to_its_agent_not_the_assistant(number, queue, openai_api):
    ana = agent(queue, "ana")
    conversation = say(number, "Hola")[0].conversation  # no assistant yet: Ana has it
    conversation_resolve(conversation=conversation, by=ana)
    ai_on(number)

    reopened = say(number, "Una cosa más")[0].conversation

    reopened.refresh_from_db()
    assert reopened.pk == conversation.pk and reopened.assigned_to == ana and reopened.status == S.OPEN


@pytest.mark.parametrize(
    "answer_text",
    ["[HANDOFF] quiere factura", "[handoff] quiere factura", "HANDOFF: quiere factura"],
    ids=["marker", "any case", "bare word"],
)
def test_the_hand_off_marker_is_recognised_in_the_forms_models_write_it(number, queue, openai_api, answer_text):
    agent(queue, "ana")
    ai_on(number)
    openai_api.reply_next(answer_text)
    message = say(number, "necesito factura")[0]

    assert answer(message) == "handed_off"
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.ai_stop_reason == Why.MODEL
    assert any(n.endswith("quiere factura") for n in notes(conversation))
    assert not conversation.messages.filter(body__icontains="handoff", direction=Message.Direction.OUTBOUND)


def test_a_malformed_base_url_hands_over_with_a_clear_note(number, queue, settings):
    settings.OPENAI_API_KEY = "sk-anything"
    settings.OPENAI_BASE_URL = "http://user:secret@[::1/v1"
    agent(queue, "ana")
    ai_on(number)
    message = say(number, "Hola")[0]

    assert answer(message) == "handed_off"
    written = " ".join(notes(message.conversation))
    assert "check OPENAI_BASE_URL" in written and "secret" not in written


def test_usage_counts_replies_hand_offs_failures_and_tokens_per_number_and_queue(number, queue, openai_api, settings):
    staff = UserFactory(username="boss", is_staff=True, is_superuser=True)
    agent(queue, "ana")
    ai_on(number)
    openai_api.reply_next("uno", prompt_tokens=100, completion_tokens=10)
    openai_api.reply_next("dos", prompt_tokens=200, completion_tokens=20)
    assert answer(say(number, "Hola")[0]) == "replied"
    assert answer(say(number, "¿y?")[0]) == "replied"
    say(number, "un humano por favor")
    openai_api.fail_next(2, status=503)
    settings.AI_MAX_RETRIES = 0
    assert answer(say(number, "Hola", customer="51987002222")[0]) == "handed_off"

    usage = ai_usage(user=staff, since=timezone.now() - timedelta(days=1))

    (row,) = usage["numbers"]
    assert row.scope == number and row.replies == 2 and row.failures == 1
    assert row.handoffs == {Why.KEYWORD: 1, Why.FAILURE: 1}
    assert (row.prompt_tokens, row.completion_tokens) == (300, 30)
    assert [r.scope for r in usage["queues"]] == [queue]
