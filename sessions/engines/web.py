"""The WhatsApp Web engine: each number is a linked device, driven by neonize (whatsmeow) (docs/sessions.md).

One `WebConnection` per connected number, owned by the sessions worker holding the number's lease. The device
keys live in the project's PostgreSQL (whatsmeow's own `whatsmeow_*` tables, created by whatsmeow on first use),
so any worker can resume a paired device by its JID without a new QR code.

Threads of one connection:

- the native thread runs neonize's blocking `Neonize` entry point until the connection ends. It is called as
  `NewClient.connect_with_proxy` calls it, but from a daemon thread of ours: `connect` would run it on a non-daemon
  thread (a native call that never returns, below, would then block the worker's shutdown), print login
  statuses to stdout and obey neonize's process-wide stop event;
- neonize calls back (QR codes, pairing status, events) on threads of the Go runtime. Those callbacks only decode
  and queue; one dispatcher thread per connection translates what they queued and calls the listener, in order,
  with a database connection of its own (a ctypes callback gets a new Python thread state on every call, so Django
  connections opened there could never be reused or closed).

What neonize 0.5.2 makes us work around (its Go core, `goneonize/main.go`):

- its client table and context maps are plain Go maps: a second client starting while another is registered can
  crash the process ("concurrent map writes"). Starts are serialised (`START_GATE`): the next one waits until this
  one has shown a sign of life, or `START_SETTLE` seconds;
- `Stop` removes the client from that table, and the event loop looks it up once pairing or connecting is over:
  stopping a client before its event loop runs would crash the process. A connection is only `Stop`ped once its
  event loop runs (neonize's first event, the device, arrived) or after the native call returned. While it waits
  for a QR scan it is only disconnected;
- when nobody scans the QR code, the event loop waits forever for a device id that never comes: that native call
  never returns. Its thread and goroutine stay idle until the process ends (one per unscanned QR attempt, which
  only happens when staff ask for a QR code);
- resuming a JID the store does not hold crashes the process (whatsmeow gets no device): `start` checks the store
  first and reports such a number as logged out;
- every native call opens its own database pool (a live client keeps 1-2 PostgreSQL sessions) and never closes
  it. Each attempt names its sessions (`application_name` "wa-device-store:<client id>") and the engine terminates
  them once the attempt is over, or a reconnecting number would exhaust PostgreSQL's connections;
- events are acknowledged to WhatsApp before Python sees them: a worker killed in between loses them.

Optional setting: WHATSAPP_WEB_PROXY, a proxy URL (socks5://… or http://…) every connection goes through.

Inbound messages and receipts are translated into `conversations.inbound` dataclasses. Own messages, groups,
broadcasts, status updates and protocol messages (edits, deletions, key distribution) are skipped. Logs carry
ids, kinds and states: never message text or phone numbers.
"""

from __future__ import annotations

import base64
import ctypes
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db import connection as db_connection
from django.utils import timezone

from sessions.engines.base import (
    ConnectionListener,
    Disconnect,
    DisconnectKind,
    OutboundContent,
    OutboundText,
    SendError,
    SendResult,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import JID

    from conversations.inbound import InboundMedia, InboundMessage, InboundSender, StatusUpdate
    from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
DEVICE_TABLE = "whatsmeow_device"
STORE_APPLICATION_NAME = "wa-device-store"  # how the device store's PostgreSQL sessions are named (a prefix)

START_SETTLE = 0.5  # seconds a starting client keeps the others from starting (see the module notes)
CONNECT_TIMEOUT = 60.0  # seconds without a QR code or an event before a connect attempt counts as failed
FIRST_QR_SECONDS = 60  # whatsmeow shows the first QR code for 60 s and every following one for 20 s
NEXT_QR_SECONDS = 20
GO_LOG_LEVEL = b"WARN"  # whatsmeow logs JIDs (phone numbers) at info level: keep those out of the logs

START_GATE = threading.Lock()

# neonize's native event codes (neonize.events.EVENT_TO_INT) this engine subscribes to.
DEVICE_EVENT = 0
SUBSCRIBED_EVENTS = (2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 17, 18)

# Wrappers whatsmeow usually unwraps already; unwrapped here too so nothing slips through as "unsupported".
WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "deviceSentMessage",
)
MEDIA_FIELDS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# Parts of a message that carry no content of their own.
META_FIELDS = frozenset(
    {"messageContextInfo", "senderKeyDistributionMessage", "fastRatchetKeySenderKeyDistributionMessage"}
)
# Messages about other messages or about the chat: nothing to show in a conversation.
SKIPPED_FIELDS = frozenset({"protocolMessage", "keepInChatMessage", "pinInChatMessage", "encReactionMessage"})


