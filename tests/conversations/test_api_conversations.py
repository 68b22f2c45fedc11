"""The REST API's conversations and contacts (docs/api.md): lists, details, messages, sending, assigning and
resolving, with tokens of each scope and with the CRM's roles signed in, against the real database and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conversations.models import AIActivity, Conversation, Message, MessageTemplate
from crm.models import ApiToken
from crm.services import api_token_revoke
from queues.models import AgentAvailability
from tests.conversations.factories import ContactFactory, MessageFactory
from tests.crm.api_helpers import api_client, error_of, token_for
from tests.crm.conftest import World
from tests.crm.conftest import conversation as make_conversation
from tests.crm.conftest import world as crm_world  # noqa: F401  (a fixture, under its own name here)
from tests.queues.factories import QueueFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/conversations/"
CONTACTS = "/api/v1/contacts/"
CSRF = "a" * 32  # a CSRF secret the browser would hold in its cookie and send back in the header
READ, SEND, ADMIN = ApiToken.Scope.READ, ApiToken.Scope.SEND, ApiToken.Scope.ADMIN


# -- helpers ------------------------------------------------------------------------------------------------


def url(conv: Conversation, action: str = "") -> str:
    return f"{LIST}{conv.pk}/{action + '/' if action else ''}"


def key_for(world: World, scope: str = READ, name: str = "n8n") -> str:
    return token_for(world.client, scope, name=name)[1]


def as_token(world: World, scope: str = READ):
    return api_client(key_for(world, scope))


def as_user(user):
    """Signed in to the CRM, with the CSRF cookie and header a browser's script sends."""
    api = api_client(user=user)
    api.cookies[settings.CSRF_COOKIE_NAME] = CSRF
    api.credentials(HTTP_X_CSRFTOKEN=CSRF)
    return api


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def when(value: str | None):
    return parse_datetime(value) if value else None


def spaced(digits: str) -> str:
    """Digits as people type them: "012 345"."""
    return f"{digits[:3]} {digits[3:]}"


def state(conv: Conversation) -> dict:
    """What a refused request must leave exactly as it was."""
    return {
        "conversation": Conversation.objects.filter(pk=conv.pk)
        .values("status", "assigned_to_id", "queue_id", "resolved_at", "unread_count", "updated_at")
        .get(),
        "messages": Message.objects.count(),
    }


def notices(conv: Conversation) -> list[str]:
    return list(conv.messages.filter(kind=Message.Kind.SYSTEM).values_list("body", flat=True))


def close_window(conv: Conversation) -> None:
    Conversation.objects.filter(pk=conv.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))


@pytest.fixture
def world(crm_world: World) -> World:  # noqa: F811
    """The CRM tests' small business: Soporte (Cloud number; supervisor sofia, agents ana and beto) and Ventas
    (sandbox number; agent carla), staff, conversations in every state, and another client's conversation."""
    return crm_world


@pytest.fixture
def order_template(world) -> MessageTemplate:
    return MessageTemplate.objects.create(
        client=world.client, name="pedido_listo", language="es", body="Hola {{1}}, su pedido {{2}}"
    )


# -- authentication and scopes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [LIST, "/api/v1/conversations/{pk}/", "/api/v1/conversations/{pk}/messages/", CONTACTS, "/api/v1/contacts/{c}/"],
)
def test_reads_need_credentials_and_a_live_token(world, path):
    path = path.format(pk=world.waiting.pk, c=world.waiting.contact_id)
    token, key = token_for(world.client, READ)

    # no credentials
    anonymous = api_client().get(path)
    assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "unauthenticated"
    # a read token reads
    assert api_client(key).get(path).status_code == 200
    # a revoked one no longer does
    api_token_revoke(token=token)
    revoked = api_client(key).get(path)
    assert revoked.status_code == 401 and "revoked" in error_of(revoked)["message"]


