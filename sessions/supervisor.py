"""The supervisor: what a sessions worker runs to own WhatsApp Web and sandbox connections (docs/sessions.md).

One per sessions worker process (started by `sessions.bootsteps`). Every heartbeat it renews the leases it holds
(and drops at once a number whose lease it lost), takes a free lease for every number staff want connected,
opens its connection and consumes that number's send queue. Connections report through the `ConnectionListener`
methods; a disconnect goes through the reconnect policy on the supervisor's own thread:

- transient: reconnect with exponential backoff and jitter (1 s ... SESSIONS_BACKOFF_MAX), counted afresh once a
  connection stayed up SESSIONS_STABLE_SECONDS;
- logged out: device data removed, state `logged_out`, staff told, no reconnect;
- conflict: state `conflict`, staff told, no reconnect;
- banned: state `banned` until the ban ends, then connected again;
- QR timeout: back to `disconnected`, a new QR code only when staff ask.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db import connection as db_connection
from django.utils import timezone

from sessions.connections import connection_register, connection_unregister, number_queue
from sessions.engines import connection_engine_names, get_engine
from sessions.engines.base import Connection, Disconnect, DisconnectKind
from sessions.leases import Leases, new_owner_id, redis_connection
from sessions.models import NumberSession, SessionState, WhatsAppNumber
from sessions.services.numbers import number_attention_clear, number_attention_set
from sessions.services.states import CONTROL_CHANNEL, SessionStateError, session_pairing_code_set, session_state_set

logger = logging.getLogger(__name__)


def backoff_delay(attempt: int, *, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds before reconnect `attempt` (1, 2, ...): 1 s doubling up to `maximum`, jittered down by up to a
    half so many numbers dropped together do not return together."""
    rng = rng or random
    ceiling = min(maximum, 2.0 ** max(0, attempt - 1))
    return max(min(1.0, maximum), ceiling * (0.5 + rng.random() / 2))


LIVE_STATES = (SessionState.CONNECTING, SessionState.WAITING_QR, SessionState.CONNECTED)


class _ConnectionListener:
    """What one connection reports, passed to the supervisor only while that connection is the number's current
    one in this worker: a replaced, dropped or released connection's late callbacks change nothing."""

    def __init__(self, supervisor: Supervisor, number_id: int) -> None:
        self.supervisor = supervisor
        self.number_id = number_id
        self.connection: Connection | None = None  # set right after the engine opens it, before it starts

    def _current(self) -> bool:
        held = self.supervisor.held.get(self.number_id)
        return held is not None and self.connection is not None and held.connection is self.connection

    def on_connecting(self, number_id: int) -> None:
        if self._current():
            self.supervisor.on_connecting(number_id)

    def on_qr(self, number_id: int, code: str, expires_at) -> None:
        if self._current():
            self.supervisor.on_qr(number_id, code, expires_at)

    def on_pairing_code(self, number_id: int, code: str) -> None:
        if self._current():
            self.supervisor.on_pairing_code(number_id, code)

    def on_connected(self, number_id: int, device_jid: str) -> None:
        if self._current():
            self.supervisor.on_connected(number_id, device_jid)

    def on_disconnected(self, number_id: int, disconnect: Disconnect) -> None:
        self.supervisor.on_disconnected(number_id, disconnect, self.connection)  # filtered on the supervisor's thread

    def on_messages(self, number_id: int, messages: list) -> None:
        # Stored whoever owns the number now: they arrived, and storing is idempotent (provider ids).
        self.supervisor.on_messages(number_id, messages)

    def on_receipts(self, number_id: int, updates: list) -> None:
        self.supervisor.on_receipts(number_id, updates)


@dataclass
class _Held:
    number: WhatsAppNumber
    connection: Connection | None = None
    connected_since: float | None = None
    reconnect_at: float | None = None
    attempts: int = 0


