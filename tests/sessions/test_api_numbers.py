"""The numbers of the REST API (sessions/api/views.py): who sees which numbers, their session state and QR code,
and staff's connect / disconnect / reset, against the real database and Redis."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis as redis_lib
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework import serializers

from crm.models import ApiToken
from crm.roles import STAFF
from crm.services import api_token_revoke
from queues.models import Queue, QueueMembership
from sessions.models import NumberSession, SandboxAccount, SessionStateChange, WhatsAppNumber
from sessions.services.states import CONTROL_CHANNEL
from tests.crm.api_helpers import api_client, error_of, token_for
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

NUMBERS = "/api/v1/numbers/"
CLOUD_TOKEN = "EAAG-cloud-secret-token-0001-abcdef"
VERIFY_TOKEN = "verify-cloud-secret-0001"
QR_CODE = "2@sandbox-pair:abc,def,ghi"


@dataclass
class World:
    soporte: Queue
    cobranza: Queue
    tienda: WhatsAppNumber  # sandbox, queue Soporte
    cloud: WhatsAppNumber  # Cloud API, queue Cobranza
    reserva: WhatsAppNumber  # WhatsApp Web, inactive, no queue
    promo: WhatsAppNumber  # another client's
    staff: object
    supervisor: object
    agent: object


def member(client, queue=None, *, name: str, role: str = QueueMembership.Role.AGENT, staff: bool = False):
    user = UserFactory(username=name)
    ClientMembershipFactory(user=user, client=client)
    if staff:
        user.groups.add(Group.objects.get(name=STAFF))
    if queue is not None:
        QueueMembershipFactory(queue=queue, user=user, role=role)
    return user


@pytest.fixture
def world(ventas, marketing) -> World:
    soporte = QueueFactory(client=ventas, name="Soporte")
    cobranza = QueueFactory(client=ventas, name="Cobranza")
    connection_number = {"access_token": "", "verify_token": ""}
    return World(
        soporte=soporte,
        cobranza=cobranza,
        tienda=WhatsAppNumberFactory(
            client=ventas,
            engine="sandbox",
            alias="Tienda",
            phone_number_id="wsp-tienda",
            queue=soporte,
            display_number="+51 900 300 001",
            **connection_number,
        ),  # fmt: skip
        cloud=WhatsAppNumberFactory(
            client=ventas, alias="Cloud", queue=cobranza, access_token=CLOUD_TOKEN, verify_token=VERIFY_TOKEN
        ),
        reserva=WhatsAppNumberFactory(
            client=ventas,
            engine="web",
            alias="Reserva",
            phone_number_id="wsp-reserva",
            is_active=False,
            **connection_number,
        ),  # fmt: skip
        promo=WhatsAppNumberFactory(
            client=marketing, engine="sandbox", alias="Promo", phone_number_id="wsp-promo", **connection_number
        ),
        staff=member(ventas, name="sara", staff=True),
        supervisor=member(ventas, soporte, name="sofia", role=QueueMembership.Role.SUPERVISOR),
        agent=member(ventas, soporte, name="ana"),
    )


def signed_in(user):
    """A browser session of `user` carrying its CSRF cookie and header, as the CRM's pages send them."""
    api = api_client(user=user)
    secret = get_random_string(32)
    api.cookies[settings.CSRF_COOKIE_NAME] = secret
    api.credentials(HTTP_X_CSRFTOKEN=secret)
    return api


def token_client(client, scope=ApiToken.Scope.READ):
    _token, key = token_for(client, scope)
    return api_client(key)


def iso(moment) -> str:
    """A time as the API writes it (ISO 8601 in the site's time zone)."""
    return serializers.DateTimeField().to_representation(moment)


