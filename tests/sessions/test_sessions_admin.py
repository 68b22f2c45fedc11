"""Staff operate WhatsApp Web / sandbox sessions from the number's admin page: state with age and reason, the
QR code while waiting, connect / disconnect / reset, history and outages; the live WebSocket sends a snapshot,
then changes, only of the numbers the user may see. The sandbox simulator pages reject bad input clearly."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from config.asgi import application
from crm.events import publish_flush
from sessions.consumers import CLOSE_FORBIDDEN
from sessions.engines.sandbox import sandbox_customer_inbox
from sessions.leases import Leases
from sessions.models import NumberSession, SandboxAccount, SessionOutage, SessionStateChange
from sessions.services import session_state_set, sessions_check
from tests.sessions.factories import WhatsAppNumberFactory
from tests.sessions.test_numbers_admin import messages_of, staff_login

NUMBER_URL = "/admin/wa_sessions/whatsappnumber/{}/change/"


@pytest.fixture
def sandbox(ventas):
    number = WhatsAppNumberFactory(
        client=ventas, engine="sandbox", alias="Tienda", display_number="+51 900 300 001", access_token=""
    )
    return number


def to_waiting_qr(number, code="sandbox-pair:test-code"):
    session_state_set(number_id=number.pk, state="connecting", reason="Connecting")
    session_state_set(number_id=number.pk, state="waiting_qr", reason="Scan the QR code", qr_code=code)


@pytest.mark.django_db
def test_the_number_page_shows_state_age_reason_and_the_qr_code_while_waiting(client, sandbox, ventas):
    staff_login(client, ventas)
    to_waiting_qr(sandbox)

    page = client.get(NUMBER_URL.format(sandbox.pk))
    qr = client.get(f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/qr.svg")

    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-state="waiting_qr"' in html and "Waiting for QR scan" in html and "Scan the QR code" in html
    assert "Session state history" in html and "Outage windows" in html
    assert 'id="session-connect"' in html and 'id="session-reset"' in html
    assert "sandbox-pair:test-code" not in html  # the secret is drawn, never printed
    assert qr.status_code == 200 and qr["Content-Type"] == "image/svg+xml" and b"<svg" in qr.content

    session_state_set(number_id=sandbox.pk, state="connected", reason="Connected")
    assert client.get(f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/qr.svg").status_code == 404


@pytest.mark.django_db
def test_a_cloud_number_page_has_no_session_panel_or_buttons(client, ventas):
    staff_login(client, ventas)
    cloud = WhatsAppNumberFactory(client=ventas)

    html = client.get(NUMBER_URL.format(cloud.pk)).content.decode()

    assert "session-panel" not in html and 'id="session-connect"' not in html


@pytest.mark.django_db
def test_connect_disconnect_and_reset_buttons(client, sandbox, ventas):
    staff_login(client, ventas)
    base = f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/"
    NumberSession.objects.filter(number=sandbox).update(keep_connected=False, device_jid="519.0:1@s.whatsapp.net")
    SandboxAccount.objects.create(number=sandbox, device_jid="519.0:1@s.whatsapp.net")

    connect = client.post(base + "connect/")
    assert connect.status_code == 302 and NumberSession.objects.get(number=sandbox).keep_connected
    assert ("success", "Connect requested: a sessions worker connects Tienda now.") in messages_of(connect)

    client.post(base + "disconnect/")
    assert not NumberSession.objects.get(number=sandbox).keep_connected

    reset = client.post(base + "reset/")
    session = NumberSession.objects.get(number=sandbox)
    assert reset.status_code == 302 and session.device_jid == "" and session.state == "disconnected"
    assert SandboxAccount.objects.get(number=sandbox).device_jid == ""

    not_waiting = client.post(base + "pairing-code/")
    assert ("error", "Tienda is not waiting to be paired (disconnected); connect it first.") in messages_of(not_waiting)

    assert client.get(base + "connect/").status_code == 405
    assert client.post(base + "explode/").status_code == 404


@pytest.mark.django_db
def test_staff_of_another_client_can_neither_see_nor_act_on_the_session(client, sandbox, marketing):
    staff_login(client, marketing)
    NumberSession.objects.filter(number=sandbox).update(keep_connected=False)
    to_waiting_qr(sandbox)

    assert client.get(NUMBER_URL.format(sandbox.pk)).status_code in (302, 404)
    assert client.get(f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/qr.svg").status_code == 404
    assert client.post(f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/connect/").status_code == 404
    assert client.get(f"/sandbox/numbers/{sandbox.pk}/device/").status_code == 404
    assert not NumberSession.objects.get(number=sandbox).keep_connected


@pytest.mark.django_db
def test_history_and_outages_are_listed_on_the_number_page(client, sandbox, ventas):
    staff_login(client, ventas)
    for state, reason in [("connecting", "Connecting"), ("connected", "Connected"), ("disconnected", "Wi-Fi lost")]:
        session_state_set(number_id=sandbox.pk, state=state, reason=reason)

    html = client.get(NUMBER_URL.format(sandbox.pk)).content.decode()

    assert SessionStateChange.objects.filter(number=sandbox).count() == 3
    assert SessionOutage.objects.get(number=sandbox).ended_at is None
    assert "Wi-Fi lost" in html and "(ongoing)" in html


# --- the live WebSocket -----------------------------------------------------------------------------------------


def _set_state(**kwargs) -> None:
    """session_state_set from a worker thread, closing that thread's database connection after it."""
    from django.db import connection

    try:
        session_state_set(**kwargs)
    finally:
        connection.close()