class _Phase:
    """Where the native call is; decides what may be done to stop it (see the module notes)."""

    IDLE = "idle"  # not in neonize yet
    STARTING = "starting"  # inside `Neonize`: opening the store, connecting
    QR = "qr"  # waiting for a QR scan (or a pairing code)
    QR_ABANDONED = "qr_abandoned"  # we stopped waiting for a scan: disconnected, never to be `Stop`ped
    QR_ENDED = "qr_ended"  # the QR wait ended without pairing: the native call never returns
    PAIRED = "paired"  # paired: the event loop is about to start
    READY = "ready"  # the event loop runs: `Stop` is safe
    RETURNED = "returned"  # `Neonize` returned


NOT_FINAL_QR_STATUSES = frozenset({"err-scanned-without-multidevice"})  # whatsmeow keeps the QR wait going
NO_RETURN_PHASES = frozenset({_Phase.IDLE, _Phase.QR, _Phase.QR_ABANDONED, _Phase.QR_ENDED})


# --- helpers ---------------------------------------------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def device_store_url(database: dict[str, Any] | None = None, *, application_name: str = STORE_APPLICATION_NAME) -> str:
    """The project's PostgreSQL (`database`: a DATABASES entry, the default one unless given) as a URL whatsmeow's
    store accepts (neonize's Go core picks PostgreSQL for a name starting with `postgres`); its sessions are named
    `application_name`."""
    db = database if database is not None else settings.DATABASES["default"]
    user = quote(str(db.get("USER") or ""), safe="")
    password = str(db.get("PASSWORD") or "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = str(db.get("HOST") or "")
    params = {"sslmode": (db.get("OPTIONS") or {}).get("sslmode") or "prefer"}
    if host.startswith("/"):  # a Unix socket directory
        params["host"] = host
        host = ""
    elif ":" in host:  # IPv6
        host = f"[{host}]"
    port = str(db.get("PORT") or "")
    netloc = f"{host}:{port}" if host and port else host
    if auth:
        netloc = f"{auth}@{netloc}"
    params["application_name"] = application_name[:63]
    return f"postgres://{netloc}/{quote(str(db['NAME']), safe='')}?{urlencode(params)}"


def jid_string(jid: JID) -> str:
    """whatsmeow's text form of a JID: `user[.agent][:device]@server` (what the device store keys on)."""
    if not jid.User:
        return jid.Server
    if jid.RawAgent > 0:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if jid.Device > 0:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    return f"{jid.User}@{jid.Server}"


def parse_jid(text: str) -> JID:
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = text.rpartition("@")
    device = agent = 0
    if ":" in user:
        user, device_text = user.split(":", 1)
        device = int(device_text)
    if "." in user:
        user, agent_text = user.split(".", 1)
        agent = int(agent_text)
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server or USER_SERVER, IsEmpty=False)


def _proxy_settings() -> Any:
    """neonize's proxy structure for `WHATSAPP_WEB_PROXY` (e.g. socks5://host:1080), or None for no proxy."""
    address = settings.WHATSAPP_WEB_PROXY
    if not address:
        return None
    from neonize._binder import ProxySettings

    return ProxySettings(proxy_address=address)._to_c_struct()


def _recipient_jid(to: str) -> JID:
    """The chat to send to: the customer's phone digits, or `lid:<digits>` for a customer known by lid only."""
    from neonize.proto.Neonize_pb2 import JID

    server = USER_SERVER
    if to.startswith("lid:"):
        to, server = to[4:], LID_SERVER
    if not to.isdigit():
        raise SendError("bad_recipient", "The recipient is neither a phone number nor a WhatsApp lid.")
    return JID(User=to, RawAgent=0, Device=0, Integrator=0, Server=server, IsEmpty=False)


def _timestamp(value: int) -> datetime:
    """neonize gives message times in milliseconds and receipt times in seconds; 0 means unknown (now)."""
    if value <= 0:
        return timezone.now()
    seconds = value / 1000 if value > 100_000_000_000 else value
    return datetime.fromtimestamp(seconds, tz=UTC)


