"""The WhatsApp Web engine's native side (docs/sessions.md): neonize's thread, its callbacks, the dispatcher, timers."""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db import connection as db_connection

from sessions.engines.web.store import device_store_url, parse_jid

if TYPE_CHECKING:
    from neonize.client import NewClient

logger = logging.getLogger(__name__)

START_SETTLE = 0.5  # seconds a starting client keeps the others from starting (see the package notes)
CONNECT_TIMEOUT = 60.0  # seconds without a QR code or an event before a connect attempt counts as failed
GO_LOG_LEVEL = b"WARN"  # whatsmeow logs JIDs (phone numbers) at info level: keep those out of the logs

START_GATE = threading.Lock()

# neonize's native event codes (neonize.events.EVENT_TO_INT) this engine subscribes to.
DEVICE_EVENT = 0
SUBSCRIBED_EVENTS = (2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 17, 18)


class _Phase:
    """Where the native call is; decides what may be done to stop it (see the package notes)."""

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


def _proxy_settings() -> Any:
    """neonize's proxy structure for `WHATSAPP_WEB_PROXY` (e.g. socks5://host:1080), or None for no proxy."""
    address = settings.WHATSAPP_WEB_PROXY
    if not address:
        return None
    from neonize._binder import ProxySettings

    return ProxySettings(proxy_address=address)._to_c_struct()


class NativeConnection:
    """The neonize half of a `WebConnection` (its base class): the native thread, neonize's callbacks, the
    dispatcher and the timers, with neonize's rules from the package notes. `WebConnection.__init__` sets the
    state; the dispatcher calls `WebConnection`'s handlers (`handle`, `on_qr_code`, `on_login_status`,
    `_connect_timed_out`, `_native_ended`)."""

    # Set by `WebConnection.__init__`.
    number_id: int
    device_jid: str
    client_id: str
    store_session_name: str
    client: NewClient | None
    _lock: threading.Lock
    _phase: str
    _stop_wanted: bool
    _gate_held: bool
    _timers: list[threading.Timer]
    _events: queue.SimpleQueue | None
    _dispatch_done: bool
    _native_refs: tuple | None

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
        """End the PostgreSQL sessions of this attempt's store pool, which neonize never closes (package notes)."""
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