@pytest.mark.parametrize(
    ("action", "body"),
    [("messages", {"text": "Hola"}), ("assign", {"queue": "ventas"}), ("resolve", {})],
)
def test_a_read_token_cannot_send_assign_or_resolve(world, action, body):
    # given a read token of the client
    before = state(world.waiting)
    if body.get("queue"):
        body = {"queue": world.ventas.pk}

    # when it tries to act on a conversation
    response = as_token(world, READ).post(url(world.waiting, action), body, format="json")

    # then it is refused for its scope, and nothing changed
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden" and "send" in error["message"]
    assert state(world.waiting) == before


def test_writes_need_credentials(world):
    before = state(world.waiting)

    response = api_client().post(url(world.waiting, "resolve"))

    assert response.status_code == 401
    assert state(world.waiting) == before


# -- listing conversations --------------------------------------------------------------------------------


def test_a_token_lists_its_clients_conversations_newest_activity_first(world):
    # when a read token lists conversations
    response = as_token(world, READ).get(LIST)

    # then it sees every conversation of its client, the newest activity first, and no other client's
    assert ids(response) == [
        world.ventas_waiting.pk,
        world.beto_open.pk,
        world.ana_open.pk,
        world.waiting.pk,
        world.resolved.pk,
    ]
    body = response.json()
    assert body["count"] == 5 and body["next"] is None
    row = next(r for r in body["results"] if r["id"] == world.ana_open.pk)
    conv = world.ana_open
    assert row == {
        "id": conv.pk,
        "status": "open",
        "queue": {"id": world.soporte.pk, "name": "Soporte"},
        "number": {"id": world.cloud.pk, "alias": "Linea Cloud"},
        "contact": {"id": conv.contact_id, "name": "Lucía Pérez", "phone": conv.contact.phone},
        "assigned_to": {"id": world.ana.pk, "username": "ana", "name": "ana"},
        "last_message_at": row["last_message_at"],
        "last_inbound_at": row["last_inbound_at"],
        "unread_count": 2,
        "ai_stop_reason": "",
        "created_at": row["created_at"],
    }
    assert when(row["last_message_at"]) == conv.last_message_at
    assert when(row["last_inbound_at"]) == conv.last_inbound_at
    assert when(row["created_at"]) == Conversation.objects.get(pk=conv.pk).created_at
    waiting = next(r for r in body["results"] if r["id"] == world.waiting.pk)
    assert waiting["assigned_to"] is None and waiting["status"] == "pending"
    assert world.cloud.access_token not in response.content.decode()  # never a secret


def test_the_list_comes_a_page_at_a_time(world):
    api = as_token(world)

    first = api.get(LIST, {"page_size": 2})
    second = api.get(LIST, {"page_size": 2, "page": 3})

    assert first.json()["count"] == 5 and len(first.json()["results"]) == 2 and first.json()["next"]
    assert ids(second) == [world.resolved.pk]
    beyond = api.get(LIST, {"page": 9})
    assert beyond.status_code == 404 and error_of(beyond)["code"] == "not_found"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, ["ventas_waiting", "waiting"]),
        ({"status": "active"}, ["ventas_waiting", "beto_open", "ana_open", "waiting"]),
        ({"status": "resolved"}, ["resolved"]),
        ({"status": "ai"}, []),
        ({"queue": "ventas"}, ["ventas_waiting"]),
        ({"number": "sandbox"}, ["ventas_waiting"]),
        ({"assigned_to": "none"}, ["ventas_waiting", "waiting"]),
        ({"assigned_to": "ana"}, ["ana_open", "resolved"]),
        ({"assigned_to": "me"}, []),  # a token is nobody's agent
        ({"contact": "waiting"}, ["waiting"]),
        ({"q": "rosa"}, ["waiting"]),
        ({"q": "phone of beto_open"}, ["beto_open"]),
        ({"q": "Hola, soy Mario"}, ["beto_open"]),  # a word of a message, as the inbox searches
        ({"status": "open", "queue": "soporte"}, ["beto_open", "ana_open"]),
        ({"updated_since": "future"}, []),
        ({"updated_since": "past"}, ["ventas_waiting", "beto_open", "ana_open", "waiting", "resolved"]),
    ],
)
def test_conversations_can_be_filtered(world, params, expected):
    resolve = {
        "queue": lambda v: getattr(world, v).pk,
        "number": lambda v: getattr(world, v).pk,
        "assigned_to": lambda v: getattr(world, v).pk if v in ("ana", "beto") else v,
        "contact": lambda v: getattr(world, v).contact_id,
        "q": lambda v: spaced(getattr(world, v.split()[-1]).contact.phone[-6:]) if v.startswith("phone") else v,
        "updated_since": lambda v: (timezone.now() + timedelta(hours=1 if v == "future" else -1)).isoformat(),
    }
    query = {name: resolve.get(name, lambda v: v)(value) for name, value in params.items()}

    response = as_token(world).get(LIST, query)

    assert ids(response) == [getattr(world, name).pk for name in expected]