def _device_stored(device_jid: str) -> bool:
    """Whether the device store holds keys for `device_jid` (whatsmeow crashes when asked for a missing one)."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEVICE_TABLE])
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(f"SELECT 1 FROM {DEVICE_TABLE} WHERE jid = %s", [device_jid])  # noqa: S608
        return cursor.fetchone() is not None


def forget_device_keys(device_jid: str) -> int:
    """Delete a device's keys from the store (whatsmeow's tables cascade from `whatsmeow_device`); how many devices
    were removed. Nothing stored (or no store yet) is fine."""
    if not device_jid:
        return 0
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEVICE_TABLE])
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute(f"DELETE FROM {DEVICE_TABLE} WHERE jid = %s", [device_jid])  # noqa: S608
        return cursor.rowcount


def _identity(jid: JID, alt: JID) -> tuple[str | None, str | None]:
    """(phone digits, `lid:<digits>`) of a person from a JID and whatsmeow's alternate JID for it."""
    wa_id = bsuid = None
    for candidate in (jid, alt):
        if not candidate.User:
            continue
        if candidate.Server == USER_SERVER and wa_id is None:
            wa_id = candidate.User
        elif candidate.Server == LID_SERVER and bsuid is None:
            bsuid = f"lid:{candidate.User}"
    return wa_id, bsuid


def _one_to_one(source: Any) -> bool:
    chat = source.Chat
    return not source.IsGroup and chat.Server in (USER_SERVER, LID_SERVER) and bool(chat.User)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else ""


def _unwrap(message: ProtoMessage) -> ProtoMessage:
    for _ in range(5):
        for wrapper in WRAPPERS:
            if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
                message = getattr(message, wrapper).message
                break
        else:
            return message
    return message


def _content_field(message: ProtoMessage) -> str:
    """The name of the part holding the message's content ("" when there is none)."""
    names = [field.name for field, _value in message.ListFields() if field.name not in META_FIELDS]
    return names[0] if names else ""


def _quoted(part: ProtoMessage) -> str | None:
    if part.HasField("contextInfo") and part.contextInfo.stanzaID:
        return part.contextInfo.stanzaID
    return None


# --- the engine ------------------------------------------------------------------------------------------------


