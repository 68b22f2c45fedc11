"""What agents do to a conversation from the CRM (docs/crm.md): reply, template, note, take, transfer, resolve,
reopen, snooze, availability; and everything a user may not do, refused without changing a thing."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Message, MessageTemplate
from conversations.services.outbound import message_deliver
from crm.events import live_events_of, publish_flush, queue_group, user_group
from queues.models import AgentAvailability
from tests.conversations.factories import ConversationFactory

ACTIONS = ("reply", "note", "take", "transfer", "resolve", "reopen", "snooze")


# -- helpers ------------------------------------------------------------------------------------------------


def url(conv: Conversation, action: str = "") -> str:
    return f"/conversations/{conv.pk}/{action + '/' if action else ''}"


def state(conv: Conversation) -> dict:
    """What a forbidden or refused request must leave exactly as it was."""
    return {
        "conversation": Conversation.objects.filter(pk=conv.pk)
        .values("status", "assigned_to_id", "queue_id", "snoozed_until", "resolved_at", "waiting_since", "updated_at")
        .get(),
        "messages": Message.objects.count(),
    }


def notices(conv: Conversation) -> list[str]:
    return list(
        conv.messages.filter(direction=Message.Direction.INTERNAL, kind=Message.Kind.SYSTEM).values_list(
            "body", flat=True
        )
    )


def page(response) -> str:
    return response.content.decode()


def close_window(conv: Conversation) -> None:
    Conversation.objects.filter(pk=conv.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))


@pytest.fixture
def order_template(world) -> MessageTemplate:
    return MessageTemplate.objects.create(
        client=world.client, name="pedido_listo", language="es", body="Hola {{1}}, su pedido {{2}}"
    )


# -- reply --------------------------------------------------------------------------------------------------


def test_reply_on_a_sandbox_conversation_takes_it_and_queues_the_answer(client, world):
    # given Pedro waiting in Ventas on the sandbox number, with nobody on it
    conv = world.ventas_waiting
    client.force_login(world.carla)

    # when carla answers him
    response = client.post(url(conv, "reply"), {"text": "  Hola Pedro, ¿en qué le ayudo?  "})

    # then she is back on the conversation, which is now hers
    assert response.status_code == 302
    assert response["Location"] == url(conv)
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.OPEN
    assert conv.assigned_to == world.carla
    # and her answer is stored, waiting for a worker to send it
    answer = conv.messages.get(direction=Message.Direction.OUTBOUND)
    assert answer.body == "Hola Pedro, ¿en qué le ayudo?"
    assert answer.status == Message.Status.PENDING
    assert answer.origin == Message.Origin.AGENT
    assert answer.sent_by == world.carla
    assert answer.kind == Message.Kind.TEXT
    assert notices(conv) == ["carla took the conversation."]
    assert "Hola Pedro, ¿en qué le ayudo?" in page(client.get(url(conv)))


def test_reply_on_a_resolved_conversation_is_refused(client, world):
    before = state(world.resolved)
    client.force_login(world.ana)

    response = client.post(url(world.resolved, "reply"), {"text": "Hola de nuevo"})

    assert response.status_code == 400
    assert "The conversation is resolved: reopen it first." in page(response)
    assert state(world.resolved) == before


def test_reply_clears_the_unread_count(client, world):
    Conversation.objects.filter(pk=world.ventas_waiting.pk).update(unread_count=3)
    client.force_login(world.carla)

    client.post(url(world.ventas_waiting, "reply"), {"text": "Hola"})

    world.ventas_waiting.refresh_from_db()
    assert world.ventas_waiting.unread_count == 0


def test_reply_can_quote_a_message_of_the_conversation(client, world):
    question = world.ana_open.messages.get()
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "reply"), {"text": "Sí, claro", "reply_to": question.pk})

    assert response.status_code == 302
    answer = world.ana_open.messages.get(direction=Message.Direction.OUTBOUND)
    assert answer.quoted == question
    assert answer.quoted_provider_message_id == question.provider_message_id


def test_reply_quoting_a_message_of_another_conversation_is_refused(client, world):
    elsewhere = world.beto_open.messages.get()
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "reply"), {"text": "Sí, claro", "reply_to": elsewhere.pk})

    assert response.status_code == 400
    assert "The quoted message is not in this conversation." in page(response)
    assert "Sí, claro" in page(response)  # her draft is kept
    assert state(world.ana_open) == before


def test_reply_after_the_window_closed_is_refused_with_the_reason(client, world, order_template):
    # given Rosa (waiting, nobody on it) last wrote 25 hours ago on the Cloud API number
    conv = world.waiting
    close_window(conv)
    before = state(conv)
    client.force_login(world.ana)

    # when ana tries to answer in free text
    response = client.post(url(conv, "reply"), {"text": "Hola Rosa"})

    # then she reads why, is offered the template instead, and nothing was written nor taken
    assert response.status_code == 400
    text = page(response)
    assert "More than 24 hours since the customer last wrote" in text
    assert "only an approved template can be sent" in text
    assert "data-template-form" in text
    assert state(conv) == before
    conv.refresh_from_db()
    assert conv.assigned_to is None


def test_template_send_fills_in_its_values(client, world, order_template):
    # given ana's customer has been silent for 25 hours
    conv = world.ana_open
    close_window(conv)
    client.force_login(world.ana)

    # when she sends the order template with its two values
    response = client.post(
        url(conv, "reply"), {"template": order_template.pk, "param_1": " Lucía ", "param_2": "A-123"}
    )

    # then a template message is queued with Meta's components filled in
    assert response.status_code == 302
    message = conv.messages.get(direction=Message.Direction.OUTBOUND)
    assert message.kind == Message.Kind.TEMPLATE
    assert message.status == Message.Status.PENDING
    assert message.sent_by == world.ana
    assert message.payload["template"] == {
        "name": "pedido_listo",
        "language": {"code": "es"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Lucía"}, {"type": "text", "text": "A-123"}]}
        ],
    }
    assert message.body == "Template pedido_listo (es): Lucía, A-123"


def test_template_with_a_missing_value_is_refused(client, world, order_template):
    conv = world.ana_open
    close_window(conv)
    before = state(conv)
    client.force_login(world.ana)

    response = client.post(url(conv, "reply"), {"template": order_template.pk, "param_1": "Lucía", "param_2": " "})

    assert response.status_code == 400
    assert "Fill in every value of the template." in page(response)
    assert state(conv) == before


def test_template_of_another_business_is_refused(client, world):
    conv = world.ana_open
    close_window(conv)
    other = MessageTemplate.objects.create(client=world.foreign.client, name="ajena", body="Hola {{1}}")
    before = state(conv)
    client.force_login(world.ana)

    response = client.post(url(conv, "reply"), {"template": other.pk, "param_1": "x"})

    assert response.status_code == 400
    assert "That template cannot be used on this number." in page(response)
    assert state(conv) == before


def test_reply_with_a_nul_character_is_refused_not_a_server_error(client, world):
    before = state(world.ana_open)
    messages_before = Message.objects.count()
    client.force_login(world.ana)
    client.raise_request_exception = False

    response = client.post(url(world.ana_open, "reply"), {"text": "Hola\x00"})

    assert response.status_code == 400
    assert "NUL character" in page(response)
    assert state(world.ana_open) == before and Message.objects.count() == messages_before


# -- note ---------------------------------------------------------------------------------------------------


def test_note_is_stored_for_agents_and_never_sent(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    response = client.post(url(conv, "note"), {"note": "Cliente frecuente, tratar con cuidado"})

    assert response.status_code == 302
    note = conv.messages.get(kind=Message.Kind.NOTE)
    assert note.direction == Message.Direction.INTERNAL
    assert note.sent_by == world.ana
    assert note.status != Message.Status.PENDING
    # the sender never picks it up, even if asked to
    assert message_deliver(message_id=note.pk) == "skipped"
    note.refresh_from_db()
    assert note.status == Message.Status.RECEIVED
    assert "Note · ana" in page(client.get(url(conv)))


def test_empty_note_is_refused(client, world):
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "note"), {"note": "   "})

    assert response.status_code == 400
    assert "The note is empty." in page(response)
    assert state(world.ana_open) == before


def test_note_with_a_nul_character_is_refused_not_a_server_error(client, world):
    messages_before = Message.objects.count()
    client.force_login(world.ana)
    client.raise_request_exception = False

    response = client.post(url(world.ana_open, "note"), {"note": "a\x00b"})

    assert response.status_code == 400
    assert "The note contains a NUL character." in page(response)
    assert Message.objects.count() == messages_before


# -- take ---------------------------------------------------------------------------------------------------


def test_take_assigns_the_conversation_and_leaves_a_notice(client, world):
    conv = world.waiting
    client.force_login(world.ana)

    response = client.post(url(conv, "take"))

    assert response.status_code == 302
    assert response["Location"] == url(conv)
    conv.refresh_from_db()
    assert conv.assigned_to == world.ana
    assert conv.status == Conversation.Status.OPEN
    assert conv.assigned_at is not None
    assert notices(conv) == ["ana took the conversation."]
    assert "ana took the conversation." in page(client.get(url(conv)))


def test_take_of_a_resolved_conversation_is_refused(client, world):
    Conversation.objects.filter(pk=world.ana_open.pk).update(
        status=Conversation.Status.RESOLVED, resolved_at=timezone.now(), assigned_to=None
    )
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "take"))

    assert response.status_code == 400
    assert "reopen it first" in page(response)
    assert state(world.ana_open) == before


class LiveListener:
    """Listens on the channel layer as browsers' WebSockets would, from one event loop of its own (the layer's
    receive buffers belong to the loop that first used them)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.layer = get_channel_layer()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def join(self, group: str) -> str:
        """A new browser in `group`: its channel name."""

        async def join():
            channel = await self.layer.new_channel()
            await self.layer.group_add(group, channel)
            return channel

        return self._run(join())

    def received(self, channel: str, *, wait: float) -> list[dict]:
        """Every event that reaches `channel` until none has come for `wait` seconds."""

        async def drain():
            events: list[dict] = []
            while True:
                try:
                    message = await asyncio.wait_for(self.layer.receive(channel), wait)
                except TimeoutError:
                    return events
                events += live_events_of(message)

        return self._run(drain())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()  # channels_redis closes this loop's connections


