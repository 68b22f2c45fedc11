"""The sandbox engine: a simulated WhatsApp network inside the product (docs/sessions.md "Sandbox").

What a real network keeps, the sandbox keeps too, so the supervisor, the services and the admin treat it like
WhatsApp Web:

- the account's linked device (and a temporary ban) in PostgreSQL (`SandboxAccount`, the server's side), the
  paired device JID on the number's session (the client's side);
- everything travelling to the number's device in a Redis stream per number (`sandbox:net:<id>`): customer
  messages, read receipts, QR scans and injected faults. The stream keeps what arrives while the number is
  offline, and a connection delivers it on reconnect, like WhatsApp does. The connection's position in it
  (`sandbox:cursor:<id>`) moves only after the listener has stored what it was given;
- what the number sends, in a stream per customer (`sandbox:phone:<id>:<digits>`): the customer phone page;
- which devices were online when, in one stream (`sandbox:presence`: a connection's id, process, number, "open"
  or "close" and the time), as a server knows its live connections: `make chaos` checks from it that no number
  was ever online from two connections at once.

One `_Hub` thread per process reads the streams of every live sandbox connection with a single blocking XREAD,
so 500 idle numbers cost one Redis call per second.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.utils import timezone

from sessions.engines.base import (
    NOT_CONNECTED,
    ConnectionListener,
    Disconnect,
    DisconnectKind,
    OutboundContent,
    OutboundText,
    SendError,
    SendResult,
)
from sessions.leases import redis_connection
from sessions.models import SandboxAccount, WhatsAppNumber

logger = logging.getLogger(__name__)

MAX_BODY = 4096


def net_key(number_id: int) -> str:
    return f"sandbox:net:{number_id}"


def cursor_key(number_id: int) -> str:
    return f"sandbox:cursor:{number_id}"


PRESENCE_KEY = "sandbox:presence"


def phone_key(number_id: int, phone: str) -> str:
    return f"sandbox:phone:{number_id}:{_digits(phone)}"


def _digits(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        raise ValueError(f"{phone!r} is not a phone number")
    return digits


def _unlink(number_id: int, device_jid: str | None = None) -> None:
    """The network forgets the number's linked device (only `device_jid`, when given)."""
    accounts = SandboxAccount.objects.filter(number_id=number_id).exclude(device_jid="")
    if device_jid is not None:
        accounts = accounts.filter(device_jid=device_jid)
    accounts.update(device_jid="", paired_at=None, updated_at=timezone.now())


def _account(number_id: int) -> SandboxAccount:
    account, _ = SandboxAccount.objects.get_or_create(number_id=number_id)
    return account


def _presence(number_id: int, connection_id: str, event: str) -> None:
    """Note a device coming online ("open") or leaving ("close"). A process killed outright notes no "close": its
    connections end with it, when it dies."""
    try:
        redis_connection().xadd(
            PRESENCE_KEY,
            {"number": number_id, "connection": connection_id, "pid": os.getpid(), "event": event, "at": time.time()},
            maxlen=100_000,
            approximate=True,
        )
    except redis.RedisError:
        logger.warning("sandbox: could not note number %s %s in the presence log", number_id, event)


def sandbox_presence_log() -> list[dict[str, Any]]:
    """Every presence note kept, oldest first: {"number", "connection", "pid", "event", "at"}."""
    entries = redis_connection().xrange(PRESENCE_KEY)
    return [
        {
            "number": int(fields[b"number"]),
            "connection": fields[b"connection"].decode(),
            "pid": int(fields[b"pid"]),
            "event": fields[b"event"].decode(),
            "at": float(fields[b"at"]),
        }
        for _, fields in entries
    ]


# --- The network's side: what customers, the simulator and tests do ----------------------------------------