class WebEngine:
    name = "web"
    reply_window = None  # a linked device has no customer-service window
    supports_templates = False
    owns_connections = True

    def open(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> WebConnection:
        return WebConnection(number=number, device_jid=device_jid, listener=listener, qr_timeout=qr_timeout)

    def forget_device(self, *, number: WhatsAppNumber, device_jid: str) -> None:
        """Delete the device's keys from the store. A logout whatsmeow saw already deleted them: nothing is fine."""
        removed = forget_device_keys(device_jid)
        logger.info("number %s: device keys removed from the store (%s device)", number.pk, removed)

    def send(self, number: WhatsAppNumber, content: OutboundContent) -> SendResult:
        from sessions.connections import live_connection

        connection = live_connection(number.pk)
        if connection is None:
            raise SendError("not_connected", f"{number.alias} is not connected in this process.", retryable=True)
        return connection.send(content)


class WebConnection:
    """One number online through WhatsApp Web. See the module notes for its threads and neonize's rules."""

    def __init__(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> None:
        self.number_id = number.pk
        self.phone_number_id = number.phone_number_id
        self.display_digits = _digits(number.display_number)
        self.device_jid = device_jid
        self.listener = listener
        self.qr_timeout = qr_timeout
        # neonize keys its native clients by this id: unique per attempt, so a native call neonize never lets go
        # of (an unscanned QR code) cannot take over the next attempt's client or events.
        self.client_id = f"wa-web-{number.pk}-{uuid.uuid4().hex[:12]}"
        self.store_session_name = f"{STORE_APPLICATION_NAME}:{self.client_id}"
        self.connected = False
        self.closed = False
        self.client: NewClient | None = None
        self._lock = threading.Lock()
        self._phase = _Phase.IDLE
        self._stop_wanted = False
        self._gate_held = False
        self._qr_count = 0
        self._qr_deadline: datetime | None = None
        self._timers: list[threading.Timer] = []
        self._events: queue.SimpleQueue | None = None
        self._dispatch_done = False
        self._native_refs: tuple | None = None  # ctypes callbacks must outlive the native call

    # Connection protocol

    def start(self) -> None:
        self.listener.on_connecting(self.number_id)
        if self.device_jid and not _device_stored(self.device_jid):
            self._end(DisconnectKind.LOGGED_OUT, "The paired device's keys are no longer stored; scan a new QR code")
            return
        self.client = self.new_client()
        self._events = queue.SimpleQueue()
        threading.Thread(target=self._dispatch, name=f"wa-web-events-{self.number_id}", daemon=True).start()
        threading.Thread(target=self._run_native, name=f"wa-web-{self.number_id}", daemon=True).start()

    def stop(self) -> None:
        self._end(DisconnectKind.CLOSED, "Connection closed")

    def logout(self) -> None:
        """Unlink the device (WhatsApp removes it from the phone's linked devices) and delete its keys."""
        with self._lock:
            ready = self._phase == _Phase.READY and not self.closed
        if ready and self.client is not None:
            try:
                self.client.logout()
            except Exception as exc:
                logger.warning(
                    "number %s: WhatsApp did not confirm the logout (%s)", self.number_id, type(exc).__name__
                )
        removed = forget_device_keys(self.device_jid)
        logger.info("number %s: logged out; device keys removed (%s device)", self.number_id, removed)
        self._end(DisconnectKind.CLOSED, "Logged out", notify=False)

    def request_pairing_code(self, phone: str) -> str:
        with self._lock:
            waiting = self._phase == _Phase.QR and not self.closed and not self.connected
        if not waiting or self.client is None:
            raise SendError("not_pairing", "The number is not waiting to be paired.")
        from neonize.exc import PairPhoneError

        try:
            code = self.client.PairPhone(_digits(phone), show_push_notification=True)
        except PairPhoneError as exc:
            raise SendError("pairing_failed", f"WhatsApp gave no pairing code: {str(exc)[:200]}") from exc
        logger.info("number %s: pairing code issued", self.number_id)
        self.listener.on_pairing_code(self.number_id, code)
        return code

    def send(self, content: OutboundContent) -> SendResult:
        if not self.connected or self.client is None:
            raise SendError("not_connected", "The WhatsApp Web number is not connected.", retryable=True)
        if not isinstance(content, OutboundText):
            raise SendError("unsupported", "WhatsApp Web sends text messages only (no templates).")
        from neonize.exc import SendMessageError

        to = _recipient_jid(content.to)
        message = self._outbound_message(content, to)
        try:
            response = self.client.send_message(to, message)
        except SendMessageError as exc:
            error = _send_error(str(exc))
            logger.warning("number %s: WhatsApp Web send failed (%s)", self.number_id, error.code)
            raise error from exc
        except Exception as exc:  # after the native call nobody knows whether it went out
            logger.exception("number %s: WhatsApp Web send failed unexpectedly", self.number_id)
            raise SendError("send_failed", f"Unexpected error ({type(exc).__name__})", ambiguous=True) from exc
        return SendResult(provider_message_id=response.ID)

    # neonize

    def new_client(self) -> NewClient:
        """neonize's client for this attempt: the device store in the project's PostgreSQL, keyed by `client_id`.
        Building it touches neither the network nor the database."""
        from neonize.client import NewClient
        from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps

        props = DeviceProps(os="WhatsApp CRM", platformType=DeviceProps.CHROME)
        client = NewClient(device_store_url(application_name=self.store_session_name), props=props, uuid=self.client_id)
        client._stop_finalizer.detach()  # only this connection decides when neonize may `Stop` it
        if self.device_jid:
            client.jid = parse_jid(self.device_jid)
        return client

    def _run_native(self) -> None:
        """The native thread: runs neonize's client until it ends, then reports how it ended."""
        START_GATE.acquire()
        with self._lock:
            self._gate_held = True
            entered = not self._stop_wanted  # stopped before it began: never connect
            if entered:
                self._phase = _Phase.STARTING
        error = ""
        try:
            if entered:
                self._timer(START_SETTLE, self._release_gate)
                self._timer(CONNECT_TIMEOUT, self._connect_timed_out)
                error = self._call_neonize()
        except Exception as exc:
            logger.exception("number %s: the WhatsApp Web client failed", self.number_id)
            error = type(exc).__name__
        finally:
            self._release_gate()
            with self._lock:
                self._phase = _Phase.RETURNED
        if entered:
            self._native_stop()  # `Neonize` returned: release its client and context
            self._close_store_sessions()
            db_connection.close()
            self._post(self._native_ended, error)
        self._post_done()

    def _call_neonize(self) -> str:
        """neonize's blocking `Neonize` entry point, called as `NewClient.connect_with_proxy` calls it but with this
        connection's callbacks; returns when the client ends, with the error it ended on ("" for none)."""
        from neonize._binder import func_callback_bytes, func_callback_bytes2, func_string, gocode
        from neonize.utils import log_whatsmeow

        client = self.client
        jid = client.jid.SerializeToString() if client.jid is not None else b""
        props = client.device_props.SerializeToString()
        subscribed = bytearray(SUBSCRIBED_EVENTS)
        proxy = _proxy_settings()
        self._native_refs = (
            func_string(self._native_qr),
            func_string(self._native_login_status),
            func_callback_bytes(self._native_event),
            func_callback_bytes2(log_whatsmeow),
            (ctypes.c_char * len(subscribed)).from_buffer(subscribed),
            subscribed,
            proxy,
        )
        qr_cb, status_cb, event_cb, log_cb, subscriber_buf, _, _ = self._native_refs
        result = gocode.Neonize(
            client.name.encode(),
            self.client_id.encode(),
            jid,
            len(jid),
            0 if jid else 1,  # no device yet: a new one, never the store's first (another number's)
            GO_LOG_LEVEL,
            qr_cb,
            status_cb,
            event_cb,
            log_cb,
            subscriber_buf,
            len(subscribed),
            props,
            len(props),
            b"",
            0,
            ctypes.byref(proxy) if proxy is not None else None,
        )
        return result.decode(errors="replace") if result else ""

    def _native_qr(self, _client_id: int, data: int) -> None:
        try:
            code = ctypes.string_at(data).decode()
            self._release_gate()
            with self._lock:
                if self._phase == _Phase.STARTING:
                    self._phase = _Phase.QR
                abandon = self._stop_wanted and self._phase == _Phase.QR
                if abandon:
                    self._phase = _Phase.QR_ABANDONED
            if abandon:
                threading.Thread(target=self._native_disconnect, daemon=True).start()
            self._post(self.on_qr_code, code)
        except Exception:
            logger.exception("number %s: QR callback failed", self.number_id)

    def _native_login_status(self, _client_id: int, data: int) -> None:
        try:
            status = ctypes.string_at(data).decode()
            self._release_gate()
            with self._lock:
                if status == "success":
                    self._phase = _Phase.PAIRED
                elif status not in NOT_FINAL_QR_STATUSES and self._phase in (_Phase.QR, _Phase.QR_ABANDONED):
                    self._phase = _Phase.QR_ENDED
            self._post(self.on_login_status, status)
        except Exception:
            logger.exception("number %s: login status callback failed", self.number_id)

    def _native_event(self, _client_id: bytes, data: int, size: int, code: int) -> None:
        try:
            from neonize.events import INT_TO_EVENT

            self._release_gate()
            event_type = INT_TO_EVENT.get(code)
            if event_type is None:
                return
            event = event_type.FromString(ctypes.string_at(data, size))
            if code == DEVICE_EVENT:
                with self._lock:
                    self._phase = _Phase.READY
                    stop_now = self._stop_wanted
                if stop_now:
                    threading.Thread(target=self._native_stop, daemon=True).start()
            self._post(self.handle, event)
        except Exception:
            logger.exception("number %s: event callback failed (code %s)", self.number_id, code)

    def _native_stop(self) -> None:
        from neonize._binder import gocode

        with START_GATE:
            gocode.Stop(self.client_id.encode())

    def _native_disconnect(self) -> None:
        from neonize._binder import gocode

        gocode.Disconnect(self.client_id.encode())

    def _release_native(self) -> str:
        """Let go of the native client as far as neonize allows now; the rest happens when it becomes safe. The
        phase it was in."""
        with self._lock:
            self._stop_wanted = True
            phase = self._phase
            if phase == _Phase.QR:
                self._phase = _Phase.QR_ABANDONED
        if phase == _Phase.READY:
            threading.Thread(target=self._native_stop, daemon=True).start()
        elif phase == _Phase.QR:
            threading.Thread(target=self._native_disconnect, daemon=True).start()
        # IDLE: the native thread sees `_stop_wanted` and never connects. STARTING, PAIRED: the device event (or
        # the native call returning) stops it. QR_ENDED, RETURNED: nothing left to do.
        return phase

    def _close_store_sessions(self) -> None:
        """End the PostgreSQL sessions of this attempt's store pool, which neonize never closes (module notes)."""
        try:
            with db_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                    [self.store_session_name[:63]],
                )
                ended = cursor.fetchone()[0]
        except DatabaseError:
            logger.warning("number %s: the device store's sessions could not be closed", self.number_id, exc_info=True)
            return
        logger.debug("number %s: %s device store session(s) closed", self.number_id, ended)

    def _release_gate(self) -> None:
        with self._lock:
            held, self._gate_held = self._gate_held, False
        if held:
            START_GATE.release()

    # The dispatcher: everything neonize reports runs here, in order.

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._events is None:  # not started (tests drive the handlers directly)
            fn(*args)
        elif not self._dispatch_done:
            self._events.put((fn, args))

    def _post_done(self) -> None:
        if self._events is not None and not self._dispatch_done:
            self._dispatch_done = True
            self._events.put(None)

    def _dispatch(self) -> None:
        try:
            while True:
                item = self._events.get()
                if item is None:
                    return
                fn, args = item
                close_old_connections()
                try:
                    fn(*args)
                except Exception:
                    logger.exception("number %s: WhatsApp Web event handling failed", self.number_id)
                finally:
                    close_old_connections()
        finally:
            db_connection.close()

    def _timer(self, seconds: float, fn: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, fn)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # What neonize reports (called by the dispatcher; tests call them directly)

    def handle(self, event: ProtoMessage) -> None:
        """One neonize event (a protobuf message from `neonize.proto.Neonize_pb2`)."""
        handler = {
            "Device": self._on_device,
            "PairStatus": self._on_pair_status,
            "Connected": self._on_connected,
            "Message": self._on_message,
            "Receipt": self._on_receipt,
            "LoggedOut": self._on_logged_out,
            "StreamReplaced": self._on_stream_replaced,
            "TemporaryBan": self._on_temporary_ban,
            "ConnectFailure": self._on_connect_failure,
            "ClientOutdated": self._on_client_outdated,
            "StreamError": self._on_stream_error,
            "Disconnected": self._on_disconnected,
            "KeepAliveTimeout": self._on_keepalive_timeout,
        }.get(type(event).__name__)
        if handler is None:
            logger.debug("number %s: ignored neonize event %s", self.number_id, type(event).__name__)
            return
        handler(event)

    def on_qr_code(self, code: bytes | str) -> None:
        """A QR code to show (neonize's QR callback: the current code, raw)."""
        if isinstance(code, bytes):
            code = code.decode()
        with self._lock:
            if self.closed or self.connected:
                return
            self._qr_count += 1
            first = self._qr_count == 1
            if first:
                self._qr_deadline = timezone.now() + timedelta(seconds=self.qr_timeout)
        if first:
            self._timer(self.qr_timeout, lambda: self._post(self._qr_expired))
        lifetime = FIRST_QR_SECONDS if first else NEXT_QR_SECONDS
        expires_at = min(timezone.now() + timedelta(seconds=lifetime), self._qr_deadline)
        logger.info("number %s: QR code %s ready", self.number_id, self._qr_count)
        self.listener.on_qr(self.number_id, code, expires_at)

    def on_login_status(self, status: str) -> None:
        """How the QR wait ended (whatsmeow's QR channel: success, timeout, err-…)."""
        logger.info("number %s: QR pairing status %s", self.number_id, status)
        if status == "success" or status in NOT_FINAL_QR_STATUSES:
            return
        if status == "timeout":
            seconds = round(self.qr_timeout)
            self._end(DisconnectKind.QR_TIMEOUT, f"QR code not scanned within {seconds} s; connect again for a new one")
        elif status == "err-client-outdated":
            self._end(DisconnectKind.TRANSIENT, "WhatsApp rejected this client version as outdated (update neonize)")
        else:  # "error", "err-unexpected-state": whatever event caused it stays in neonize (the loop never starts)
            self._end(DisconnectKind.TRANSIENT, f"Pairing with the phone failed ({status})"[:200])

    def _qr_expired(self) -> None:
        with self._lock:
            waiting = not self.closed and not self.connected and self._phase not in (_Phase.PAIRED, _Phase.READY)
        if waiting:
            seconds = round(self.qr_timeout)
            self._end(DisconnectKind.QR_TIMEOUT, f"QR code not scanned within {seconds} s; connect again for a new one")

    def _connect_timed_out(self) -> None:
        with self._lock:
            stuck = self._phase == _Phase.STARTING and not self.closed
        if stuck:
            self._post(self._end, DisconnectKind.TRANSIENT, f"WhatsApp did not answer within {CONNECT_TIMEOUT:.0f} s")

    def _native_ended(self, error: str) -> None:
        if error:
            self._end(DisconnectKind.TRANSIENT, f"Could not connect to WhatsApp: {error}"[:200])
        else:
            self._end(DisconnectKind.TRANSIENT, "The WhatsApp Web client ended")

    def _on_device(self, event: ProtoMessage) -> None:
        if event.HasField("JID") and event.JID.User and not self.device_jid:
            self.device_jid = jid_string(event.JID)

    def _on_pair_status(self, event: ProtoMessage) -> None:
        if event.Status == type(event).SUCCESS:
            if event.HasField("ID") and event.ID.User:
                self.device_jid = jid_string(event.ID)
            logger.info("number %s: paired with the phone", self.number_id)
        else:
            self._end(DisconnectKind.TRANSIENT, "Pairing with the phone failed")

    def _on_connected(self, _event: ProtoMessage) -> None:
        with self._lock:
            if self.closed:
                return
            self.connected = True
            device_jid = self.device_jid
        logger.info("number %s: WhatsApp Web connected", self.number_id)
        self.listener.on_connected(self.number_id, device_jid)

    def _on_logged_out(self, event: ProtoMessage) -> None:
        self._end(DisconnectKind.LOGGED_OUT, "Logged out from the phone (device unlinked)")

    def _on_stream_replaced(self, _event: ProtoMessage) -> None:
        self._end(DisconnectKind.CONFLICT, "Replaced by another connection with the same keys")

    def _on_temporary_ban(self, event: ProtoMessage) -> None:
        until = timezone.now() + timedelta(seconds=event.Expire) if event.Expire > 0 else None
        reason = "Temporarily banned by WhatsApp"
        if event.HasField("Code"):
            reason = f"{reason} ({type(event).TempBanReason.Name(event.Code).lower().replace('_', ' ')})"
        self._end(DisconnectKind.BANNED, reason, until=until)

    def _on_connect_failure(self, event: ProtoMessage) -> None:
        from neonize.proto.Neonize_pb2 import ConnectFailureReason

        name = ConnectFailureReason.Name(event.Reason) if event.HasField("Reason") else "UNKNOWN"
        if name in ("LOGGED_OUT", "MAIN_DEVICE_GONE", "UNKNOWN_LOGOUT"):
            self._end(DisconnectKind.LOGGED_OUT, "Logged out from the phone (device unlinked)")
        elif name == "TEMP_BANNED":
            self._end(DisconnectKind.BANNED, "Temporarily banned by WhatsApp")
        else:
            self._end(DisconnectKind.TRANSIENT, f"WhatsApp refused the connection ({name.lower().replace('_', ' ')})")

    def _on_client_outdated(self, _event: ProtoMessage) -> None:
        self._end(DisconnectKind.TRANSIENT, "WhatsApp rejected this client version as outdated (update neonize)")

    def _on_stream_error(self, event: ProtoMessage) -> None:
        self._end(DisconnectKind.TRANSIENT, f"WhatsApp stream error {event.Code or '(no code)'}"[:200])

    def _on_disconnected(self, _event: ProtoMessage) -> None:
        self._end(DisconnectKind.TRANSIENT, "Connection to WhatsApp lost")

    def _on_keepalive_timeout(self, _event: ProtoMessage) -> None:
        self._end(DisconnectKind.TRANSIENT, "WhatsApp stopped answering keepalives")

    def _on_message(self, event: ProtoMessage) -> None:
        """Delivered even after the connection closed: whatsmeow acknowledged it, nobody will send it again."""
        message = self._inbound(event)
        if message is not None:
            self.listener.on_messages(self.number_id, [message])

    def _on_receipt(self, event: ProtoMessage) -> None:
        updates = self._receipts(event)
        if updates:
            self.listener.on_receipts(self.number_id, updates)

    def _end(self, kind: str, reason: str, *, until: datetime | None = None, notify: bool = True) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed, self.connected = True, False
        for timer in self._timers:
            timer.cancel()
        phase = self._release_native()
        logger.info("number %s: WhatsApp Web connection ended (%s)", self.number_id, kind)
        if notify:
            self.listener.on_disconnected(self.number_id, Disconnect(kind, reason, until))
        if phase in NO_RETURN_PHASES:  # no native return will close the dispatcher (or the store's sessions)
            if self.client is not None and phase != _Phase.IDLE:
                self._close_store_sessions()
            self._post_done()

    # Translation

    def _inbound(self, event: ProtoMessage) -> InboundMessage | None:
        from conversations.inbound import InboundMessage

        info = event.Info
        source = info.MessageSource
        if source.IsFromMe or not _one_to_one(source):
            return None
        content = event.Message if event.HasField("Message") else event.Raw
        content = _unwrap(content)
        field = _content_field(content)
        if not field or field in SKIPPED_FIELDS:
            logger.debug("number %s: message %s skipped (%s)", self.number_id, info.ID, field or "empty")
            return None
        kind, body, media, quoted, media_raw = self._content(field, content, info.ID)
        sender = self._sender(source, info.Pushname)
        raw: dict[str, Any] = {
            "engine": "web",
            "id": info.ID,
            "chat": jid_string(source.Chat),
            "sender": jid_string(source.Sender),
            "sender_alt": jid_string(source.SenderAlt) if source.SenderAlt.User else "",
            "push_name": info.Pushname,
            "timestamp": info.Timestamp,
            "type": field,
        }
        if media_raw:
            raw["media"] = media_raw
        return InboundMessage(
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_digits,
            provider_message_id=info.ID,
            sender=sender,
            timestamp=_timestamp(info.Timestamp),
            kind=kind,
            body=body,
            media=media,
            quoted_provider_id=quoted,
            error_code="",
            error_reason="",
            raw=raw,
        )

    def _sender(self, source: Any, name: str) -> InboundSender:
        from conversations.inbound import InboundSender

        jid = source.Sender if source.Sender.User else source.Chat
        wa_id, bsuid = _identity(jid, source.SenderAlt)
        return InboundSender(wa_id=wa_id, bsuid=bsuid, name=name[:120], username=None)

    def _content(
        self, field: str, message: ProtoMessage, message_id: str
    ) -> tuple[str, str, InboundMedia | None, str | None, dict[str, Any]]:
        """(kind, body, media, quoted provider id, media download data for `raw`)."""
        from conversations.inbound import InboundMedia, _location_body, _reaction_body

        if field == "conversation":
            return "text", message.conversation, None, None, {}
        if field == "extendedTextMessage":
            part = message.extendedTextMessage
            return "text", part.text, None, _quoted(part), {}
        if field in MEDIA_FIELDS:
            part = getattr(message, field)
            kind = MEDIA_FIELDS[field]
            if kind == "audio" and part.PTT:
                kind = "voice"
            filename = part.fileName if field == "documentMessage" else ""
            media = InboundMedia(
                media_id=message_id,
                mime_type=part.mimetype,
                sha256=part.fileSHA256.hex(),
                filename=filename,
                url="",
            )
            download = {
                "direct_path": part.directPath,
                "media_key": _b64(part.mediaKey),
                "file_enc_sha256": _b64(part.fileEncSHA256),
                "file_sha256": _b64(part.fileSHA256),
                "file_length": part.fileLength,
                "mime_type": part.mimetype,
            }
            caption = part.caption if field in ("imageMessage", "videoMessage", "ptvMessage", "documentMessage") else ""
            return kind, caption, media, _quoted(part), download
        if field in ("locationMessage", "liveLocationMessage"):
            part = getattr(message, field)
            place = {
                "latitude": part.degreesLatitude,
                "longitude": part.degreesLongitude,
                "name": getattr(part, "name", ""),
                "address": getattr(part, "address", ""),
            }
            return "location", _location_body(place), None, _quoted(part), {}
        if field == "reactionMessage":
            part = message.reactionMessage
            return "reaction", _reaction_body({"emoji": part.text}), None, part.key.ID or None, {}
        return "unsupported", f"[Unsupported message: {field}]", None, None, {}

    def _receipts(self, event: ProtoMessage) -> list[StatusUpdate]:
        from conversations.inbound import StatusUpdate

        source = event.MessageSource
        if not _one_to_one(source) or not event.HasField("Type"):
            return []
        status = {event.DELIVERED: "delivered", event.READ: "read", event.PLAYED: "read"}.get(event.Type)
        if status is None:  # our own devices' receipts, retries, server errors…
            return []
        alt = source.SenderAlt if source.SenderAlt.User else source.RecipientAlt
        wa_id, bsuid = _identity(source.Chat, alt)
        at = _timestamp(event.Timestamp)
        raw = {"engine": "web", "chat": jid_string(source.Chat), "type": type(event).ReceiptType.Name(event.Type)}
        return [
            StatusUpdate(
                phone_number_id=self.phone_number_id,
                provider_message_id=message_id,
                status=status,
                timestamp=at,
                recipient_wa_id=wa_id,
                recipient_bsuid=bsuid,
                error_code="",
                error_reason="",
                raw={**raw, "id": message_id},
            )
            for message_id in event.MessageIDs
        ]

    def _outbound_message(self, content: OutboundText, to: JID) -> ProtoMessage:
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message

        if not content.reply_to:
            return Message(conversation=content.body)
        from conversations.models import Message as StoredMessage

        quoted = (
            StoredMessage.objects.filter(number_id=self.number_id, provider_message_id=content.reply_to)
            .values("direction", "body")
            .first()
        )
        own = quoted is not None and quoted["direction"] == StoredMessage.Direction.OUTBOUND
        own_user = self.device_jid.split("@")[0].split(":")[0].split(".")[0]
        participant = f"{own_user}@{USER_SERVER}" if own and own_user else jid_string(to)
        context = ContextInfo(
            stanzaID=content.reply_to,
            participant=participant,
            quotedMessage=Message(conversation=(quoted or {}).get("body") or ""),
        )
        return Message(extendedTextMessage=ExtendedTextMessage(text=content.body, contextInfo=context))


# whatsmeow's send errors that prove the message never left (safe to retry), and those after which it may have.
NOT_SENT_ERRORS = ("not connected", "not logged in", "websocket", "failed to get device", "failed to encrypt")
MAYBE_SENT_ERRORS = ("timed out", "timeout", "deadline exceeded", "context canceled")


def _send_error(text: str) -> SendError:
    lowered = text.lower()
    reason = f"WhatsApp Web did not take the message: {text}"[:300]
    if any(part in lowered for part in MAYBE_SENT_ERRORS):
        return SendError("timeout", reason, ambiguous=True)
    if any(part in lowered for part in NOT_SENT_ERRORS):
        return SendError("not_sent", reason, retryable=True)
    if "server returned error" in lowered:
        return SendError("rejected", reason)
    return SendError("send_failed", reason, ambiguous=True)  # unknown: it may have left; never send it twice