@pytest.fixture
def live():
    listener = LiveListener()
    yield listener
    listener.close()


def test_take_publishes_live_events_only_after_commit(client, world, live, django_capture_on_commit_callbacks):
    # given a browser of ana's and one watching Soporte
    ana_tab, queue_tab = live.join(user_group(world.ana.pk)), live.join(queue_group(world.soporte.pk))
    client.force_login(world.ana)

    # when ana takes Rosa's conversation, and the transaction has not committed yet
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url(world.waiting, "take"))
    assert response.status_code == 302

    # then events wait for the commit: registered, none sent
    assert callbacks
    publish_flush()
    assert live.received(ana_tab, wait=0.3) == []
    assert live.received(queue_tab, wait=0.1) == []

    # when it commits
    for callback in callbacks:
        callback()
    assert publish_flush(timeout=10)

    # then both browsers hear of the assignment and of the notice
    for tab in (ana_tab, queue_tab):
        events = live.received(tab, wait=1)
        assert [e["type"] for e in events] == ["conversation.assigned", "message.created"]
        assigned = events[0]["data"]
        assert assigned["conversation"] == world.waiting.pk
        assert assigned["agent"] == world.ana.pk
        assert assigned["reason"] == "taken"
        assert events[1]["data"]["direction"] == Message.Direction.INTERNAL