class Supervisor(threading.Thread):
    def __init__(
        self,
        *,
        owner: str | None = None,
        add_queue: Callable[[str], None] | None = None,
        cancel_queue: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="sessions-supervisor", daemon=True)
        self.owner = owner or new_owner_id()
        self.leases = Leases(self.owner, ttl_seconds=settings.SESSIONS_LEASE_SECONDS)
        self.heartbeat = settings.SESSIONS_HEARTBEAT_SECONDS
        self.add_queue = add_queue or (lambda name: None)
        self.cancel_queue = cancel_queue or (lambda name: None)
        self.held: dict[int, _Held] = {}
        self.events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._retry_at: float | None = None  # when a lease someone else holds expires: try it then
        self._renewed_at = time.monotonic()  # the last time Redis confirmed the leases held
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._engines = connection_engine_names()

    # --- lifecycle

    def run(self) -> None:
        listener = threading.Thread(target=self._listen_control, name="sessions-control", daemon=True)
        listener.start()
        next_tick = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            due = [h.reconnect_at for h in self.held.values() if h.reconnect_at is not None]
            if self._retry_at is not None:
                due.append(self._retry_at)
            wait = max(0.0, min([next_tick, *due]) - now)
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                event = None
            try:
                self._check_lease_deadline()
                close_old_connections()
                if event is not None:
                    if self._handle(event):
                        next_tick = 0.0
                    continue
                if time.monotonic() >= next_tick or (self._retry_at and time.monotonic() >= self._retry_at):
                    self.tick()
                    next_tick = time.monotonic() + self.heartbeat
                self._reconnect_due()
            except Exception:
                logger.exception("sessions supervisor %s: tick failed; trying again", self.owner)
                next_tick = time.monotonic() + min(self.heartbeat, 2.0)
        try:
            self._shutdown()
        finally:
            db_connection.close()
            self._stopped.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Close every connection, write their state and release their leases so another worker takes over now."""
        self._stopping.set()
        self.events.put(("stop",))
        self._stopped.wait(timeout)

    def _check_lease_deadline(self) -> None:
        """Without a confirmed renewal for most of the lease time (Redis away, a stuck tick), another worker may
        already own these numbers: close every connection now, writing nothing (the new owner writes states)."""
        ttl = settings.SESSIONS_LEASE_SECONDS
        if self.held and time.monotonic() - self._renewed_at > ttl * 0.8:
            logger.error("supervisor %s could not renew its leases for %.0f s; closing all", self.owner, ttl * 0.8)
            for number_id in list(self.held):
                self._drop(number_id)

    def _shutdown(self) -> None:
        for number_id in list(self.held):
            self._release(number_id, state=SessionState.DISCONNECTED, reason="Sessions worker stopped")

    # --- the heartbeat

    def tick(self) -> None:
        kept = self.leases.renew(self.held)
        self._renewed_at = time.monotonic()
        for number_id, ours in kept.items():
            if not ours:
                logger.warning("supervisor %s lost the lease of number %s; disconnecting", self.owner, number_id)
                self._drop(number_id)
        now = timezone.now()
        wanted = set(
            NumberSession.objects.filter(number__is_active=True, number__engine__in=self._engines, keep_connected=True)
            .exclude(banned_until__gt=now)
            .values_list("number_id", flat=True)
        )
        unwanted = [n for n in self.held if n not in wanted]
        reset = set(
            NumberSession.objects.filter(number_id__in=unwanted, device_jid="").values_list("number_id", flat=True)
        )
        for number_id in unwanted:
            held = self.held[number_id]
            if number_id in reset and held.connection is not None:
                # Reset while connected (its device data is gone): unlink it on the phone too, not just close it.
                try:
                    held.connection.logout()
                except Exception:
                    logger.exception("number %s: logout after a reset failed", number_id)
                self._release(number_id)
            else:
                self._release(number_id, state=SessionState.DISCONNECTED, reason="Disconnected on request")
        # Numbers whose lease another worker holds are tried again the moment it expires (a killed worker's numbers
        # move over after the lease time, not up to a heartbeat later).
        taken, expires_in = self.leases.acquire_many(sorted(wanted - set(self.held)))
        self._retry_at = time.monotonic() + expires_in + 0.05 if expires_in is not None else None
        sessions = NumberSession.objects.select_related("number").in_bulk(taken, field_name="number_id")
        for number_id in taken:
            if self._stopping.is_set():
                self.leases.release(number_id)
                continue
            self._take(sessions[number_id])
        if self.held:
            NumberSession.objects.filter(number_id__in=list(self.held)).update(heartbeat_at=now, owner=self.owner)

    def _take(self, session: NumberSession) -> None:
        number, number_id = session.number, session.number_id
        held = self.held[number_id] = _Held(number=number, attempts=session.reconnect_attempts)
        self.add_queue(number_queue(number_id))
        logger.info("sessions supervisor %s took number %s", self.owner, number_id)
        if session.state in LIVE_STATES:
            # Its previous owner (another worker, or this one before it lost the lease) let go without saying so:
            # the number has been offline since that owner's last heartbeat. Say so, and open the outage from then.
            since = session.heartbeat_at or timezone.now()
            reason = f"Sessions worker {session.owner or '?'} stopped (last heartbeat {since:%H:%M:%S} UTC); taken over"
            self._set(number_id, SessionState.DISCONNECTED, reason[:255], at=since)
        self._open(held, session)

    def _open(self, held: _Held, session: NumberSession | None = None) -> None:
        number = held.number
        held.reconnect_at = None
        if session is None:
            session = NumberSession.objects.get(number=number)
        try:
            listener = _ConnectionListener(self, number.pk)
            connection = get_engine(number.engine).open(
                number=number, device_jid=session.device_jid, listener=listener, qr_timeout=settings.WHATSAPP_QR_TIMEOUT
            )
            listener.connection = connection
            held.connection = connection
            connection_register(number.pk, connection)
            connection.start()
        except Exception as exc:
            logger.exception("number %s: could not connect", number.pk)
            self._transient(held, f"Could not connect: {exc}"[:200], state=SessionState.ERROR)

    def _reconnect_due(self) -> None:
        now = time.monotonic()
        for held in list(self.held.values()):
            if held.reconnect_at is not None and held.reconnect_at <= now:
                self._open(held)

    def _drop(self, number_id: int) -> None:
        """Lost the lease: close at once, write nothing (the new owner writes the state)."""
        held = self.held.pop(number_id, None)
        if held is None:
            return
        self.cancel_queue(number_queue(number_id))
        if held.connection is not None:
            connection_unregister(number_id, held.connection)
            try:
                held.connection.stop()
            except Exception:
                logger.exception("number %s: error while closing", number_id)

    def _release(self, number_id: int, *, state: str | None = None, reason: str = "") -> None:
        held = self.held.get(number_id)
        self._drop(number_id)
        if state is not None and held is not None:
            self._set(number_id, state, reason)
        self.leases.release(number_id)

    def _set(self, number_id: int, state: str, reason: str, **fields) -> None:
        try:
            session_state_set(number_id=number_id, state=state, reason=reason, owner=self.owner, **fields)
        except SessionStateError:
            logger.exception("number %s: state not written", number_id)

    # --- control messages from staff and commands (sessions.services.states.control_publish)

    def _listen_control(self) -> None:
        while not self._stopping.is_set():
            try:
                pubsub = redis_connection().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CONTROL_CHANNEL)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        try:
                            data = json.loads(message["data"])
                            self.events.put(("control", str(data["action"]), int(data["number"])))
                        except (ValueError, TypeError, KeyError, AttributeError):
                            logger.warning("sessions supervisor: ignored a malformed control message")
            except Exception:
                logger.warning("sessions supervisor: control channel unavailable; retrying", exc_info=True)
                try:
                    pubsub.close()
                except Exception:  # noqa: S110 (already broken)
                    pass
                time.sleep(1)

    def _handle(self, event: tuple) -> bool:
        """One queued event; True when a heartbeat should run now."""
        kind = event[0]
        if kind == "stop":
            return False
        if kind == "control":
            _kind, action, number_id = event
            if action == "logout" and number_id in self.held:
                held = self.held[number_id]
                if held.connection is not None:
                    held.connection.logout()
                self._drop(number_id)
                self.leases.release(number_id)
            elif action == "pairing_code" and number_id in self.held:
                held = self.held[number_id]
                if held.connection is not None:
                    try:
                        held.connection.request_pairing_code(held.number.e164.lstrip("+"))
                    except Exception as exc:
                        logger.warning("number %s: no pairing code: %s", number_id, exc)
            elif action == "restart" and number_id in self.held:
                held = self.held[number_id]
                if held.connection is not None:
                    connection, held.connection = held.connection, None
                    connection_unregister(number_id, connection)
                    try:
                        connection.stop()
                    except Exception:
                        logger.exception("number %s: error while closing a stalled connection", number_id)
                self._set(number_id, SessionState.DISCONNECTED, "Restarting a stalled connection")
                self._open(held)
            return True
        if kind == "disconnected":
            _kind, number_id, connection, disconnect = event
            held = self.held.get(number_id)
            if held is None or held.connection is not connection:
                return False  # a connection replaced or dropped since: its end changes nothing
            try:
                self._policy(number_id, disconnect)
            except Exception:
                logger.exception("number %s: reconnect policy failed; trying to connect again later", number_id)
                held.connection = None
                held.reconnect_at = time.monotonic() + backoff_delay(
                    held.attempts + 1, maximum=settings.SESSIONS_BACKOFF_MAX
                )
        return False

    # --- reconnect policy

    def _policy(self, number_id: int, disconnect: Disconnect) -> None:
        held = self.held[number_id]  # _handle checked it is this number's current connection
        if disconnect.kind == DisconnectKind.CLOSED:
            return
        connection_unregister(number_id, held.connection)
        held.connection = None
        number = held.number
        if disconnect.kind == DisconnectKind.TRANSIENT:
            since = held.connected_since
            if since is not None and time.monotonic() - since >= settings.SESSIONS_STABLE_SECONDS:
                held.attempts = 0
            held.connected_since = None
            self._transient(held, disconnect.reason)
            return
        session = NumberSession.objects.get(number_id=number_id)
        if disconnect.kind == DisconnectKind.LOGGED_OUT:
            get_engine(number.engine).forget_device(number=number, device_jid=session.device_jid)
            self._set(number_id, SessionState.LOGGED_OUT, disconnect.reason, device_jid="", keep_connected=False)
            number_attention_set(number=number, reason=f"{disconnect.reason}: connect it again and scan a new QR code")
        elif disconnect.kind == DisconnectKind.CONFLICT:
            self._set(number_id, SessionState.CONFLICT, disconnect.reason, keep_connected=False)
            number_attention_set(
                number=number, reason=f"{disconnect.reason}: close the other session, then connect this number again"
            )
        elif disconnect.kind == DisconnectKind.BANNED:
            until = disconnect.until or timezone.now() + timedelta(hours=1)
            reason = f"{disconnect.reason} until {until:%Y-%m-%d %H:%M} UTC"
            self._set(number_id, SessionState.BANNED, reason, banned_until=until)
        elif disconnect.kind == DisconnectKind.QR_TIMEOUT:
            self._set(number_id, SessionState.DISCONNECTED, disconnect.reason, keep_connected=False)
        else:
            self._set(number_id, SessionState.ERROR, disconnect.reason)
        self._release(number_id)

    def _transient(self, held: _Held, reason: str, *, state: str = SessionState.DISCONNECTED) -> None:
        held.attempts += 1
        delay = backoff_delay(held.attempts, maximum=settings.SESSIONS_BACKOFF_MAX)
        held.reconnect_at = time.monotonic() + delay
        reason = f"{reason}; reconnecting in {delay:.0f} s (attempt {held.attempts})"
        self._set(held.number.pk, state, reason, reconnect_attempts=held.attempts)

    # --- ConnectionListener (called from connection threads)

    def on_connecting(self, number_id: int) -> None:
        self._set(number_id, SessionState.CONNECTING, "Connecting")

    def on_qr(self, number_id: int, code: str, expires_at) -> None:
        reason = "Scan the QR code with WhatsApp"
        self._set(number_id, SessionState.WAITING_QR, reason, qr_code=code, qr_expires_at=expires_at)

    def on_pairing_code(self, number_id: int, code: str) -> None:
        session_pairing_code_set(number_id=number_id, code=code)

    def on_connected(self, number_id: int, device_jid: str) -> None:
        held = self.held.get(number_id)
        if held is not None:
            held.connected_since = time.monotonic()
        self._set(number_id, SessionState.CONNECTED, "Connected", device_jid=device_jid, reconnect_attempts=0)
        if held is not None:
            if held.number.attention_since is not None:
                number_attention_clear(number=held.number)
            from conversations.services.outbound import outbound_pending_enqueue

            outbound_pending_enqueue(number=held.number)

    def on_disconnected(self, number_id: int, disconnect: Disconnect, connection: Connection | None = None) -> None:
        self.events.put(("disconnected", number_id, connection, disconnect))

    def on_messages(self, number_id: int, messages: list) -> None:
        from conversations.services.receive import inbound_messages_receive

        held = self.held.get(number_id)
        number = held.number if held is not None else WhatsAppNumber.objects.get(pk=number_id)
        for result in inbound_messages_receive(number=number, messages=messages):
            if isinstance(result, Exception):
                logger.warning("number %s: inbound message rejected: %s", number_id, result)

    def on_receipts(self, number_id: int, updates: list) -> None:
        from conversations.services.statuses import message_statuses_apply

        held = self.held.get(number_id)
        number = held.number if held is not None else WhatsAppNumber.objects.get(pk=number_id)
        message_statuses_apply(number=number, updates=updates)