def test_assigned_to_me_is_the_signed_in_agent(world):
    assert ids(as_user(world.ana).get(LIST, {"assigned_to": "me"})) == [world.ana_open.pk, world.resolved.pk]


def test_bad_filters_are_refused_with_the_fields_named(world):
    response = as_token(world).get(
        LIST,
        {"status": "closed", "queue": "abc", "assigned_to": "someone", "updated_since": "yesterday", "contact": "0"},
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"status", "queue", "assigned_to", "updated_since", "contact"}


@pytest.mark.parametrize("value", ["²", "9" * 5000, "١٢"], ids=["superscript digit", "5000 digits", "arabic digits"])
def test_odd_digits_in_assigned_to_are_refused_not_a_crash(world, value):
    response = as_token(world).get(LIST, {"assigned_to": value})
    assert response.status_code == 400 and "assigned_to" in error_of(response)["fields"]


def test_an_id_past_any_integer_is_refused_not_a_crash(world):
    response = as_token(world).get(LIST, {"queue": "9" * 30})
    assert response.status_code == 400 and "queue" in error_of(response)["fields"]
    assert as_token(world).get(f"{LIST}{'9' * 30}/").status_code == 404


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("staff", ["ventas_waiting", "beto_open", "ana_open", "waiting", "resolved"]),
        ("supervisor", ["beto_open", "ana_open", "waiting", "resolved"]),
        ("ana", ["beto_open", "ana_open", "waiting", "resolved"]),
        ("carla", ["ventas_waiting"]),
    ],
)
def test_people_see_what_the_crm_shows_them(world, who, expected):
    response = as_user(getattr(world, who)).get(LIST)

    assert ids(response) == [getattr(world, name).pk for name in expected]


def test_the_list_costs_the_same_queries_however_many_rows(world):
    api = as_token(world)
    api.get(LIST)  # the token's "last used" is written once a minute: out of the way

    with CaptureQueriesContext(connection) as few:
        assert api.get(LIST, {"status": "pending"}).status_code == 200
    with CaptureQueriesContext(connection) as many:
        assert api.get(LIST).status_code == 200

    assert len(many) == len(few) <= 4


# -- one conversation -------------------------------------------------------------------------------------


def test_a_conversation_with_its_times_and_the_24_hour_window(world):
    conv = world.waiting

    body = as_token(world).get(url(conv)).json()

    assert body["id"] == conv.pk and body["status"] == "pending"
    assert when(body["waiting_since"]) == conv.waiting_since
    assert body["assigned_at"] is None and body["resolved_at"] is None and body["snoozed_until"] is None
    assert body["window"] == {
        "open": True,
        "templates": True,
        "closes_at": body["window"]["closes_at"],
    }
    assert when(body["window"]["closes_at"]) == conv.last_inbound_at + timedelta(hours=24)
    assert body["contact"]["name"] == "Rosa Quispe"


def test_the_window_is_closed_a_day_after_the_customer_wrote(world):
    close_window(world.waiting)

    window = as_token(world).get(url(world.waiting)).json()["window"]

    assert window["open"] is False and window["templates"] is True
    assert when(window["closes_at"]) < timezone.now()