# -- transfer -----------------------------------------------------------------------------------------------


def test_transfer_to_another_queue_sends_the_agent_back_to_her_inbox(client, world):
    # given ana's conversation
    conv = world.ana_open
    client.force_login(world.ana)

    # when she sends it to Ventas, a queue she does not work in
    response = client.post(url(conv, "transfer"), {"target": f"queue:{world.ventas.pk}"})

    # then it waits in Ventas with nobody on it, and she is back in her inbox, told it went
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    conv.refresh_from_db()
    assert conv.queue == world.ventas
    assert conv.status == Conversation.Status.PENDING
    assert conv.assigned_to is None
    assert conv.waiting_since is not None
    assert notices(conv) == ["ana transferred the conversation to the queue Ventas."]
    inbox = page(client.get("/inbox/"))
    assert "Conversation transferred." in inbox
    assert f'data-conversation="{conv.pk}"' not in inbox
    assert client.get(url(conv)).status_code == 404
    # and Ventas' agent finds it waiting
    client.force_login(world.carla)
    assert f'data-conversation="{conv.pk}"' in page(client.get("/inbox/", {"tab": "queue"}))


def test_transfer_to_a_colleague_assigns_it_to_them(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    response = client.post(url(conv, "transfer"), {"target": f"agent:{world.soporte.pk}:{world.beto.pk}"})

    assert response.status_code == 302
    assert response["Location"] == url(conv)  # she still sees it: it is in her queue
    conv.refresh_from_db()
    assert conv.assigned_to == world.beto
    assert conv.queue == world.soporte
    assert conv.status == Conversation.Status.OPEN
    assert notices(conv) == ["ana transferred the conversation to beto."]
    assert "you can read it, not answer it" in page(client.get(url(conv)))


def test_transfer_to_an_agent_of_another_queue_moves_it_there_and_assigns_it(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    response = client.post(url(conv, "transfer"), {"target": f"agent:{world.ventas.pk}:{world.carla.pk}"})

    assert response.status_code == 302
    assert response["Location"] == "/inbox/"  # no longer hers, nor in her queue
    conv.refresh_from_db()
    assert (conv.queue, conv.assigned_to, conv.status) == (world.ventas, world.carla, Conversation.Status.OPEN)
    assert notices(conv) == ["ana transferred the conversation to carla."]
    client.force_login(world.carla)
    assert f'data-conversation="{conv.pk}"' in page(client.get("/inbox/"))


@pytest.mark.parametrize(
    "target",
    ["agent_not_in_queue", "foreign_queue", "same_queue", "garbage"],
)
def test_transfer_to_a_target_not_offered_is_refused(client, world, target):
    # given a forged form value
    value = {
        "agent_not_in_queue": f"agent:{world.soporte.pk}:{world.carla.pk}",  # carla works in Ventas only
        "foreign_queue": f"queue:{world.foreign.queue_id}",
        "same_queue": f"queue:{world.soporte.pk}",
        "garbage": "agent:x:y",
    }[target]
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "transfer"), {"target": value})

    assert response.status_code == 400
    assert state(world.ana_open) == before


