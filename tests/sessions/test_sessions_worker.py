"""Real sessions workers (celery processes, threads pool, real Redis and PostgreSQL) owning sandbox numbers:
one owner per number, takeover after SIGKILL without a QR code, and sends queued while a number is offline
delivered through its own queue once a worker connects it again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from conversations.models import Message
from conversations.services import message_send
from sessions.engines.sandbox import sandbox_customer_inbox, sandbox_customer_send
from sessions.leases import lease_owners
from sessions.models import NumberSession, SandboxAccount, SessionStateChange
from tests.conftest import ROOT, project_env, stop_processes
from tests.sessions.factories import WhatsAppNumberFactory
from tests.sessions.test_supervisor import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CELERY = str(ROOT / ".venv" / "bin" / "celery") if (ROOT / ".venv" / "bin" / "celery").exists() else "celery"
LEASE_SECONDS = 3


class Workers:
    def __init__(self) -> None:
        self.env = project_env(
            APP_COMPONENT="sessions",
            SESSIONS_HEARTBEAT_SECONDS="0.5",
            SESSIONS_LEASE_SECONDS=str(LEASE_SECONDS),
            SESSIONS_BACKOFF_MAX="1",
            LOG_LEVEL="WARNING",
        )
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [CELERY, "-A", "config", "worker", "-Q", "sessions", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
            + ["-P", "threads", "-c", "2", "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        stop_processes(self.procs, timeout=30)


@pytest.fixture
def workers():
    w = Workers()
    yield w
    w.stop_all()


def paired_sandbox_numbers(count: int) -> list:
    """Sandbox numbers whose device is already linked (as after a QR scan on an earlier day)."""
    numbers = []
    for n in range(count):
        number = WhatsAppNumberFactory(
            engine="sandbox", display_number=f"+51 900 100 {n:03d}", access_token="", verify_token=""
        )
        jid = f"51900100{n:03d}.0:1@s.whatsapp.net"
        NumberSession.objects.filter(number=number).update(device_jid=jid)
        SandboxAccount.objects.create(number=number, device_jid=jid)
        numbers.append(number)
    return numbers


def all_connected(numbers) -> dict[int, str] | None:
    sessions = list(NumberSession.objects.filter(number__in=numbers))
    if all(s.state == "connected" for s in sessions):
        return {s.number_id: s.owner for s in sessions}
    return None


def test_two_workers_share_the_numbers_and_a_killed_owners_numbers_move_over_without_a_qr_code(workers):
    numbers = paired_sandbox_numbers(6)
    ids = [n.pk for n in numbers]
    first = workers.start("sessions-a")
    owners = wait_for(lambda: all_connected(numbers), timeout=45, what="every number connected")
    assert {owner.split(":")[1] for owner in owners.values()} == {str(first.pid)}
    assert lease_owners(ids) == owners  # the lease holder is the connected owner

    # a second worker on the same numbers connects none of them while the first holds their leases
    second = workers.start("sessions-b")
    time.sleep(6)  # its start-up and several of its heartbeats (0.5 s)
    assert not SessionStateChange.objects.filter(number__in=numbers, owner__contains=f":{second.pid}:").exists()
    assert lease_owners(ids) == owners

    # when: the first worker is SIGKILLed (no chance to release its leases)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()

    # then: within the lease time plus a few heartbeats every number is connected again, by the other worker
    moved = wait_for(
        lambda: (o := all_connected(numbers)) and all(f":{first.pid}:" not in owner for owner in o.values()) and o,
        timeout=LEASE_SECONDS + 20,
        what="the survivor taking every number over",
    )
    assert time.monotonic() - killed_at < LEASE_SECONDS + 20
    assert {owner.split(":")[1] for owner in moved.values()} == {str(second.pid)}
    assert not SessionStateChange.objects.filter(number__in=numbers, state__in=["waiting_qr", "conflict"]).exists()
    # the time offline is on record: from the killed worker's last heartbeat to the survivor's connection
    for number in numbers:
        *_, went_down, connecting, came_back = SessionStateChange.objects.filter(number=number).order_by(
            "created_at", "id"
        )
        assert connecting.state == "connecting"
        assert (went_down.from_state, went_down.state) == ("connected", "disconnected")
        assert f":{first.pid}:" in went_down.reason and "taken over" in went_down.reason
        assert came_back.state == "connected" and f":{second.pid}:" in came_back.owner
        outage = number.outages.get()
        assert outage.started_at == went_down.created_at and outage.ended_at is not None


def test_a_reply_queued_while_the_number_is_offline_is_sent_once_when_a_worker_connects_it(workers):
    (number,) = paired_sandbox_numbers(1)
    customer = "+51 955 555 555"
    first = workers.start("sessions-a")
    wait_for(lambda: all_connected([number]), timeout=45, what="connected")
    sandbox_customer_send(number=number, phone=customer, body="Hola, ¿siguen abiertos?")
    inbound = wait_for(lambda: Message.objects.filter(direction="in").first(), timeout=20, what="the inbound message")

    # the worker stops cleanly: the number goes offline, its lease is released
    first.terminate()
    first.wait(timeout=30)
    assert NumberSession.objects.get(number=number).state == "disconnected"

    reply = message_send(conversation=inbound.conversation, text="Sí, hasta las 8 pm")
    time.sleep(1)
    assert Message.objects.get(pk=reply.pk).status == "pending"  # nobody consumes the number's queue

    # when: a sessions worker starts again
    workers.start("sessions-b")

    # then: the number reconnects without a QR code and the reply reaches the phone, once
    wait_for(lambda: Message.objects.get(pk=reply.pk).status == "delivered", timeout=45, what="the reply delivered")
    outbound = [m for m in sandbox_customer_inbox(number=number, phone=customer) if m["direction"] == "out"]
    assert [m["body"] for m in outbound] == ["Sí, hasta las 8 pm"]
    assert not SessionStateChange.objects.filter(number=number, state="waiting_qr").exists()