def test_a_sandbox_number_has_no_window_nor_templates(world):
    window = as_token(world).get(url(world.ventas_waiting)).json()["window"]

    assert window == {"open": True, "templates": False, "closes_at": None}


@pytest.mark.parametrize(("who", "conv"), [("token", "foreign"), ("carla", "ana_open"), ("ana", "ventas_waiting")])
def test_a_conversation_out_of_sight_is_not_found(world, who, conv):
    api = as_token(world, SEND) if who == "token" else as_user(getattr(world, who))
    target = getattr(world, conv)

    for path in (url(target), url(target, "messages")):
        response = api.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert api.post(url(target, "resolve")).status_code == 404
    assert Conversation.objects.get(pk=target.pk).status == target.status


# -- messages ---------------------------------------------------------------------------------------------


def test_messages_oldest_first_with_notes_senders_and_media(world):
    conv = world.ana_open
    question = conv.messages.get()
    photo = MessageFactory(
        conversation=conv,
        kind=Message.Kind.IMAGE,
        body="",
        media_id="media-1",
        media_mime_type="image/jpeg",
        media_filename="foto.jpg",
    )
    answer = MessageFactory(
        conversation=conv,
        direction=Message.Direction.OUTBOUND,
        origin=Message.Origin.AGENT,
        status=Message.Status.DELIVERED,
        body="Claro",
        sent_by=world.ana,
        quoted=question,
    )
    note = MessageFactory(
        conversation=conv,
        direction=Message.Direction.INTERNAL,
        kind=Message.Kind.NOTE,
        origin=Message.Origin.AGENT,
        body="Cliente frecuente",
        sent_by=world.ana,
    )

    response = as_token(world).get(url(conv, "messages"))

    assert ids(response) == [question.pk, photo.pk, answer.pk, note.pk]
    rows = {row["id"]: row for row in response.json()["results"]}
    assert rows[question.pk]["media"] is None and rows[question.pk]["direction"] == "in"
    assert rows[photo.pk]["media"] == {"mime_type": "image/jpeg", "filename": "foto.jpg"}
    assert rows[answer.pk] == {
        "id": answer.pk,
        "direction": "out",
        "origin": "agent",
        "kind": "text",
        "body": "Claro",
        "status": "delivered",
        "error_code": "",
        "error_reason": "",
        "provider_message_id": None,
        "reply_to": question.pk,
        "sent_by": {"id": world.ana.pk, "username": "ana"},
        "created_at": rows[answer.pk]["created_at"],
        "updated_at": rows[answer.pk]["updated_at"],
        "status_at": None,
        "media": None,
    }
    assert rows[note.pk]["direction"] == "int" and rows[note.pk]["kind"] == "note"
    newest = as_token(world).get(url(conv, "messages"), {"order": "newest", "page_size": 2})
    assert ids(newest) == [note.pk, answer.pk]


def test_messages_since_a_time_for_polling(world):
    conv = world.ana_open
    Message.objects.filter(conversation=conv).update(updated_at=timezone.now() - timedelta(hours=1))
    fresh = MessageFactory(conversation=conv, body="¿Sigue ahí?")

    response = as_token(world).get(
        url(conv, "messages"), {"since": (timezone.now() - timedelta(minutes=1)).isoformat()}
    )

    assert ids(response) == [fresh.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"order": "sideways"}, "order"), ({"since": "ayer"}, "since"), ({"since": "0001-01-01T00:00:00Z"}, "since")],
)
def test_bad_message_filters_are_refused(world, params, field):
    response = as_token(world).get(url(world.ana_open, "messages"), params)

    assert response.status_code == 400 and field in error_of(response)["fields"]


# -- sending ----------------------------------------------------------------------------------------------