# -- resolve, reopen ----------------------------------------------------------------------------------------


def test_resolve_closes_the_conversation(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    response = client.post(url(conv, "resolve"))

    assert response.status_code == 302
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.RESOLVED
    assert conv.resolved_at is not None
    assert conv.unread_count == 0
    assert notices(conv) == ["ana resolved the conversation."]
    text = page(client.get(url(conv)))
    assert "Reopen" in text
    assert 'name="text"' not in text


def test_reopen_gives_the_conversation_back_to_its_agent(client, world):
    conv = world.resolved
    client.force_login(world.ana)

    response = client.post(url(conv, "reopen"))

    assert response.status_code == 302
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.OPEN
    assert conv.assigned_to == world.ana
    assert conv.resolved_at is None
    assert notices(conv) == ["ana reopened the conversation."]


def test_reopen_is_refused_when_the_customer_has_a_newer_open_conversation(client, world):
    # given Elena wrote again: a new conversation on the same number is waiting
    newer = ConversationFactory(
        client=world.client,
        number=world.resolved.number,
        contact=world.resolved.contact,
        queue=world.soporte,
        status=Conversation.Status.PENDING,
        waiting_since=timezone.now(),
    )
    before = state(world.resolved)
    client.force_login(world.ana)

    # when ana tries to reopen the old one
    response = client.post(url(world.resolved, "reopen"))

    # then she is told to continue in the new one, and nothing changed
    assert response.status_code == 400
    assert f"already has an open conversation on this number (#{newer.pk})" in page(response)
    assert state(world.resolved) == before


# -- snooze -------------------------------------------------------------------------------------------------


def test_snooze_for_an_hour_hides_it_from_mine(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    response = client.post(url(conv, "snooze"), {"until": "1h"})

    assert response.status_code == 302
    conv.refresh_from_db()
    assert abs(conv.snoozed_until - (timezone.now() + timedelta(hours=1))) < timedelta(minutes=1)
    assert notices(conv)[0].startswith("ana snoozed the conversation until ")
    assert f'data-conversation="{conv.pk}"' not in page(client.get("/inbox/"))


def test_snooze_until_a_chosen_time(client, world):
    conv = world.ana_open
    client.force_login(world.ana)

    day = (timezone.localtime() + timedelta(days=30)).date()
    response = client.post(url(conv, "snooze"), {"until": "custom", "custom": f"{day:%Y-%m-%d}T10:30"})

    assert response.status_code == 302
    conv.refresh_from_db()
    assert conv.snoozed_until == datetime(day.year, day.month, day.day, 10, 30, tzinfo=ZoneInfo(settings.TIME_ZONE))
    assert notices(conv) == [f"ana snoozed the conversation until {day:%Y-%m-%d} 10:30."]


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"until": "custom", "custom": "2020-01-01T10:00"}, "Choose a time in the future."),
        ({"until": "custom", "custom": "not a date"}, "Choose when the conversation should come back."),
        ({"until": "someday"}, "Choose when the conversation should come back."),
    ],
    ids=["past", "unreadable", "unknown-choice"],
)
def test_snooze_to_a_time_that_is_not_ahead_is_refused(client, world, data, reason):
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.post(url(world.ana_open, "snooze"), data)

    assert response.status_code == 400
    assert reason in page(response)
    assert state(world.ana_open) == before