def sandbox_customer_send(
    *, number: WhatsAppNumber, phone: str, body: str, name: str = "", quoted: str | None = None
) -> str:
    """A customer at `phone` writes to `number`; the provider id of the message. Delivered to the number's
    connection now, or when it next connects."""
    body = body.strip()
    if not body:
        raise ValueError("The message is empty.")
    if len(body) > MAX_BODY:
        raise ValueError(f"The message is longer than {MAX_BODY} characters.")
    provider_id = f"sandbox.in.{uuid.uuid4().hex}"
    event = {"type": "message", "id": provider_id, "from": _digits(phone), "name": name[:120], "body": body}
    if quoted:
        event["quoted"] = quoted
    _push(number.pk, event)
    _phone_append(number.pk, phone, {"id": provider_id, "direction": "in", "body": body, "status": "sent"})
    return provider_id


def sandbox_customer_inbox(*, number: WhatsAppNumber, phone: str) -> list[dict[str, Any]]:
    """The chat as the customer's phone shows it: both directions, oldest first, with the business's ticks."""
    entries = redis_connection().xrange(phone_key(number.pk, phone))
    chat: dict[str, dict[str, Any]] = {}
    for _entry_id, fields in entries:
        item = json.loads(fields[b"item"])
        if item.get("direction") == "status":
            if item["id"] in chat:
                chat[item["id"]]["status"] = item["status"]
            continue
        chat[item["id"]] = item
    return list(chat.values())


def sandbox_customer_read(*, number: WhatsAppNumber, phone: str) -> int:
    """The customer opens the chat: every message from the business not read yet gets a read receipt."""
    unread = [m for m in sandbox_customer_inbox(number=number, phone=phone) if m["direction"] == "out"]
    unread = [m for m in unread if m.get("status") != "read"]
    for message in unread:
        _push(number.pk, {"type": "receipt", "id": message["id"], "status": "read", "to": _digits(phone)})
        _phone_append(number.pk, phone, {"id": message["id"], "direction": "status", "status": "read"})
    return len(unread)


def sandbox_scan(*, number: WhatsAppNumber, code: str) -> None:
    """The phone scans `code` (what the admin shows while the number waits for a QR scan), or the owner types the
    pairing code the admin shows."""
    _push(number.pk, {"type": "scan", "code": code})


INJECTABLE = ("disconnect", "logout", "conflict", "ban")


def sandbox_inject(*, number: WhatsAppNumber, fault: str, seconds: int = 3600) -> None:
    """Make the network drop (`disconnect`), unlink (`logout`), replace (`conflict`) or ban (`ban`, for
    `seconds`) the number's connection."""
    if fault not in INJECTABLE:
        raise ValueError(f"Unknown fault {fault!r}; choose one of {', '.join(INJECTABLE)}.")
    if fault == "logout":
        _unlink(number.pk)
    if fault == "ban":
        until = timezone.now() + timedelta(seconds=seconds)
        account = _account(number.pk)
        account.banned_until = until
        account.save(update_fields=["banned_until", "updated_at"])
    _push(number.pk, {"type": fault})


def _push(number_id: int, event: dict[str, Any]) -> None:
    event.setdefault("ts", time.time())
    redis_connection().xadd(net_key(number_id), {"event": json.dumps(event)}, maxlen=100_000, approximate=True)


def _phone_append(number_id: int, phone: str, item: dict[str, Any]) -> None:
    item.setdefault("ts", time.time())
    redis_connection().xadd(phone_key(number_id, phone), {"item": json.dumps(item)}, maxlen=10_000, approximate=True)


# --- The number's side: engine and connection -----------------------------------------------------------------