def test_a_send_token_sends_text_as_the_integration_without_taking_the_conversation(world):
    # given Rosa waiting in Soporte on the Cloud number (she wrote 30 minutes ago), with unread messages
    conv = world.waiting
    Conversation.objects.filter(pk=conv.pk).update(unread_count=2)
    token, key = token_for(world.client, SEND, name="ERP")

    # when the ERP answers her through the API
    response = api_client(key).post(url(conv, "messages"), {"text": "  Su pedido salió hoy.  "}, format="json")

    # then the message is stored as the integration's, waiting for a worker to send it
    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.conversation_id == conv.pk and message.direction == Message.Direction.OUTBOUND
    assert message.body == "Su pedido salió hoy." and message.kind == Message.Kind.TEXT
    assert message.status == Message.Status.PENDING
    assert message.origin == Message.Origin.API and message.sent_by == token.user
    body = response.json()
    assert body["status"] == "pending" and body["origin"] == "api"
    assert body["sent_by"] == {"id": token.user.pk, "username": token.user.username}
    # and the conversation still waits for an agent (a token is nobody's agent), its unread messages answered
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.PENDING and conv.assigned_to is None
    assert conv.unread_count == 0 and conv.last_message_at == message.status_at
    assert notices(conv) == []


def test_an_agent_sending_through_the_api_takes_the_conversation_as_in_the_crm(world):
    conv = world.ventas_waiting

    response = as_user(world.carla).post(url(conv, "messages"), {"text": "Hola Pedro"}, format="json")

    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.origin == Message.Origin.AGENT and message.sent_by == world.carla
    assert message.status == Message.Status.PENDING
    conv.refresh_from_db()
    assert conv.status == Conversation.Status.OPEN and conv.assigned_to == world.carla
    assert notices(conv) == ["carla took the conversation."]


def test_a_reply_can_quote_a_message_of_the_conversation(world):
    question = world.ana_open.messages.get()

    response = as_user(world.ana).post(
        url(world.ana_open, "messages"), {"text": "Sí", "reply_to": question.pk}, format="json"
    )

    assert response.status_code == 201 and response.json()["reply_to"] == question.pk
    assert Message.objects.get(pk=response.json()["id"]).quoted == question


def test_an_agent_cannot_answer_a_colleagues_conversation_but_their_supervisor_can(world):
    before = state(world.beto_open)

    refused = as_user(world.ana).post(url(world.beto_open, "messages"), {"text": "Hola"}, format="json")

    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    assert state(world.beto_open) == before

    allowed = as_user(world.supervisor).post(url(world.beto_open, "messages"), {"text": "Hola"}, format="json")

    assert allowed.status_code == 201
    world.beto_open.refresh_from_db()
    assert world.beto_open.assigned_to == world.beto  # the supervisor answered; beto keeps it


def test_free_text_after_the_window_closed_is_refused_with_its_code(world):
    close_window(world.waiting)
    before = state(world.waiting)

    response = as_token(world, SEND).post(url(world.waiting, "messages"), {"text": "Hola"}, format="json")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "window_closed" and "template" in error["message"]
    assert state(world.waiting) == before


def test_a_template_goes_out_after_the_window_closed(world, order_template):
    close_window(world.waiting)

    response = as_token(world, ADMIN).post(
        url(world.waiting, "messages"),
        {"template": {"name": "pedido_listo", "language": "es", "parameters": ["Rosa", "#123"]}},
        format="json",
    )

    assert response.status_code == 201, response.content
    message = Message.objects.get(pk=response.json()["id"])
    assert message.kind == Message.Kind.TEMPLATE and message.status == Message.Status.PENDING
    assert message.origin == Message.Origin.API
    assert message.payload["template"] == {
        "name": "pedido_listo",
        "language": {"code": "es"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Rosa"}, {"type": "text", "text": "#123"}]}
        ],
    }