def test_wake_brings_a_snoozed_conversation_back(client, world):
    conv = world.ana_open
    Conversation.objects.filter(pk=conv.pk).update(snoozed_until=timezone.now() + timedelta(hours=3))
    client.force_login(world.ana)

    response = client.post(url(conv, "snooze"), {"until": "wake"})

    assert response.status_code == 302
    conv.refresh_from_db()
    assert conv.snoozed_until is None
    assert notices(conv) == ["ana brought the conversation back to the inbox."]
    assert f'data-conversation="{conv.pk}"' in page(client.get("/inbox/"))


# -- availability -------------------------------------------------------------------------------------------


def test_going_online_sets_availability_and_hands_her_waiting_customers(client, world):
    client.force_login(world.ana)

    response = client.post("/availability/", {"status": "online", "next": "/inbox/?tab=queue"})

    assert response.status_code == 302
    assert response["Location"] == "/inbox/?tab=queue"
    availability = AgentAvailability.objects.get(user=world.ana)
    assert availability.status == AgentAvailability.Status.ONLINE
    assert availability.status_changed_at is not None
    # Rosa was waiting in Soporte and ana had room
    world.waiting.refresh_from_db()
    assert world.waiting.assigned_to == world.ana


@pytest.mark.parametrize("status", ["away", "offline", "online"])
def test_availability_answers_json_when_asked(client, world, status):
    client.force_login(world.beto)

    response = client.post("/availability/", {"status": status}, HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response.json() == {"status": status}
    assert AgentAvailability.objects.get(user=world.beto).status == status


def test_unknown_availability_is_refused(client, world):
    client.force_login(world.ana)

    response = client.post("/availability/", {"status": "busy"})

    assert response.status_code == 400
    assert "error" in response.json()
    assert AgentAvailability.objects.get(user=world.ana).status == AgentAvailability.Status.OFFLINE


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/"], ids=["absolute", "scheme-relative"])
def test_availability_never_redirects_off_site(client, world, next_url):
    client.force_login(world.ana)

    response = client.post("/availability/", {"status": "away", "next": next_url})

    assert response.status_code == 302
    assert response["Location"] == "/inbox/"


# -- who may act --------------------------------------------------------------------------------------------


def _data(world, action: str, conv: Conversation) -> dict:
    other_queue = world.ventas if conv.queue_id == world.soporte.pk else world.soporte
    return {
        "reply": {"text": "Hola, le ayudo"},
        "note": {"note": "Nota interna"},
        "take": {},
        "transfer": {"target": f"queue:{other_queue.pk}"},
        "resolve": {},
        "reopen": {},
        "snooze": {"until": "1h"},
    }[action]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    "case, expected",
    [("foreign_business", 404), ("other_queue", 404), ("colleagues_conversation", 403), ("anonymous", 302)],
)
def test_forbidden_actions_change_nothing(client, world, action, case, expected):
    # given a user and a conversation they may not act on
    user, conv = {
        "foreign_business": (world.ana, world.foreign),
        "other_queue": (world.carla, world.waiting),  # Soporte; carla works in Ventas
        "colleagues_conversation": (world.ana, world.beto_open),  # her queue, but beto's
        "anonymous": (None, world.waiting),
    }[case]
    if action == "reopen":  # what reopen acts on
        Conversation.objects.filter(pk=conv.pk).update(status="resolved", resolved_at=timezone.now())
    if user is not None:
        client.force_login(user)
    before = state(conv)

    # when they try anyway, with a form that would otherwise be accepted
    response = client.post(url(conv, action), _data(world, action, conv))

    # then they are refused and nothing changed
    assert response.status_code == expected
    if case == "anonymous":
        assert response["Location"].startswith("/login/?next=")
    assert state(conv) == before