def _in_own_loop(make_coroutine):
    """Run the scenario from a thread of its own (a browser test may have left a loop running in this one); the
    consumer's database calls run in that thread too, and its connections are closed when it is done."""
    from asgiref.sync import async_to_sync
    from django.db import connections

    def run():
        try:
            return async_to_sync(make_coroutine)()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _cookie(client, user) -> bytes:
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def _communicator(cookie: bytes) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)]
    return WebsocketCommunicator(application, "/ws/sessions/", headers=headers)


@pytest.mark.django_db(transaction=True)
def test_the_websocket_sends_the_snapshot_first_then_changes_of_visible_numbers_only(
    client, sandbox, ventas, marketing
):
    other = WhatsAppNumberFactory(client=marketing, engine="sandbox", display_number="+51 900 300 002")
    session_state_set(number_id=sandbox.pk, state="connecting", reason="Connecting")
    user = staff_login(client, ventas)
    cookie = _cookie(client, user)

    async def scenario():
        ws = _communicator(cookie)
        connected, _ = await ws.connect()
        snapshot = await ws.receive_json_from(timeout=5)
        await asyncio.to_thread(_set_state, number_id=other.pk, state="connecting", reason="elsewhere")
        await asyncio.to_thread(_set_state, number_id=sandbox.pk, state="connected", reason="Connected")
        await asyncio.to_thread(publish_flush)
        update = await ws.receive_json_from(timeout=5)
        nothing_else = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return connected, snapshot, update, nothing_else

    connected, snapshot, update, nothing_else = _in_own_loop(scenario)

    assert connected
    assert snapshot["type"] == "sessions.snapshot"
    assert [(s["number"], s["state"]) for s in snapshot["data"]["sessions"]] == [(sandbox.pk, "connecting")]
    assert update["type"] == "session.state"
    assert (update["data"]["number"], update["data"]["state"]) == (sandbox.pk, "connected")
    assert nothing_else  # the other client's number never reached this user


@pytest.mark.django_db(transaction=True)
def test_the_websocket_refuses_users_who_are_not_staff(client):
    from tests.crm.factories import UserFactory

    cookie = _cookie(client, UserFactory(is_staff=False))

    async def scenario():
        ws = _communicator(cookie)
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    assert _in_own_loop(scenario) == (False, CLOSE_FORBIDDEN)