def test_a_template_is_not_sent_to_a_contact_who_opted_out(world, order_template):
    world.waiting.contact.opted_out_at = timezone.now()
    world.waiting.contact.save()
    before = state(world.waiting)

    response = as_token(world, SEND).post(
        url(world.waiting, "messages"),
        {"template": {"name": "pedido_listo", "language": "es", "parameters": ["Rosa", "#1"]}},
        format="json",
    )

    assert response.status_code == 409 and error_of(response)["code"] == "opted_out"
    assert state(world.waiting) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": "a\x00b"}, "text"),
        ({"text": "Hola", "template": {"name": "pedido_listo", "language": "es"}}, "text"),
        ({"template": {"language": "es"}}, "template.name"),
        ({"template": {"name": "otro", "language": "es"}}, "template.name"),
        ({"template": {"name": "pedido_listo", "language": "en"}}, "template.name"),
        ({"template": {"name": "pedido_listo", "language": "es", "parameters": ["Rosa"]}}, "template.parameters"),
        ({"template": {"name": "pedido_listo", "language": "es", "parameters": ["Rosa", ""]}}, "template.parameters.1"),
        ({"text": "Hola", "reply_to": "foreign"}, "reply_to"),
    ],
)
def test_bad_messages_are_refused_with_the_field_named(world, order_template, body, field):
    if body.get("reply_to") == "foreign":
        body["reply_to"] = world.foreign.messages.get().pk
    before = state(world.waiting)

    response = as_token(world, SEND).post(url(world.waiting, "messages"), body, format="json")

    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert state(world.waiting) == before


def test_a_template_of_another_client_or_inactive_cannot_be_used(world, order_template):
    MessageTemplate.objects.create(client=world.foreign.client, name="ajeno", language="es", body="Hola")
    order_template.is_active = False
    order_template.save()

    for name in ("ajeno", "pedido_listo"):
        response = as_token(world, SEND).post(
            url(world.waiting, "messages"),
            {"template": {"name": name, "language": "es", "parameters": []}},
            format="json",
        )
        assert response.status_code == 400 and "template.name" in error_of(response)["fields"]


def test_nothing_is_sent_on_a_resolved_conversation(world):
    before = state(world.resolved)

    response = as_token(world, SEND).post(url(world.resolved, "messages"), {"text": "Hola"}, format="json")

    assert response.status_code == 409 and error_of(response)["code"] == "resolved"
    assert state(world.resolved) == before


def test_a_message_from_the_api_stops_the_ai_assistant_and_the_queue_hands_the_conversation_out(world):
    # given Rosa answered by the AI assistant, and ana online in Soporte
    conv = world.waiting
    Conversation.objects.filter(pk=conv.pk).update(status=Conversation.Status.AI)
    AgentAvailability.objects.filter(user=world.ana).update(status=AgentAvailability.Status.ONLINE)

    # when the ERP writes to her
    response = as_token(world, SEND).post(url(conv, "messages"), {"text": "Le escribe ventas"}, format="json")

    # then the assistant stopped as for an agent's reply, and the queue gave the conversation to ana
    assert response.status_code == 201, response.content
    conv.refresh_from_db()
    assert conv.ai_stop_reason == Conversation.AIStopReason.AGENT_REPLIED and conv.ai_stopped_at
    assert conv.status == Conversation.Status.OPEN and conv.assigned_to == world.ana
    assert AIActivity.objects.filter(conversation=conv, kind=AIActivity.Kind.HANDOFF).count() == 1
    assert notices(conv) == ["The AI assistant stopped: n8n sent a message through the API."]
    assert conv.messages.get(direction=Message.Direction.OUTBOUND).origin == Message.Origin.API


# -- assigning --------------------------------------------------------------------------------------------