class SandboxEngine:
    name = "sandbox"
    reply_window = None  # no customer-service window on the sandbox network
    supports_templates = False
    owns_connections = True

    def open(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> SandboxConnection:
        return SandboxConnection(number=number, device_jid=device_jid, listener=listener, qr_timeout=qr_timeout)

    def forget_device(self, *, number: WhatsAppNumber, device_jid: str) -> None:
        _unlink(number.pk, device_jid)

    def send(self, number: WhatsAppNumber, content: OutboundContent) -> SendResult:
        from sessions.connections import live_connection_send

        return live_connection_send(number, content)


class SandboxConnection:
    """One sandbox number online. States come from the network's answers; events from the hub."""

    def __init__(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> None:
        self.number_id = number.pk
        self.phone_number_id = number.phone_number_id
        self.display_number = number.display_number
        self.device_jid = device_jid
        self.listener = listener
        self.qr_timeout = qr_timeout
        self.qr_code = ""
        self.pairing_code = ""
        self.qr_deadline = 0.0
        self.connected = False
        self.online_at = 0.0
        self.closed = False
        self.connection_id = uuid.uuid4().hex
        self._lock = threading.Lock()

    # Connection protocol

    def start(self) -> None:
        self.listener.on_connecting(self.number_id)
        account = _account(self.number_id)
        if account.banned_until and account.banned_until > timezone.now():
            self._end(DisconnectKind.BANNED, "Temporarily banned by the sandbox network", until=account.banned_until)
            return
        if self.device_jid:
            if account.device_jid != self.device_jid:
                self._end(DisconnectKind.LOGGED_OUT, "The device was unlinked from the phone")
                return
            self._online()
            return
        self.qr_code = f"sandbox-pair:{self.number_id}:{secrets.token_urlsafe(16)}"
        self.qr_deadline = time.monotonic() + self.qr_timeout
        expires = timezone.now() + timedelta(seconds=self.qr_timeout)
        self.listener.on_qr(self.number_id, self.qr_code, expires)
        hub().attach(self)

    def stop(self) -> None:
        with self._lock:
            if self.closed:
                return
            was_online = self.connected
            self.closed, self.connected = True, False
        hub().detach(self)
        if was_online:
            _presence(self.number_id, self.connection_id, "close")
        self.listener.on_disconnected(self.number_id, Disconnect(DisconnectKind.CLOSED, "Connection closed"))

    def logout(self) -> None:
        _unlink(self.number_id)
        with self._lock:
            was_online = self.connected and not self.closed
            self.closed, self.connected = True, False
        hub().detach(self)
        if was_online:
            _presence(self.number_id, self.connection_id, "close")

    def request_pairing_code(self, phone: str) -> str:
        if self.connected or not self.qr_code:
            raise SendError("not_pairing", "The number is not waiting to be paired.")
        code = f"{secrets.randbelow(10**8):08d}"
        self.pairing_code = code
        self.listener.on_pairing_code(self.number_id, f"{code[:4]}-{code[4:]}")
        return code

    def send(self, content: OutboundContent) -> SendResult:
        if not self.connected:
            raise SendError(NOT_CONNECTED, "The sandbox number is not connected.", retryable=True)
        if not isinstance(content, OutboundText):
            raise SendError("unsupported", "The sandbox network carries text messages only (no templates).")
        provider_id = f"sandbox.out.{uuid.uuid4().hex}"
        r = redis_connection()
        item = {"id": provider_id, "direction": "out", "body": content.body, "status": "delivered", "ts": time.time()}
        if content.reply_to:
            item["quoted"] = content.reply_to
        r.xadd(phone_key(self.number_id, content.to), {"item": json.dumps(item)}, maxlen=10_000, approximate=True)
        # The network acknowledges at once: the phone is always reachable in the sandbox.
        _push(self.number_id, {"type": "receipt", "id": provider_id, "status": "delivered", "to": _digits(content.to)})
        return SendResult(provider_message_id=provider_id)

    # Internals

    def _online(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.connected = True
            self.online_at = time.time()
        _presence(self.number_id, self.connection_id, "open")
        hub().attach(self)  # first: what waited is read again from the cursor, whatever the listener does
        self.listener.on_connected(self.number_id, self.device_jid)

    def _end(self, kind: str, reason: str, *, until: datetime | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            was_online = self.connected
            self.closed, self.connected = True, False
        hub().detach(self)
        if was_online:
            _presence(self.number_id, self.connection_id, "close")
        self.listener.on_disconnected(self.number_id, Disconnect(kind, reason, until))

    def tick(self) -> None:
        """The hub's clock: a QR code nobody scanned in time ends the attempt."""
        if not self.connected and self.qr_code and time.monotonic() > self.qr_deadline:
            seconds = round(self.qr_timeout)
            self._end(DisconnectKind.QR_TIMEOUT, f"QR code not scanned within {seconds} s; connect again for a new one")

    def handle(self, events: list[dict[str, Any]]) -> int:
        """Events from the number's stream, oldest first; how many of them, from the first, were taken (the cursor
        moves past those). Offline, nothing is taken: messages and receipts wait for the connection, and only a
        QR scan acts. Online, a fault ends the connection (what follows waits for the next one); a fault or scan
        from before the connection came online is passed over."""
        if not self.connected:
            for event in events:
                if event.get("type") == "scan" and self._matches(str(event.get("code", ""))):
                    self._paired()
                    break
            return 0
        messages, receipts = [], []
        taken = 0
        for event in events:
            kind = event.get("type")
            taken += 1
            if kind in INJECTABLE and float(event.get("ts", 0)) >= self.online_at:
                self._flush(messages, receipts)
                self._fault(kind)
                return taken
            if kind == "message":
                messages.append(self._inbound(event))
            elif kind == "receipt":
                receipts.append(self._receipt(event))
        self._flush(messages, receipts)
        return taken

    def _matches(self, code: str) -> bool:
        """A scan of the QR code shown, or the pairing code typed on the phone (any spacing or dashes)."""
        if not self.qr_code:
            return False
        typed = "".join(ch for ch in code if ch.isdigit())
        return code == self.qr_code or bool(self.pairing_code and typed == self.pairing_code)

    def _flush(self, messages: list, receipts: list) -> None:
        if messages:
            self.listener.on_messages(self.number_id, messages)
        if receipts:
            self.listener.on_receipts(self.number_id, receipts)

    def _paired(self) -> None:
        jid = f"{_digits(self.display_number)}.0:{secrets.randbelow(90) + 10}@s.whatsapp.net"
        with transaction.atomic():
            account = SandboxAccount.objects.select_for_update().get_or_create(number_id=self.number_id)[0]
            account.device_jid, account.paired_at = jid, timezone.now()
            account.save(update_fields=["device_jid", "paired_at", "updated_at"])
        self.device_jid, self.qr_code, self.pairing_code = jid, "", ""
        self._online()

    def _fault(self, kind: str) -> None:
        if kind == "disconnect":
            self._end(DisconnectKind.TRANSIENT, "Connection to the sandbox network lost")
        elif kind == "logout":
            self._end(DisconnectKind.LOGGED_OUT, "Logged out from the phone (device unlinked)")
        elif kind == "conflict":
            self._end(DisconnectKind.CONFLICT, "Replaced by another connection with the same keys")
        elif kind == "ban":
            until = _account(self.number_id).banned_until
            self._end(DisconnectKind.BANNED, "Temporarily banned by the sandbox network", until=until)

    def _inbound(self, event: dict[str, Any]):
        from conversations.inbound import InboundMessage, InboundSender

        return InboundMessage(
            phone_number_id=self.phone_number_id,
            display_phone_number=_digits(self.display_number),
            provider_message_id=str(event["id"]),
            sender=InboundSender(wa_id=str(event["from"]), bsuid=None, name=str(event.get("name", "")), username=None),
            timestamp=datetime.fromtimestamp(float(event["ts"]), tz=UTC),
            kind="text",
            body=str(event.get("body", "")),
            media=None,
            quoted_provider_id=event.get("quoted"),
            error_code="",
            error_reason="",
            raw=event,
        )

    def _receipt(self, event: dict[str, Any]):
        from conversations.inbound import StatusUpdate

        return StatusUpdate(
            phone_number_id=self.phone_number_id,
            provider_message_id=str(event["id"]),
            status=str(event["status"]),
            timestamp=datetime.fromtimestamp(float(event["ts"]), tz=UTC),
            recipient_wa_id=event.get("to"),
            recipient_bsuid=None,
            error_code="",
            error_reason="",
            raw=event,
        )


class _Hub:
    """Reads the streams of every attached connection in one thread and hands each its events.

    Per connection it keeps a read position apart from the durable cursor: events a connection cannot take yet
    (messages while it waits for a QR scan) are read past, so they do not wake the hub again, and read again from
    the cursor once the connection is online (attaching resets the position)."""

    BLOCK_MS = 1000

    def __init__(self) -> None:
        self._connections: dict[int, SandboxConnection] = {}
        self._positions: dict[int, str] = {}
        self._lock = threading.Lock()
        self._wake = f"sandbox:hub:{uuid.uuid4().hex}"
        self._thread: threading.Thread | None = None

    def attach(self, connection: SandboxConnection) -> None:
        with self._lock:
            self._connections[connection.number_id] = connection
            self._positions.pop(connection.number_id, None)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-hub", daemon=True)
                self._thread.start()
        self._poke()

    def detach(self, connection: SandboxConnection) -> None:
        with self._lock:
            if self._connections.get(connection.number_id) is connection:
                del self._connections[connection.number_id]
                self._positions.pop(connection.number_id, None)

    def _poke(self) -> None:
        try:
            pipe = redis_connection().pipeline(transaction=False)
            pipe.xadd(self._wake, {"wake": "1"}, maxlen=10, approximate=False)
            pipe.expire(self._wake, 3600)  # this process's key: gone an hour after its last use
            pipe.execute()
        except redis.RedisError:
            logger.warning("sandbox hub: could not wake the reader; it looks again within a second")

    def _streams(self, r: redis.Redis, wake_id: str) -> tuple[dict[str, str], dict[int, SandboxConnection]]:
        with self._lock:
            connections = dict(self._connections)
            unknown = [n for n in connections if n not in self._positions]
        if unknown:
            cursors = r.mget([cursor_key(n) for n in unknown])
            with self._lock:
                for number_id, cursor in zip(unknown, cursors, strict=True):
                    self._positions.setdefault(number_id, cursor.decode() if cursor else "0")
        with self._lock:
            streams = {self._wake: wake_id}
            streams.update({net_key(n): self._positions.get(n, "0") for n in connections})
        return streams, connections

    def _run(self) -> None:
        r = redis_connection()
        wake = {"id": "$"}
        while True:
            try:
                self._once(r, wake)
            except Exception:  # one bad entry or a Redis hiccup must not end the reader of every sandbox number
                logger.exception("sandbox hub: read failed; retrying")
                time.sleep(1)

    def _once(self, r: redis.Redis, wake: dict[str, str]) -> None:
        """One read of every attached connection's stream (blocking up to a second), and its delivery."""
        with self._lock:
            live = list(self._connections.values())
        if not live:
            db_connection.close()  # idle: hold no database connection
        for connection in live:
            connection.tick()
        streams, connections = self._streams(r, wake["id"])
        answer = r.xread(streams, count=500, block=self.BLOCK_MS)
        for key, entries in answer or []:
            key = key.decode() if isinstance(key, bytes) else key
            if key == self._wake:
                wake["id"] = entries[-1][0].decode()
                continue
            self._deliver(r, connections.get(int(key.rsplit(":", 1)[1])), entries)

    def _deliver(self, r: redis.Redis, connection: SandboxConnection | None, entries: list) -> None:
        if connection is None:
            return
        number_id = connection.number_id
        try:
            events = [json.loads(fields[b"event"]) for _id, fields in entries]
            close_old_connections()
            taken = connection.handle(events)
        except Exception:
            logger.exception("sandbox hub: number %s could not take its events; offered again", number_id)
            with self._lock:
                self._positions.pop(number_id, None)  # read again from the cursor, not from past what failed
            time.sleep(0.5)
            return
        if taken:
            r.set(cursor_key(number_id), entries[taken - 1][0])
        with self._lock:
            if number_id not in self._positions or self._connections.get(number_id) is not connection:
                return  # attached again or detached meanwhile: the next read starts from the cursor
            if not connection.connected:
                self._positions[number_id] = entries[-1][0].decode()  # read past what waits for the connection
            elif taken:
                self._positions[number_id] = entries[taken - 1][0].decode()


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def hub() -> _Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = _Hub()
        return _hub