def aliases(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [n["alias"] for n in response.json()["results"]]


def session(number) -> NumberSession:
    return NumberSession.objects.get(number=number)


def waiting_for_scan(number, *, pairing_code: str = "") -> None:
    """The row as the sessions worker leaves it while its phone has to scan the QR code."""
    NumberSession.objects.filter(number=number).update(
        state="waiting_qr",
        state_reason="Scan the QR code",
        state_changed_at=timezone.now(),
        qr_code=QR_CODE,
        qr_expires_at=timezone.now() + timedelta(seconds=60),
        pairing_code=pairing_code,
        keep_connected=True,
    )


# -- list -----------------------------------------------------------------------------------------------------


def test_a_read_token_lists_its_clients_numbers_without_any_secret(world, ventas):
    # given a connected sandbox number and a Cloud API number flagged for attention
    NumberSession.objects.filter(number=world.tienda).update(state="connected", state_changed_at=timezone.now())
    WhatsAppNumber.objects.filter(pk=world.cloud.pk).update(
        attention_reason="Access token expired (code 190)", attention_since=timezone.now()
    )

    # when a read token of Ventas lists the numbers
    response = token_client(ventas).get(NUMBERS)

    # then it gets Ventas' numbers only, a page at a time, and never a secret
    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert aliases(response) == ["Cloud", "Reserva", "Tienda"]
    cloud, reserva, tienda = body["results"]
    world.tienda.refresh_from_db()
    assert tienda == {
        "id": world.tienda.pk,
        "alias": "Tienda",
        "display_number": "+51 900 300 001",
        "phone_number_id": "wsp-tienda",
        "engine": "sandbox",
        "has_connection": True,
        "is_active": True,
        "client": ventas.pk,
        "queue": {"id": world.soporte.pk, "name": "Soporte"},
        "state": "connected",
        "state_label": "Connected",
        "state_since": iso(session(world.tienda).state_changed_at),
        "needs_attention": False,
        "attention_reason": None,
        "attention_since": None,
        "created_at": iso(world.tienda.created_at),
        "updated_at": iso(world.tienda.updated_at),
    }
    assert cloud["engine"] == "cloud" and cloud["has_connection"] is False and cloud["state"] == "disconnected"
    assert cloud["needs_attention"] is True and cloud["attention_reason"] == "Access token expired (code 190)"
    assert reserva["queue"] is None and reserva["is_active"] is False
    raw = response.content.decode()
    assert CLOUD_TOKEN not in raw and VERIFY_TOKEN not in raw
    assert not {"access_token", "verify_token", "waba_id"} & set(cloud)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"engine": "sandbox"}, ["Tienda"]),
        ({"engine": "cloud"}, ["Cloud"]),
        ({"is_active": "false"}, ["Reserva"]),
        ({"is_active": "true"}, ["Cloud", "Tienda"]),
        ({"state": "waiting_qr"}, ["Tienda"]),
        ({"state": "connected"}, []),
        ({"queue": "soporte"}, ["Tienda"]),
        ({"engine": "web", "is_active": "false"}, ["Reserva"]),
    ],
)
def test_the_list_filters(world, ventas, query, expected):
    waiting_for_scan(world.tienda)
    if query.get("queue") == "soporte":
        query = {"queue": world.soporte.pk}

    assert aliases(token_client(ventas).get(NUMBERS, query)) == expected