def test_a_token_gives_a_waiting_conversation_to_an_agent_of_its_queue(world):
    response = as_token(world, SEND).post(url(world.waiting, "assign"), {"agent": world.beto.pk}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "open" and body["assigned_to"]["id"] == world.beto.pk
    assert body["assigned_at"] is not None and "window" in body
    world.waiting.refresh_from_db()
    assert world.waiting.assigned_to == world.beto and world.waiting.status == Conversation.Status.OPEN
    assert notices(world.waiting) == ["n8n transferred the conversation to beto."]


def test_a_conversation_moves_to_another_queue_or_to_an_agent_of_it(world):
    api = as_token(world, SEND)

    to_queue = api.post(url(world.waiting, "assign"), {"queue": world.ventas.pk}, format="json")
    to_agent = api.post(
        url(world.ana_open, "assign"), {"queue": world.ventas.pk, "agent": world.carla.pk}, format="json"
    )

    assert to_queue.status_code == 200 and to_agent.status_code == 200
    world.waiting.refresh_from_db()
    assert world.waiting.queue == world.ventas and world.waiting.status == Conversation.Status.PENDING
    assert world.waiting.assigned_to is None
    world.ana_open.refresh_from_db()
    assert world.ana_open.queue == world.ventas and world.ana_open.assigned_to == world.carla


def test_an_agent_takes_a_waiting_conversation_by_naming_themselves(world):
    response = as_user(world.ana).post(url(world.waiting, "assign"), {"agent": world.ana.pk}, format="json")

    assert response.status_code == 200, response.content
    world.waiting.refresh_from_db()
    assert world.waiting.assigned_to == world.ana and world.waiting.status == Conversation.Status.OPEN
    assert notices(world.waiting) == ["ana took the conversation."]


def test_an_agent_cannot_move_a_colleagues_conversation(world):
    before = state(world.beto_open)

    response = as_user(world.ana).post(url(world.beto_open, "assign"), {"agent": world.ana.pk}, format="json")

    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert state(world.beto_open) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent"),
        ({"agent": "carla"}, "agent"),  # not in Soporte
        ({"agent": "token"}, "agent"),  # a token is nobody's agent
        ({"agent": 99999999}, "agent"),
        ({"agent": "x"}, "agent"),
        ({"queue": "foreign"}, "queue"),
        ({"queue": "inactive"}, "queue"),
        ({"queue": 99999999}, "queue"),
        ({"queue": "ventas", "agent": "beto"}, "agent"),  # beto is not in Ventas
    ],
)
def test_bad_assignments_are_refused_with_the_field_named(world, body, field):
    token, key = token_for(world.client, SEND)
    targets = {
        "carla": world.carla.pk,
        "beto": world.beto.pk,
        "token": token.user.pk,
        "ventas": world.ventas.pk,
        "foreign": world.foreign.queue_id,
        "inactive": QueueFactory(client=world.client, name="Cerrada", is_active=False).pk,
    }
    body = {name: targets.get(value, value) for name, value in body.items()}
    before = state(world.waiting)

    response = api_client(key).post(url(world.waiting, "assign"), body, format="json")

    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert state(world.waiting) == before


@pytest.mark.parametrize(
    ("conv", "body", "code"), [("waiting", "soporte", "same_queue"), ("resolved", "ana", "resolved")]
)
def test_assignments_the_conversations_state_does_not_allow_are_conflicts(world, conv, body, code):
    target = getattr(world, conv)
    body = {"queue": world.soporte.pk} if body == "soporte" else {"agent": world.ana.pk}
    before = state(target)

    response = as_token(world, SEND).post(url(target, "assign"), body, format="json")

    assert response.status_code == 409 and error_of(response)["code"] == code
    assert state(target) == before


# -- resolving --------------------------------------------------------------------------------------------


def test_a_token_resolves_a_conversation(world):
    response = as_token(world, SEND).post(url(world.ana_open, "resolve"))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "resolved" and response.json()["resolved_at"]
    world.ana_open.refresh_from_db()
    assert world.ana_open.status == Conversation.Status.RESOLVED and world.ana_open.resolved_at
    assert world.ana_open.unread_count == 0
    assert notices(world.ana_open) == ["n8n resolved the conversation."]
    # again: nothing more happens
    assert as_token(world, SEND).post(url(world.ana_open, "resolve")).status_code == 200
    assert len(notices(world.ana_open)) == 1


@pytest.mark.parametrize(
    ("who", "conv", "status"),
    [
        ("ana", "ana_open", 200),
        ("ana", "beto_open", 403),
        ("supervisor", "beto_open", 200),
        ("staff", "ventas_waiting", 200),
    ],
)
def test_people_resolve_what_the_crm_lets_them_act_on(world, who, conv, status):
    target = getattr(world, conv)

    response = as_user(getattr(world, who)).post(url(target, "resolve"))

    assert response.status_code == status
    target.refresh_from_db()
    assert (target.status == Conversation.Status.RESOLVED) == (status == 200)


