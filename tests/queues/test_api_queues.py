"""Queues and agents over the REST API (queues/api/views.py, docs/api.md): read only, with the CRM's rules of who
sees which queues and agents (crm/access.py), against the real database and Redis."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation
from crm.models import ApiToken, ClientMembership
from crm.roles import STAFF
from crm.services import api_token_revoke
from queues.models import AgentAvailability, QueueMembership
from queues.services import agent_availability_set
from tests.conversations.factories import ConversationFactory
from tests.crm.api_helpers import api_client, error_of, token_for
from tests.crm.factories import UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory

pytestmark = pytest.mark.django_db

QUEUES, AGENTS = "/api/v1/queues/", "/api/v1/agents/"
SUPERVISOR = QueueMembership.Role.SUPERVISOR


@dataclass
class Team:
    soporte: object
    caja: object
    closed: object
    foreign: object
    staff: object
    sara: object  # supervisor of soporte
    ana: object  # agent of soporte
    beto: object  # agent of caja
    carla: object  # agent of soporte and caja


def member(client, username, *queues, role=QueueMembership.Role.AGENT, capacity=5, first_name=""):
    user = UserFactory(username=username, first_name=first_name)
    ClientMembership.objects.create(user=user, client=client)
    for queue in queues:
        QueueMembershipFactory(queue=queue, user=user, role=role, capacity=capacity)
    return user


@pytest.fixture
def team(ventas, marketing) -> Team:
    soporte = QueueFactory(client=ventas, name="Soporte", description="Dudas y reclamos")
    caja = QueueFactory(client=ventas, name="Caja")
    closed = QueueFactory(client=ventas, name="Antigua", is_active=False)
    foreign = QueueFactory(client=marketing, name="Ajena")
    staff = member(ventas, "operadora")
    staff.groups.add(Group.objects.get(name=STAFF))
    sara = member(ventas, "sara", soporte, role=SUPERVISOR, capacity=0)
    ana = member(ventas, "ana", soporte, first_name="Ana")
    beto = member(ventas, "beto", caja, capacity=3)
    carla = member(ventas, "carla", soporte, caja)
    member(marketing, "zoe", foreign)
    agent_availability_set(user=ana, status=AgentAvailability.Status.ONLINE)
    agent_availability_set(user=beto, status=AgentAvailability.Status.AWAY)
    # Two waiting in soporte, one open with ana, one resolved
    ConversationFactory.create_batch(2, client=ventas, queue=soporte, status=Conversation.Status.PENDING)
    ConversationFactory(client=ventas, queue=soporte, status=Conversation.Status.OPEN, assigned_to=ana)
    ConversationFactory(client=ventas, queue=caja, status=Conversation.Status.RESOLVED, assigned_to=beto)
    return Team(soporte, caja, closed, foreign, staff, sara, ana, beto, carla)


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row.get("username") or row.get("name") for row in response.json()["results"]]


# --- who may call -------------------------------------------------------------------------------------------


def test_no_credentials_or_a_revoked_token_are_refused(ventas, team):
    token, key = token_for(ventas)
    api_token_revoke(token=token)

    for path in (QUEUES, f"{QUEUES}{team.soporte.pk}/", AGENTS):
        for api in (api_client(), api_client(key)):
            response = api.get(path)
            assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated", path


def test_a_person_with_no_role_in_the_crm_is_refused(ventas, team):
    nobody = UserFactory(username="nadie")
    ClientMembership.objects.create(user=nobody, client=ventas)

    response = api_client(user=nobody).get(QUEUES)

    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"


# --- queues -------------------------------------------------------------------------------------------------


def test_a_read_token_lists_the_active_queues_of_its_client_with_their_load(ventas, team):
    body = api_client(token_for(ventas, ApiToken.Scope.READ)[1]).get(QUEUES).json()

    assert body["count"] == 2
    assert body["results"] == [
        {
            "id": team.caja.pk,
            "client": ventas.pk,
            "name": "Caja",
            "description": "",
            "is_active": True,
            "waiting": 0,
            "open": 0,
            "members_count": 2,
        },
        {
            "id": team.soporte.pk,
            "client": ventas.pk,
            "name": "Soporte",
            "description": "Dudas y reclamos",
            "is_active": True,
            "waiting": 2,
            "open": 1,
            "members_count": 3,
        },
    ]


@pytest.mark.parametrize(
    ("who", "expected"),
    [("staff", ["Caja", "Soporte"]), ("sara", ["Soporte"]), ("ana", ["Soporte"]), ("carla", ["Caja", "Soporte"])],
)
def test_people_see_the_queues_the_crm_shows_them(team, who, expected):
    assert names(api_client(user=getattr(team, who)).get(QUEUES)) == expected


def test_a_queues_detail_lists_its_members_and_their_availability(ventas, team):
    body = api_client(user=team.sara).get(f"{QUEUES}{team.soporte.pk}/").json()

    assert body["name"] == "Soporte" and body["waiting"] == 2 and body["members_count"] == 3
    assert body["members"] == [
        {
            "user": {"id": team.ana.pk, "username": "ana", "name": "Ana"},
            "role": "agent",
            "capacity": 5,
            "availability": "online",
        },
        {
            "user": {"id": team.carla.pk, "username": "carla", "name": "carla"},
            "role": "agent",
            "capacity": 5,
            "availability": "offline",
        },
        {
            "user": {"id": team.sara.pk, "username": "sara", "name": "sara"},
            "role": "supervisor",
            "capacity": 0,
            "availability": "offline",
        },
    ]


def test_an_agent_sees_a_queue_without_its_members_availability(team):
    # who is online and how loaded is the dashboard's business (staff and supervisors), as in the CRM
    body = api_client(user=team.ana).get(f"{QUEUES}{team.soporte.pk}/").json()
    assert body["name"] == "Soporte" and body["members"] == []


def test_queues_the_caller_may_not_see_are_not_found(ventas, team):
    token_api = api_client(token_for(ventas)[1])
    for path in (f"{QUEUES}{team.foreign.pk}/", f"{QUEUES}{team.closed.pk}/", f"{QUEUES}999999/"):
        response = token_api.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", path
    # an agent does not see a queue they do not work in
    assert api_client(user=team.ana).get(f"{QUEUES}{team.caja.pk}/").status_code == 404


# --- agents -------------------------------------------------------------------------------------------------


def test_a_token_sees_every_agent_of_its_client_with_queues_and_open_conversations(ventas, team):
    body = api_client(token_for(ventas)[1]).get(AGENTS).json()

    assert [a["username"] for a in body["results"]] == ["ana", "beto", "carla", "sara"]
    ana, beto, carla = body["results"][:3]
    assert ana == {
        "id": team.ana.pk,
        "username": "ana",
        "name": "Ana",
        "availability": "online",
        "queues": [{"id": team.soporte.pk, "name": "Soporte", "role": "agent", "capacity": 5}],
        "open_conversations": 1,
    }
    assert beto["availability"] == "away" and beto["open_conversations"] == 0  # his is resolved
    assert [q["name"] for q in carla["queues"]] == ["Caja", "Soporte"]


def test_supervisors_see_the_agents_of_their_queues_and_agents_only_themselves(team):
    assert names(api_client(user=team.staff).get(AGENTS)) == ["ana", "beto", "carla", "sara"]
    assert names(api_client(user=team.sara).get(AGENTS)) == ["ana", "carla", "sara"]
    assert names(api_client(user=team.ana).get(AGENTS)) == ["ana"]
    # carla sees herself with both her queues
    carla = api_client(user=team.carla).get(AGENTS).json()["results"]
    assert [q["name"] for q in carla[0]["queues"]] == ["Caja", "Soporte"] and len(carla) == 1


def test_agents_filter_by_queue_and_availability(ventas, team):
    api = api_client(token_for(ventas)[1])

    assert names(api.get(AGENTS, {"queue": team.caja.pk})) == ["beto", "carla"]
    assert names(api.get(AGENTS, {"availability": "offline"})) == ["carla", "sara"]
    assert names(api.get(AGENTS, {"queue": team.foreign.pk})) == []  # another client's queue: nobody


def test_bad_agent_filters_are_400_naming_the_field(ventas, team):
    response = api_client(token_for(ventas)[1]).get(AGENTS, {"availability": "asleep", "queue": "x"})

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"availability", "queue"}


def test_queue_and_agent_lists_cost_the_same_queries_however_many_rows(ventas, team, django_assert_max_num_queries):
    # Given a token already used once (its "last used" written), and what its lists cost now
    api = api_client(token_for(ventas)[1])
    api.get(QUEUES)
    with CaptureQueriesContext(connection) as queues_before:
        api.get(QUEUES)
    with CaptureQueriesContext(connection) as agents_before:
        api.get(AGENTS)

    # When there are more queues, members and conversations
    for n in range(4):
        queue = QueueFactory(client=ventas, name=f"Extra {n}")
        agent = member(ventas, f"extra{n}", queue, team.soporte)
        ConversationFactory(client=ventas, queue=queue, status=Conversation.Status.OPEN, assigned_to=agent)

    # Then the lists cost no more queries
    with django_assert_max_num_queries(len(queues_before)):
        assert api.get(QUEUES).json()["count"] == 6
    with django_assert_max_num_queries(len(agents_before)):
        assert api.get(AGENTS).json()["count"] == 8