def test_the_list_pages(world, ventas):
    body = token_client(ventas).get(NUMBERS, {"page_size": 2, "page": 2}).json()

    assert body["count"] == 3 and [n["alias"] for n in body["results"]] == ["Tienda"]
    assert body["next"] is None and "page_size=2" in body["previous"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"engine": "fax"}, "engine"),
        ({"state": "asleep"}, "state"),
        ({"is_active": "maybe"}, "is_active"),
        ({"queue": "soporte"}, "queue"),
        ({"queue": "0"}, "queue"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(world, ventas, query, field):
    response = token_client(ventas).get(NUMBERS, query)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and list(error["fields"]) == [field]


def test_people_see_the_numbers_of_their_role(world, marketing):
    # staff: every number of their client; supervisors and agents: the numbers of their queues
    assert aliases(signed_in(world.staff).get(NUMBERS)) == ["Cloud", "Reserva", "Tienda"]
    assert aliases(signed_in(world.supervisor).get(NUMBERS)) == ["Tienda"]
    assert aliases(signed_in(world.agent).get(NUMBERS)) == ["Tienda"]
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    assert aliases(signed_in(superuser).get(NUMBERS)) == [
        "Promo",
        "Cloud",
        "Reserva",
        "Tienda",
    ]  # by client, then alias
    # a member of the client in no queue has nothing to do here
    outsider = member(world.tienda.client, name="olga")
    refused = signed_in(outsider).get(NUMBERS)
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"


def test_the_list_takes_the_same_queries_however_many_numbers(world, ventas):
    api = token_client(ventas)
    api.get(NUMBERS)  # the token's "last used" is written once, on the first call

    with CaptureQueriesContext(connection) as few:
        assert len(aliases(api.get(NUMBERS))) == 3
    for n in range(4):
        WhatsAppNumberFactory(client=ventas, engine="sandbox", alias=f"Extra {n}", queue=world.cobranza)
    with CaptureQueriesContext(connection) as many:
        assert len(aliases(api.get(NUMBERS))) == 7

    assert len(many) == len(few)


@pytest.mark.parametrize("path", ["", "{id}/", "{id}/state/", "{id}/qr/"])
def test_reads_need_credentials(world, path):
    response = api_client().get(NUMBERS + path.format(id=world.tienda.pk))

    assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"


def test_a_revoked_token_reads_nothing_more(world, ventas):
    token, key = token_for(ventas)
    assert api_client(key).get(NUMBERS).status_code == 200

    api_token_revoke(token=token)

    response = api_client(key).get(f"{NUMBERS}{world.tienda.pk}/")
    assert response.status_code == 401 and "revoked" in error_of(response)["message"]


# -- detail ---------------------------------------------------------------------------------------------------


def test_the_detail_adds_the_sending_pace_and_the_newest_state_changes(world, ventas):
    # given a number with a pace of its own and a long history
    WhatsAppNumber.objects.filter(pk=world.tienda.pk).update(
        send_rate=0.5, daily_cap=200, warmup_days=7, time_zone="America/Mexico_City"
    )
    start = timezone.now() - timedelta(hours=1)
    SessionStateChange.objects.bulk_create(
        SessionStateChange(
            number=world.tienda,
            from_state="connecting" if n % 2 else "connected",
            state="connected" if n % 2 else "connecting",
            reason=f"change {n}",
            created_at=start + timedelta(minutes=n),
        )
        for n in range(25)
    )

    # when a read token asks for it
    response = token_client(ventas).get(f"{NUMBERS}{world.tienda.pk}/")

    # then
    body = response.json()
    assert response.status_code == 200
    assert body["id"] == world.tienda.pk and body["queue"] == {"id": world.soporte.pk, "name": "Soporte"}
    assert (body["send_rate"], body["daily_cap"], body["warmup_days"]) == (0.5, 200, 7)
    assert body["time_zone"] == "America/Mexico_City"
    history = body["state_history"]
    assert len(history) == 20
    assert [h["reason"] for h in history[:3]] == ["change 24", "change 23", "change 22"]
    assert history[0] == {
        "from_state": "connected",
        "state": "connecting",
        "reason": "change 24",
        "at": iso(start + timedelta(minutes=24)),
    }
    assert CLOUD_TOKEN not in response.content.decode()


def test_a_number_without_its_own_pace_shows_the_defaults(world, ventas):
    body = token_client(ventas).get(f"{NUMBERS}{world.cloud.pk}/").json()

    assert body["send_rate"] is None and body["daily_cap"] is None and body["warmup_days"] == 0
    assert body["time_zone"] == settings.TIME_ZONE and body["state_history"] == []
    assert CLOUD_TOKEN not in json.dumps(body) and VERIFY_TOKEN not in json.dumps(body)


def test_numbers_out_of_sight_are_not_found(world, ventas):
    ventas_token = token_client(ventas)
    for response in (
        ventas_token.get(f"{NUMBERS}{world.promo.pk}/"),  # another client's
        ventas_token.get(f"{NUMBERS}{world.promo.pk}/state/"),
        ventas_token.get(f"{NUMBERS}{world.promo.pk}/qr/"),
        ventas_token.get(f"{NUMBERS}999999/"),  # no such number
        ventas_token.get(f"{NUMBERS}{10**30}/"),  # nor such an id
        signed_in(world.agent).get(f"{NUMBERS}{world.cloud.pk}/"),  # not a queue of the agent's
    ):
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert signed_in(world.supervisor).get(f"{NUMBERS}{world.tienda.pk}/").status_code == 200


# -- state and QR code ----------------------------------------------------------------------------------------


def test_the_state_while_waiting_for_a_scan(world, ventas):
    waiting_for_scan(world.tienda, pairing_code="ABCD1234")
    row = session(world.tienda)

    body = token_client(ventas, ApiToken.Scope.ADMIN).get(f"{NUMBERS}{world.tienda.pk}/state/").json()

    assert body == {
        "number": world.tienda.pk,
        "state": "waiting_qr",
        "state_label": "Waiting for QR scan",
        "reason": "Scan the QR code",
        "since": iso(row.state_changed_at),
        "keep_connected": True,
        "has_connection": True,
        "qr_available": True,
        "qr_expires_at": iso(row.qr_expires_at),
        "pairing_code": "ABCD1234",
        "last_connected_at": None,
        "banned_until": None,
    }
    # a read token and an agent of its queue see the state, not the code that pairs a phone
    read_view = token_client(ventas).get(f"{NUMBERS}{world.tienda.pk}/state/").json()
    assert read_view["qr_available"] is True and read_view["pairing_code"] is None
    agent_view = signed_in(world.agent).get(f"{NUMBERS}{world.tienda.pk}/state/").json()
    assert agent_view["qr_available"] is True and agent_view["pairing_code"] is None


def test_the_state_of_a_cloud_number_says_it_has_no_connection(world, ventas):
    body = token_client(ventas).get(f"{NUMBERS}{world.cloud.pk}/state/").json()

    assert body["has_connection"] is False and body["qr_available"] is False and body["pairing_code"] is None


def test_the_qr_code_while_waiting_for_a_scan(world, ventas):
    waiting_for_scan(world.tienda)

    response = token_client(ventas, ApiToken.Scope.ADMIN).get(f"{NUMBERS}{world.tienda.pk}/qr/")

    body = response.json()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert body["qr"] == QR_CODE
    assert body["expires_at"] == iso(session(world.tienda).qr_expires_at)
    prefix = "data:image/png;base64,"
    assert body["png"].startswith(prefix)
    assert base64.b64decode(body["png"][len(prefix) :]).startswith(b"\x89PNG\r\n\x1a\n")
    assert signed_in(world.staff).get(f"{NUMBERS}{world.tienda.pk}/qr/").json()["qr"] == QR_CODE


def test_only_staff_and_admin_tokens_get_the_qr_code(world, ventas):
    # it links a phone to the number: whoever scans it reads and sends every chat
    waiting_for_scan(world.tienda)
    for scope in (ApiToken.Scope.READ, ApiToken.Scope.SEND):
        response = token_client(ventas, scope).get(f"{NUMBERS}{world.tienda.pk}/qr/")
        assert response.status_code == 403 and "admin scope" in error_of(response)["message"]

    for user in (world.agent, world.supervisor):
        response = signed_in(user).get(f"{NUMBERS}{world.tienda.pk}/qr/")
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"


def test_no_qr_code_when_the_number_is_not_waiting_for_a_scan(world, ventas):
    api = token_client(ventas, ApiToken.Scope.ADMIN)
    NumberSession.objects.filter(number=world.tienda).update(state="connected")

    not_waiting = api.get(f"{NUMBERS}{world.tienda.pk}/qr/")
    cloud = api.get(f"{NUMBERS}{world.cloud.pk}/qr/")

    assert not_waiting.status_code == 409
    assert error_of(not_waiting)["code"] == "no_qr" and "not waiting for a QR scan" in error_of(not_waiting)["message"]
    assert cloud.status_code == 409
    assert error_of(cloud)["code"] == "no_connection" and "no QR code" in error_of(cloud)["message"]


# -- connect, disconnect, reset -------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [ApiToken.Scope.READ, ApiToken.Scope.SEND])
@pytest.mark.parametrize("action", ["connect", "disconnect", "reset"])
def test_session_actions_need_an_admin_token(world, ventas, scope, action):
    NumberSession.objects.filter(number=world.tienda).update(keep_connected=False, device_jid="519.0:1@s.whatsapp.net")
    before = session(world.tienda)

    response = token_client(ventas, scope).post(f"{NUMBERS}{world.tienda.pk}/{action}/", {"confirm": True}, "json")

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden" and "needs admin" in error["message"]
    after = session(world.tienda)
    assert (after.keep_connected, after.device_jid, after.state) == (False, "519.0:1@s.whatsapp.net", before.state)


@pytest.mark.parametrize("action", ["connect", "disconnect", "reset"])
def test_session_actions_are_for_staff_among_people(world, action):
    for user in (world.agent, world.supervisor):
        response = signed_in(user).post(f"{NUMBERS}{world.tienda.pk}/{action}/", {"confirm": True}, "json")
        assert response.status_code == 403 and error_of(response)["message"] == "Only staff may do this."
    assert session(world.tienda).keep_connected is True


@pytest.mark.parametrize("action", ["connect", "disconnect", "reset"])
def test_session_actions_need_credentials(world, action):
    response = api_client().post(f"{NUMBERS}{world.tienda.pk}/{action}/", {"confirm": True}, "json")

    assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"


def test_connect_asks_the_sessions_worker_to_connect_and_stay_connected(
    world, ventas, django_capture_on_commit_callbacks
):
    # given a number staff had disconnected
    NumberSession.objects.filter(number=world.tienda).update(keep_connected=False, reconnect_attempts=3)
    control = redis_lib.Redis.from_url(settings.REDIS_URL).pubsub()
    control.subscribe(CONTROL_CHANNEL)
    control.get_message(timeout=1)  # the subscription's confirmation

    # when an admin token connects it
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(ventas, ApiToken.Scope.ADMIN).post(f"{NUMBERS}{world.tienda.pk}/connect/")

    # then the wish is stored, the sessions workers are woken, and the answer is the state
    assert response.status_code == 202
    body = response.json()
    assert body["number"] == world.tienda.pk and body["keep_connected"] is True and body["state"] == "disconnected"
    row = session(world.tienda)
    assert row.keep_connected is True and row.reconnect_attempts == 0
    woken = control.get_message(timeout=2)
    assert woken is not None and json.loads(woken["data"]) == {"action": "wake", "number": world.tienda.pk}
    control.close()


def test_staff_connect_through_their_session(world):
    NumberSession.objects.filter(number=world.tienda).update(keep_connected=False)

    response = signed_in(world.staff).post(f"{NUMBERS}{world.tienda.pk}/connect/")

    assert response.status_code == 202 and session(world.tienda).keep_connected is True


def test_a_session_post_without_the_csrf_token_is_refused(world):
    NumberSession.objects.filter(number=world.tienda).update(keep_connected=False)

    response = api_client(user=world.staff).post(f"{NUMBERS}{world.tienda.pk}/connect/")

    assert response.status_code == 403 and "CSRF" in error_of(response)["message"]
    assert session(world.tienda).keep_connected is False


def test_disconnect_takes_the_number_offline_and_keeps_it_paired(world, ventas):
    NumberSession.objects.filter(number=world.tienda).update(state="connected", device_jid="519.0:1@s.whatsapp.net")

    response = token_client(ventas, ApiToken.Scope.ADMIN).post(f"{NUMBERS}{world.tienda.pk}/disconnect/")

    assert response.status_code == 202 and response.json()["keep_connected"] is False
    row = session(world.tienda)
    assert row.keep_connected is False and row.device_jid == "519.0:1@s.whatsapp.net"
    assert row.state == "connected"  # until its worker closes the connection and reports it


def test_reset_logs_the_number_out_and_forgets_its_device(world, ventas):
    # given a paired sandbox number
    jid = "519.0:1@s.whatsapp.net"
    NumberSession.objects.filter(number=world.tienda).update(state="connected", device_jid=jid)
    SandboxAccount.objects.create(number=world.tienda, device_jid=jid)

    # when an admin token resets it, confirming
    response = token_client(ventas, ApiToken.Scope.ADMIN).post(
        f"{NUMBERS}{world.tienda.pk}/reset/", {"confirm": True}, "json"
    )

    # then it is disconnected without a device, and will need a new QR scan
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "disconnected" and body["keep_connected"] is False and body["qr_available"] is False
    assert body["reason"].startswith("Reset: device data removed")
    row = session(world.tienda)
    assert (row.state, row.device_jid, row.keep_connected) == ("disconnected", "", False)
    assert SandboxAccount.objects.get(number=world.tienda).device_jid == ""
    assert SessionStateChange.objects.filter(number=world.tienda, from_state="connected", state="disconnected").exists()


@pytest.mark.parametrize("payload", [None, {}, {"confirm": False}, {"confirm": "later"}])
def test_reset_must_be_confirmed(world, ventas, payload):
    jid = "519.0:1@s.whatsapp.net"
    NumberSession.objects.filter(number=world.tienda).update(state="connected", device_jid=jid)

    response = token_client(ventas, ApiToken.Scope.ADMIN).post(f"{NUMBERS}{world.tienda.pk}/reset/", payload, "json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and list(error["fields"]) == ["confirm"]
    row = session(world.tienda)
    assert (row.state, row.device_jid) == ("connected", jid)


@pytest.mark.parametrize("action", ["connect", "disconnect", "reset"])
def test_cloud_numbers_have_no_session_to_act_on(world, ventas, action):
    response = token_client(ventas, ApiToken.Scope.ADMIN).post(
        f"{NUMBERS}{world.cloud.pk}/{action}/", {"confirm": True}, "json"
    )

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "no_connection" and "no connection to manage" in error["message"]
    row = session(world.cloud)
    assert (row.state, row.keep_connected) == ("disconnected", True)


def test_an_inactive_number_is_not_connected(world, ventas):
    NumberSession.objects.filter(number=world.reserva).update(keep_connected=False)

    response = token_client(ventas, ApiToken.Scope.ADMIN).post(f"{NUMBERS}{world.reserva.pk}/connect/")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "inactive" and "Reserva is inactive" in error["message"]
    assert session(world.reserva).keep_connected is False


@pytest.mark.parametrize("action", ["connect", "disconnect", "reset"])
def test_another_clients_number_cannot_be_acted_on(world, ventas, action):
    NumberSession.objects.filter(number=world.promo).update(keep_connected=False, device_jid="519.0:9@s.whatsapp.net")

    response = token_client(ventas, ApiToken.Scope.ADMIN).post(f"{NUMBERS}{world.promo.pk}/{action}/")

    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    row = session(world.promo)
    assert (row.keep_connected, row.device_jid) == (False, "519.0:9@s.whatsapp.net")


def test_actions_answer_post_only(world, ventas):
    response = token_client(ventas, ApiToken.Scope.ADMIN).get(f"{NUMBERS}{world.tienda.pk}/connect/")

    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


def test_a_number_without_a_session_row_reads_as_disconnected_and_cannot_be_connected(world, ventas):
    NumberSession.objects.filter(number=world.tienda).delete()
    admin = token_client(ventas, ApiToken.Scope.ADMIN)

    listed = admin.get(NUMBERS, {"engine": "sandbox"}).json()["results"][0]
    state = admin.get(f"{NUMBERS}{world.tienda.pk}/state/").json()
    connect = admin.post(f"{NUMBERS}{world.tienda.pk}/connect/")

    assert listed["state"] == "disconnected" and listed["state_since"] is None
    assert state["state"] == "disconnected" and state["keep_connected"] is False
    assert connect.status_code == 409 and error_of(connect)["code"] == "no_session"
    assert not NumberSession.objects.filter(number=world.tienda).exists()