# -- contacts ---------------------------------------------------------------------------------------------


def contact_names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


def test_a_token_lists_its_clients_contacts(world):
    response = as_token(world).get(CONTACTS)

    assert contact_names(response) == ["Elena Soto", "Lucía Pérez", "Mario Díaz", "Pedro Ruiz", "Rosa Quispe"]
    rosa = world.waiting.contact
    row = next(r for r in response.json()["results"] if r["id"] == rosa.pk)
    assert row == {
        "id": rosa.pk,
        "name": "Rosa Quispe",
        "phone": rosa.phone,
        "wa_id": rosa.wa_id,
        "username": "",
        "opted_out_at": None,
        "created_at": row["created_at"],
    }


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("staff", ["Elena Soto", "Lucía Pérez", "Mario Díaz", "Pedro Ruiz", "Rosa Quispe", "Sin conversación"]),
        ("supervisor", ["Elena Soto", "Lucía Pérez", "Mario Díaz", "Rosa Quispe"]),
        ("carla", ["Pedro Ruiz"]),
    ],
)
def test_people_see_the_contacts_of_the_conversations_they_see(world, who, expected):
    ContactFactory(client=world.client, name="Sin conversación")  # staff see it; agents have no conversation with it

    assert contact_names(as_user(getattr(world, who)).get(CONTACTS)) == expected


def test_contacts_can_be_searched_and_filtered_by_opt_out(world):
    rosa = world.waiting.contact
    rosa.opted_out_at = timezone.now()
    rosa.save()
    api = as_token(world)

    assert contact_names(api.get(CONTACTS, {"q": "quispe"})) == ["Rosa Quispe"]
    assert contact_names(api.get(CONTACTS, {"q": rosa.phone[-6:]})) == ["Rosa Quispe"]
    assert contact_names(api.get(CONTACTS, {"opted_out": "true"})) == ["Rosa Quispe"]
    assert "Rosa Quispe" not in contact_names(api.get(CONTACTS, {"opted_out": "false"}))
    bad = api.get(CONTACTS, {"opted_out": "maybe"})
    assert bad.status_code == 400 and set(error_of(bad)["fields"]) == {"opted_out"}


def test_a_contact_with_the_conversations_the_caller_sees(world):
    # given Pedro also wrote to Soporte on the Cloud number last week (resolved)
    pedro = world.ventas_waiting.contact
    earlier = make_conversation(
        world.client, world.cloud, world.soporte, status=Conversation.Status.RESOLVED, minutes_ago=7 * 24 * 60
    )
    Conversation.objects.filter(pk=earlier.pk).update(contact=pedro)

    # staff (a token) see both, the newest first; carla only the one of her queue
    by_token = as_token(world).get(f"{CONTACTS}{pedro.pk}/").json()
    by_carla = as_user(world.carla).get(f"{CONTACTS}{pedro.pk}/").json()

    assert by_token["name"] == "Pedro Ruiz" and by_token["phone"] == pedro.phone
    assert by_token["conversations"] == [
        {
            "id": world.ventas_waiting.pk,
            "status": "pending",
            "number": {"id": world.sandbox.pk, "alias": "Linea Sandbox"},
            "last_message_at": by_token["conversations"][0]["last_message_at"],
        },
        {
            "id": earlier.pk,
            "status": "resolved",
            "number": {"id": world.cloud.pk, "alias": "Linea Cloud"},
            "last_message_at": by_token["conversations"][1]["last_message_at"],
        },
    ]
    assert [c["id"] for c in by_carla["conversations"]] == [world.ventas_waiting.pk]


@pytest.mark.parametrize(("who", "conv"), [("token", "foreign"), ("carla", "ana_open")])
def test_a_contact_out_of_sight_is_not_found(world, who, conv):
    api = as_token(world) if who == "token" else as_user(getattr(world, who))

    response = api.get(f"{CONTACTS}{getattr(world, conv).contact_id}/")

    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
