"""Each CRM page costs a fixed number of queries, however many conversations, messages, agents, templates and
quick replies there are (crm/inbox.py promises it; Zulip's `assert_database_query_count` is the model).

Every test measures a page on the small `world` of tests/crm/conftest.py, checks the count against the number
written in its id (so a change shows up in review), grows the data tenfold, and asserts the very same count.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message, MessageTemplate
from crm.models import ClientMembership
from queues.models import AgentAvailability, QueueMembership, QuickReply
from tests.conversations.factories import MessageFactory
from tests.crm.conftest import conversation, outbound
from tests.crm.factories import UserFactory

OPEN, PENDING = Conversation.Status.OPEN, Conversation.Status.PENDING
_seq = count()


# -- data ---------------------------------------------------------------------------------------------------


@pytest.fixture
def small(world):
    """The world, plus one open conversation each for the supervisor and staff, so every role's Mine tab lists
    something on the small data too."""
    conversation(world.client, world.cloud, world.soporte, status=OPEN, agent=world.supervisor, name="Hola Sofía")
    conversation(world.client, world.sandbox, world.ventas, status=OPEN, agent=world.staff, name="Hola Staff")
    return world


def history(conv: Conversation, world, n: int) -> None:
    """`n` messages of every sort a conversation page shows: customer texts and photos, answers by different
    agents (delivered, failed, quoting the customer), templates, notes and system notices."""
    agents = [world.ana, world.beto, world.supervisor, world.staff, world.carla]
    last_inbound = None
    for i in range(n):
        agent = agents[i % len(agents)]
        kind = i % 7
        if kind == 0:
            last_inbound = MessageFactory(conversation=conv, body=f"Hola, consulta {i}")
        elif kind == 1:
            outbound(conv, f"Respuesta {i}", sent_by=agent, quoted=last_inbound)
        elif kind == 2:
            MessageFactory(
                conversation=conv,
                direction=Message.Direction.INTERNAL,
                origin=Message.Origin.AGENT,
                kind=Message.Kind.NOTE,
                body=f"Nota {i}",
                sent_by=agent,
            )
        elif kind == 3:
            MessageFactory(
                conversation=conv,
                direction=Message.Direction.INTERNAL,
                origin=Message.Origin.SYSTEM,
                kind=Message.Kind.SYSTEM,
                body=f"{agent.username} took the conversation.",
                sent_by=agent,
            )
        elif kind == 4:
            outbound(conv, f"Template pedido_listo (es): {i}", kind=Message.Kind.TEMPLATE, sent_by=agent)
        elif kind == 5:
            MessageFactory(conversation=conv, kind=Message.Kind.IMAGE, body="", media_id=f"media-{next(_seq)}")
        else:
            outbound(
                conv,
                f"Fallido {i}",
                status=Message.Status.FAILED,
                error_code="131026",
                error_reason="Not on WhatsApp",
                sent_by=agent,
                quoted=last_inbound,
            )
    Conversation.objects.filter(pk=conv.pk).update(last_message_at=timezone.now())


def grow(world, *, focus: tuple[Conversation, ...] = (), per_kind: int = 5, messages: int = 40) -> None:
    """Ten times the data: more agents and supervisors in both queues, templates, quick replies, conversations
    of every kind (mine, colleagues', waiting, resolved, snoozed, another business's) each with a history, and
    a long history on the `focus` conversations."""
    for i in range(4):
        for queue, role in ((world.soporte, "agent"), (world.ventas, "agent"), (world.soporte, "supervisor")):
            user = UserFactory(username=f"extra-{next(_seq)}", first_name="Extra", last_name=str(i))
            ClientMembership.objects.get_or_create(user=user, client=world.client)
            QueueMembership.objects.create(queue=queue, user=user, role=role)
            AgentAvailability.objects.create(user=user, status=AgentAvailability.Status.ONLINE)
    for i in range(6):
        MessageTemplate.objects.create(client=world.client, name=f"plantilla_{i}", body="Hola {{1}}")
        MessageTemplate.objects.create(client=world.client, number=world.cloud, name=f"linea_{i}", body="Hola {{1}}")
        QuickReply.objects.create(queue=world.soporte, shortcut=f"s{i}", text=f"Respuesta rápida {i}")
        QuickReply.objects.create(queue=world.ventas, shortcut=f"v{i}", text=f"Respuesta rápida {i}")

    kinds = [
        (world.client, world.cloud, world.soporte, dict(status=OPEN, agent=world.ana)),
        (world.client, world.cloud, world.soporte, dict(status=OPEN, agent=world.beto)),
        (world.client, world.cloud, world.soporte, dict(status=OPEN, agent=world.supervisor)),
        (world.client, world.cloud, world.soporte, dict(status=PENDING)),
        (world.client, world.cloud, world.soporte, dict(status=OPEN, agent=world.ana, unread_count=3)),
        (
            world.client,
            world.cloud,
            world.soporte,
            dict(status=OPEN, agent=world.ana, snoozed_until=timezone.now() + timedelta(hours=2)),
        ),
        (world.client, world.cloud, world.soporte, dict(status=Conversation.Status.RESOLVED, agent=world.ana)),
        (world.client, world.sandbox, world.ventas, dict(status=OPEN, agent=world.carla)),
        (world.client, world.sandbox, world.ventas, dict(status=OPEN, agent=world.staff)),
        (world.client, world.sandbox, world.ventas, dict(status=PENDING)),
        (world.foreign.client, world.foreign.number, world.foreign.queue, dict(status=PENDING)),
    ]
    for i in range(per_kind):
        for client_, number, queue, extra in kinds:
            conv = conversation(client_, number, queue, name=f"Hola Cliente {next(_seq)}", minutes_ago=3 + i, **extra)
            history(conv, world, 4)
    for conv in focus:
        history(conv, world, messages)


def rows_in(response) -> int:
    text = response.json()["rows"] if response["Content-Type"] == "application/json" else response.content.decode()
    return len(re.findall(r'data-conversation="\d+"', text))


def messages_in(response) -> int:
    return len(re.findall(r'<li id="m\d+"', response.content.decode()))


def user_of(world, role: str):
    return {"agent": world.ana, "supervisor": world.supervisor, "staff": world.staff}[role]


def measure(client, path: str, params: dict):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, params)
    assert response.status_code == 200
    return response, len(queries)


def queries_listed(captured) -> str:
    return "\n".join(q["sql"][:200] for q in captured)


# -- inbox --------------------------------------------------------------------------------------------------

INBOX_CASES = [
    # (role, tab, queries): the count is the same with 6 conversations as with 60
    ("agent", "mine", 14),
    ("agent", "queue", 14),
    ("supervisor", "mine", 14),
    ("supervisor", "queue", 14),
    ("supervisor", "all", 14),
    ("staff", "mine", 14),
    ("staff", "queue", 14),
    ("staff", "all", 14),
]


@pytest.mark.parametrize("role, tab, expected", INBOX_CASES, ids=[f"{r}-{t}-{n}-queries" for r, t, n in INBOX_CASES])
@pytest.mark.parametrize("fragment", ["page", "rows"])
def test_inbox_with_a_search_costs_the_same_queries_with_ten_times_the_data(
    client, small, django_assert_num_queries, role, tab, expected, fragment
):
    # given a user on the small world, searching a word every conversation has
    client.force_login(user_of(small, role))
    params = {"tab": tab, "q": "hola", **({"fragment": "rows"} if fragment == "rows" else {})}

    # when they open the tab
    response, n = measure(client, "/inbox/", params)
    shown = rows_in(response)

    # then it costs the known number of queries
    assert shown > 0
    assert n == expected, f"the inbox now costs {n} queries, not {expected}"

    # when ten times as many conversations, messages, agents, templates and quick replies exist
    grow(small)

    # then the same page costs exactly the same, and lists more
    with django_assert_num_queries(n):
        response = client.get("/inbox/", params)
    assert response.status_code == 200
    assert rows_in(response) > shown


@pytest.mark.parametrize("role", ["agent", "supervisor", "staff"])
def test_inbox_filters_cost_no_more_with_more_data(client, small, django_assert_num_queries, role):
    client.force_login(user_of(small, role))
    params = {"tab": "all" if role != "agent" else "mine", "status": "all", "queue": small.soporte.pk, "q": "hola"}
    params["number"] = small.cloud.pk

    _response, n = measure(client, "/inbox/", params)
    grow(small)

    with django_assert_num_queries(n):
        assert client.get("/inbox/", params).status_code == 200


# -- one conversation ---------------------------------------------------------------------------------------

CONVERSATION_CASES = [
    # (role, whose conversation, queries); the agent's page also clears her unread count (one UPDATE); one reads the
    # AI assistant's settings (may the agent hand it back?)
    ("agent", "ana_open", 14),
    ("supervisor", "beto_open", 13),
    ("staff", "ventas_waiting", 12),
]


@pytest.mark.parametrize(
    "role, which, expected", CONVERSATION_CASES, ids=[f"{r}-{w}-{n}-queries" for r, w, n in CONVERSATION_CASES]
)
def test_conversation_page_costs_the_same_queries_with_a_long_history(
    client, small, django_assert_num_queries, role, which, expected
):
    # given a conversation with one message, unread by its agent
    conv = getattr(small, which)
    Conversation.objects.filter(pk=conv.pk).update(unread_count=2)
    client.force_login(user_of(small, role))

    # when its page opens
    response, n = measure(client, f"/conversations/{conv.pk}/", {})
    shown = messages_in(response)

    # then it costs the known number of queries
    assert n == expected, f"the conversation page now costs {n} queries, not {expected}"

    # when the history holds 40 more messages (quoted answers, senders, notes, notices, templates, photos) and
    # there are more agents to transfer to, templates and quick replies
    grow(small, focus=(conv,))
    Conversation.objects.filter(pk=conv.pk).update(unread_count=2)

    # then the page costs exactly the same
    with django_assert_num_queries(n):
        response = client.get(f"/conversations/{conv.pk}/")
    assert response.status_code == 200
    assert messages_in(response) == shown + 40


@pytest.mark.parametrize("role, which", [(r, w) for r, w, _ in CONVERSATION_CASES])
def test_messages_since_fragment_costs_the_same_with_more_changes(
    client, small, django_assert_num_queries, role, which
):
    conv = getattr(small, which)
    client.force_login(user_of(small, role))
    params = {"fragment": "messages", "since": (timezone.now() - timedelta(minutes=5)).isoformat()}

    Conversation.objects.filter(pk=conv.pk).update(unread_count=2)  # the agent's reads also clear it

    response, n = measure(client, f"/conversations/{conv.pk}/", params)
    assert len(response.json()["items"]) == 1
    grow(small, focus=(conv,))
    Conversation.objects.filter(pk=conv.pk).update(unread_count=2)

    with django_assert_num_queries(n):
        response = client.get(f"/conversations/{conv.pk}/", params)
    assert len(response.json()["items"]) == 41


# -- dashboard ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["supervisor", "staff"])
def test_dashboard_costs_the_same_queries_with_more_agents_and_conversations(
    client, small, django_assert_num_queries, role
):
    client.force_login(user_of(small, role))

    response, n = measure(client, "/dashboard/", {})
    agents = response.content.decode().count("data-agent=")
    grow(small)

    with django_assert_num_queries(n):
        response = client.get("/dashboard/")
    assert response.content.decode().count("data-agent=") > agents