# --- the simulator pages ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_customer_phone_rejects_bad_input_with_a_clear_message_and_sends_nothing(client, sandbox):
    url = f"/sandbox/numbers/{sandbox.pk}/phone/"

    assert client.get(url).status_code == 200
    bad_phone = client.post(url + "send/", {"phone": "hola", "body": "Hola"})
    empty = client.post(url + "send/", {"phone": "+51 911 111 111", "body": "   "})
    too_long = client.post(url + "send/", {"phone": "+51 911 111 111", "body": "x" * 5000})
    cloud = WhatsAppNumberFactory()

    assert bad_phone.status_code == 400 and "international form" in bad_phone.json()["error"]["message"]
    assert empty.status_code == 400 and empty.json()["error"]["message"] == "The message is empty."
    assert too_long.status_code == 400 and "longer than 4096" in too_long.json()["error"]["message"]
    assert client.get(f"/sandbox/numbers/{cloud.pk}/phone/").status_code == 404
    assert sandbox_customer_inbox(number=sandbox, phone="+51 911 111 111") == []

    sent = client.post(url + "send/", {"phone": "+51 911 111 111", "body": "Hola", "name": "Ana"})
    chat = client.get(url + "messages/", {"phone": "+51911111111"}).json()
    assert sent.status_code == 201 and [m["body"] for m in chat["messages"]] == ["Hola"]


@pytest.mark.django_db
def test_the_device_page_scans_only_a_shown_qr_code_and_rejects_unknown_faults(client, sandbox, ventas):
    staff_login(client, ventas)
    url = f"/sandbox/numbers/{sandbox.pk}/device/"

    nothing_to_scan = client.post(url + "scan/")
    unknown_fault = client.post(url + "fault/", {"fault": "meteor"})
    bad_ban = client.post(url + "fault/", {"fault": "ban", "seconds": "-5"})

    assert nothing_to_scan.status_code == 409 and b"No QR code to scan" in nothing_to_scan.content
    assert unknown_fault.status_code == 400 and b"Unknown fault" in unknown_fault.content
    assert bad_ban.status_code == 400 and b"1 second to 7 days" in bad_ban.content
    assert SandboxAccount.objects.filter(number=sandbox, banned_until__isnull=False).count() == 0

    to_waiting_qr(sandbox)
    page = client.get(url)
    assert page.status_code == 200 and b"<svg" in page.content and b'id="scan"' in page.content
    assert client.post(url + "scan/").status_code == 302


# --- the 5-minute check -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_check_corrects_a_state_left_by_a_dead_worker_and_flags_numbers_no_worker_holds(sandbox):
    session_state_set(number_id=sandbox.pk, state="connecting", reason="Connecting", owner="dead:1:x")
    session_state_set(number_id=sandbox.pk, state="connected", reason="Connected")

    counts = sessions_check()

    session = NumberSession.objects.get(number=sandbox)
    sandbox.refresh_from_db()
    assert counts["stale_state_fixed"] == 1 and counts["without_worker"] == 1
    assert session.state == "disconnected" and "No sessions worker holds" in session.state_reason
    assert "start the sessions worker" in sandbox.attention_reason


@pytest.mark.django_db
def test_the_check_asks_the_owner_to_restart_a_connection_whose_heartbeat_is_stale(sandbox, settings):
    leases = Leases("worker:1:x", ttl_seconds=30)
    assert leases.acquire(sandbox.pk)
    session_state_set(number_id=sandbox.pk, state="connecting", reason="Connecting", owner="worker:1:x")
    NumberSession.objects.filter(number=sandbox).update(heartbeat_at=None)

    counts = sessions_check()

    assert counts["restarted"] == 1 and counts["stale_state_fixed"] == 0
    assert NumberSession.objects.get(number=sandbox).state == "connecting"


@pytest.mark.django_db
def test_view_only_staff_may_watch_but_neither_connect_nor_use_the_sandbox_device(client, sandbox, ventas):
    staff_login(client, ventas, role="Supervisor")
    NumberSession.objects.filter(number=sandbox).update(keep_connected=False)

    changelist = client.get("/admin/wa_sessions/whatsappnumber/")
    action = client.post(
        "/admin/wa_sessions/whatsappnumber/", {"action": "connect_sessions", "_selected_action": [sandbox.pk]}
    )
    button = client.post(f"/admin/wa_sessions/whatsappnumber/{sandbox.pk}/session/connect/")
    device = client.get(f"/sandbox/numbers/{sandbox.pk}/device/")
    fault = client.post(f"/sandbox/numbers/{sandbox.pk}/device/fault/", {"fault": "logout"})

    assert changelist.status_code == 200 and b"connect_sessions" not in changelist.content
    assert action.status_code in (200, 302) and button.status_code == 403
    assert device.status_code == 403 and fault.status_code == 403
    assert not NumberSession.objects.get(number=sandbox).keep_connected