def test_a_cross_site_post_without_the_csrf_token_is_refused(world):
    # given ana signed in, and a page on another site posting to the CRM in her browser
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.ana)
    before = state(world.ana_open)

    # when it tries to resolve her conversation
    response = browser.post(url(world.ana_open, "resolve"))

    # then the CRM refuses it and nothing changed
    assert response.status_code == 403
    assert state(world.ana_open) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_actions_answer_only_post(client, world, action):
    before = state(world.ana_open)
    client.force_login(world.ana)

    response = client.get(url(world.ana_open, action))

    assert response.status_code == 405
    assert state(world.ana_open) == before


def test_supervisor_may_act_on_an_agents_conversation(client, world):
    conv = world.beto_open
    client.force_login(world.supervisor)

    response = client.post(url(conv, "resolve"))

    assert response.status_code == 302
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.RESOLVED
    assert notices(conv) == ["sofia resolved the conversation."]


def test_supervisor_may_step_in_and_take_it(client, world):
    client.force_login(world.supervisor)

    response = client.post(url(world.beto_open, "take"))

    assert response.status_code == 302
    world.beto_open.refresh_from_db()
    assert world.beto_open.assigned_to == world.supervisor


def test_staff_may_act_on_any_conversation_of_their_business(client, world):
    client.force_login(world.staff)

    response = client.post(url(world.ventas_waiting, "note"), {"note": "Revisar stock"})

    assert response.status_code == 302
    assert world.ventas_waiting.messages.filter(kind=Message.Kind.NOTE, sent_by=world.staff).exists()
