"""The supervisor with the sandbox engine, in this process: pairing, inbound, sends, the reconnect policy per
disconnect reason, states and outage windows. (Real sessions workers, leases across processes and queues:
test_sessions_worker.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from conversations.models import Message
from conversations.services import message_deliver, message_send
from sessions.engines.base import Disconnect, DisconnectKind
from sessions.engines.sandbox import (
    sandbox_customer_inbox,
    sandbox_customer_read,
    sandbox_customer_send,
    sandbox_inject,
    sandbox_presence_log,
    sandbox_scan,
)
from sessions.leases import lease_owners
from sessions.models import NumberSession, SandboxAccount, SessionOutage, SessionStateChange
from sessions.services.states import session_connect_request
from sessions.supervisor import Supervisor, backoff_delay
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+51 912 345 678"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def session_of(number) -> NumberSession:
    return NumberSession.objects.get(number=number)


def state_is(number, state: str) -> Callable[[], bool]:
    return lambda: session_of(number).state == state


@pytest.fixture
def fast(settings):
    settings.SESSIONS_HEARTBEAT_SECONDS = 0.2
    settings.SESSIONS_LEASE_SECONDS = 2
    settings.SESSIONS_BACKOFF_MAX = 0.3
    settings.SESSIONS_STABLE_SECONDS = 60
    settings.WHATSAPP_QR_TIMEOUT = 30
    return settings


@pytest.fixture
def supervisor(fast):
    started: list[Supervisor] = []

    def start() -> Supervisor:
        sup = Supervisor()
        sup.start()
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()


@pytest.fixture
def number(db):
    return WhatsAppNumberFactory(engine="sandbox", display_number="+51 900 000 001", access_token="", verify_token="")


def pair(number, supervisor_factory) -> Supervisor:
    sup = supervisor_factory()
    wait_for(state_is(number, "waiting_qr"), what="a QR code")
    sandbox_scan(number=number, code=session_of(number).qr_code)
    wait_for(state_is(number, "connected"), what="connected after the scan")
    return sup


def history(number) -> list[tuple[str, str]]:
    return list(
        SessionStateChange.objects.filter(number=number).order_by("created_at", "id").values_list("from_state", "state")
    )


def test_a_new_number_shows_a_qr_code_and_connects_when_it_is_scanned(number, supervisor):
    sup = supervisor()

    wait_for(state_is(number, "waiting_qr"), what="a QR code")
    session = session_of(number)
    assert session.qr_code.startswith("sandbox-pair:") and session.qr_expires_at is not None
    assert session.owner == sup.owner and lease_owners([number.pk])[number.pk] == sup.owner

    sandbox_scan(number=number, code="not-the-code")
    sandbox_scan(number=number, code=session.qr_code)

    wait_for(state_is(number, "connected"), what="connected")
    session = session_of(number)
    assert session.qr_code == "" and session.device_jid.endswith("@s.whatsapp.net")
    assert SandboxAccount.objects.get(number=number).device_jid == session.device_jid
    assert history(number) == [
        ("disconnected", "connecting"),
        ("connecting", "waiting_qr"),
        ("waiting_qr", "connected"),
    ]


def test_messages_received_while_offline_are_stored_once_on_connect_and_replies_reach_the_phone(number, supervisor):
    first = sandbox_customer_send(number=number, phone=CUSTOMER, body="Hola, ¿tienen stock?", name="Ana")
    second = sandbox_customer_send(number=number, phone=CUSTOMER, body="¿Y envíos a Lima?", name="Ana")

    pair(number, supervisor)

    inbound = wait_for(
        lambda: list(Message.objects.filter(direction="in").order_by("id")) or None, what="inbound messages"
    )
    wait_for(lambda: Message.objects.filter(direction="in").count() == 2)
    inbound = list(Message.objects.filter(direction="in").order_by("id"))
    assert [(m.provider_message_id, m.body) for m in inbound] == [
        (first, "Hola, ¿tienen stock?"),
        (second, "¿Y envíos a Lima?"),
    ]
    conversation = inbound[0].conversation
    assert conversation.contact.phone == "+51912345678" and conversation.contact.name == "Ana"

    reply = message_send(conversation=conversation, text="¡Sí! Enviamos a todo el Perú.")
    assert message_deliver(message_id=reply.pk) == "accepted"

    wait_for(lambda: Message.objects.get(pk=reply.pk).status == "delivered", what="the delivered receipt")
    chat = sandbox_customer_inbox(number=number, phone=CUSTOMER)
    assert [(m["direction"], m["body"]) for m in chat] == [
        ("in", "Hola, ¿tienen stock?"),
        ("in", "¿Y envíos a Lima?"),
        ("out", "¡Sí! Enviamos a todo el Perú."),
    ]
    assert sandbox_customer_read(number=number, phone=CUSTOMER) == 1
    wait_for(lambda: Message.objects.get(pk=reply.pk).status == "read", what="the read receipt")
    assert sandbox_customer_inbox(number=number, phone=CUSTOMER)[-1]["status"] == "read"


def test_a_send_while_the_number_is_offline_waits_pending_and_goes_when_it_connects(number, supervisor):
    sandbox_customer_send(number=number, phone=CUSTOMER, body="Hola")
    sup = pair(number, supervisor)
    conversation = wait_for(lambda: Message.objects.filter(direction="in").first()).conversation
    sup.stop()
    assert session_of(number).state == "disconnected"

    reply = message_send(conversation=conversation, text="Te escribimos en un momento")

    assert message_deliver(message_id=reply.pk) == "waiting"
    assert Message.objects.get(pk=reply.pk).status == "pending"
    assert [m["direction"] for m in sandbox_customer_inbox(number=number, phone=CUSTOMER)] == ["in"]


def test_a_transient_drop_reconnects_with_backoff_and_records_the_outage(number, supervisor):
    pair(number, supervisor)

    sandbox_inject(number=number, fault="disconnect")

    wait_for(lambda: SessionOutage.objects.filter(number=number).exists(), what="an outage")
    wait_for(lambda: SessionOutage.objects.filter(number=number, ended_at__isnull=False).exists(), what="its end")
    session = session_of(number)
    assert session.state == "connected" and session.keep_connected
    outage = SessionOutage.objects.get(number=number)
    assert "Connection to the sandbox network lost" in outage.reason and outage.ended_at >= outage.started_at
    states = [to for _from, to in history(number)]
    assert states[-3:] == ["disconnected", "connecting", "connected"]
    drop = SessionStateChange.objects.filter(number=number, state="disconnected").latest("created_at")
    assert "reconnecting in" in drop.reason and "attempt 1" in drop.reason


def test_the_sandbox_network_notes_each_connection_online_and_gone_in_its_presence_log(number, supervisor):
    # given a paired number (one connection came online)
    sup = pair(number, supervisor)

    # when the network drops it (it reconnects: a second connection) and the worker then stops
    sandbox_inject(number=number, fault="disconnect")
    wait_for(lambda: len(sandbox_presence_log()) == 3, what="the reconnection's open")
    wait_for(state_is(number, "connected"), what="connected again")
    sup.stop()

    # then the log shows two connections of this process, one after the other, never both online
    log = sandbox_presence_log()
    assert [(e["number"], e["event"]) for e in log] == [(number.pk, "open"), (number.pk, "close")] * 2
    first, second = log[0]["connection"], log[2]["connection"]
    assert first != second and log[1]["connection"] == first and log[3]["connection"] == second
    assert {e["pid"] for e in log} == {os.getpid()}
    assert [e["at"] for e in log] == sorted(e["at"] for e in log)


def test_a_logout_from_the_phone_removes_the_device_and_tells_staff_without_reconnecting(number, supervisor):
    pair(number, supervisor)

    sandbox_inject(number=number, fault="logout")

    wait_for(state_is(number, "logged_out"), what="logged out")
    time.sleep(0.6)  # a few heartbeats: nothing reconnects
    session = session_of(number)
    number.refresh_from_db()
    assert session.state == "logged_out" and session.device_jid == "" and not session.keep_connected
    assert "scan a new QR code" in number.attention_reason
    assert lease_owners([number.pk])[number.pk] is None


def test_a_conflict_stops_without_a_reconnect_loop_and_tells_staff(number, supervisor):
    pair(number, supervisor)

    sandbox_inject(number=number, fault="conflict")

    wait_for(state_is(number, "conflict"), what="conflict")
    time.sleep(0.6)
    session = session_of(number)
    number.refresh_from_db()
    assert session.state == "conflict" and not session.keep_connected and session.device_jid
    assert "close the other session" in number.attention_reason
    assert [to for _f, to in history(number)].count("connected") == 1


def test_a_temporary_ban_waits_for_its_end_then_reconnects(number, supervisor):
    pair(number, supervisor)

    sandbox_inject(number=number, fault="ban", seconds=1)

    wait_for(state_is(number, "banned"), what="banned")
    assert session_of(number).banned_until is not None
    wait_for(state_is(number, "connected"), timeout=10, what="connected after the ban")
    assert session_of(number).banned_until is None


def test_an_unscanned_qr_code_times_out_to_disconnected_and_a_new_one_comes_only_on_request(number, supervisor, fast):
    fast.WHATSAPP_QR_TIMEOUT = 0.5
    supervisor()

    wait_for(state_is(number, "waiting_qr"), what="a QR code")
    wait_for(state_is(number, "disconnected"), what="the QR timeout")
    time.sleep(0.6)
    session = session_of(number)
    assert session.state == "disconnected" and not session.keep_connected
    assert "QR code not scanned within" in session.state_reason and session.qr_code == ""

    session_connect_request(number=number)

    wait_for(state_is(number, "waiting_qr"), what="a new QR code on request")


def test_backoff_doubles_from_one_second_up_to_the_maximum_with_jitter():
    import random

    rng = random.Random(7)
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delays = [backoff_delay(attempt, maximum=60, rng=rng) for _ in range(50)]
        assert all(max(1.0, ceiling / 2) <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        if attempt > 1:
            assert len(set(delays)) > 1  # jittered


def test_pairing_by_code_instead_of_the_qr_code(number, supervisor):
    from sessions.services import session_pairing_code_request

    supervisor()
    wait_for(state_is(number, "waiting_qr"), what="a QR code")

    session_pairing_code_request(number=number)

    code = wait_for(lambda: session_of(number).pairing_code, what="the pairing code")
    assert len(code) == 9 and code[4] == "-"
    sandbox_scan(number=number, code="0000-0000" if code != "0000-0000" else "1111-1111")  # a wrong code
    time.sleep(0.5)
    assert session_of(number).state == "waiting_qr"
    sandbox_scan(number=number, code=code)
    wait_for(state_is(number, "connected"), what="connected with the code")
    assert session_of(number).pairing_code == ""


# --- what the review of the supervisor found --------------------------------------------------------------------


def test_a_replaced_connections_late_callbacks_change_nothing(number, fast):
    from sessions.supervisor import _ConnectionListener, _Held

    sup = Supervisor()
    current, old = object(), object()
    sup.held[number.pk] = _Held(number=number, connection=current)
    late = _ConnectionListener(sup, number.pk)
    late.connection = old

    late.on_connecting(number.pk)
    late.on_connected(number.pk, "519.0:1@s.whatsapp.net")

    assert session_of(number).state == "disconnected" and not SessionStateChange.objects.exists()
    late.on_disconnected(number.pk, Disconnect(DisconnectKind.LOGGED_OUT, "late"))
    assert sup._handle(sup.events.get_nowait()) is False
    assert number.pk in sup.held and session_of(number).state == "disconnected"  # no logout applied


def test_a_supervisor_that_cannot_renew_its_leases_closes_its_connections(number, fast):
    from sessions.supervisor import _Held

    class Connection:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    sup = Supervisor()
    connection = Connection()
    sup.held[number.pk] = _Held(number=number, connection=connection)
    sup._renewed_at = time.monotonic() - fast.SESSIONS_LEASE_SECONDS  # Redis has not answered for a lease time

    sup._check_lease_deadline()

    assert connection.stopped and number.pk not in sup.held
    assert session_of(number).state == "disconnected"  # nothing written: the next owner writes


def test_acquiring_keeps_a_lease_already_ours_and_says_when_anothers_expires(number, fast):
    from sessions.leases import Leases

    other = WhatsAppNumberFactory(engine="sandbox", display_number="+51 900 000 002")
    mine, theirs = Leases("me:1:a", ttl_seconds=30), Leases("them:2:b", ttl_seconds=10)
    assert mine.acquire(number.pk) and theirs.acquire(other.pk)

    taken, retry_in = mine.acquire_many([number.pk, other.pk])

    assert taken == [number.pk]
    assert 9 < retry_in <= 10


def test_a_send_whose_connection_went_away_after_the_check_is_pending_again(number, supervisor):
    from sessions.connections import connection_register
    from sessions.engines.base import SendError

    sandbox_customer_send(number=number, phone=CUSTOMER, body="Hola")
    sup = pair(number, supervisor)
    conversation = wait_for(lambda: Message.objects.filter(direction="in").first()).conversation
    reply = message_send(conversation=conversation, text="Un momento")

    class Dropping:
        connected = True  # passes the check, then the send finds it gone

        def send(self, content):
            raise SendError("not_connected", "gone", retryable=True)

    live = sup.held[number.pk].connection
    connection_register(number.pk, Dropping())
    try:
        assert message_deliver(message_id=reply.pk) == "waiting"
    finally:
        connection_register(number.pk, live)
    assert Message.objects.get(pk=reply.pk).status == "pending"
    assert message_deliver(message_id=reply.pk) == "accepted"


def test_a_reset_while_connected_unlinks_the_device_and_leaves_the_reset_state(number, supervisor):
    from sessions.services import session_reset

    pair(number, supervisor)

    session_reset(number=number)

    wait_for(lambda: lease_owners([number.pk])[number.pk] is None, what="the lease released")
    session = session_of(number)
    assert (session.state, session.device_jid, session.keep_connected) == ("disconnected", "", False)
    assert "connect again for a new QR code" in session.state_reason
    assert SandboxAccount.objects.get(number=number).device_jid == ""
    assert SessionStateChange.objects.filter(number=number).latest("created_at").state == "disconnected"
