"""The WhatsApp Web engine's connection (docs/sessions.md): `WebConnection`, one number online, and what it does with
what neonize reports."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

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
from sessions.engines.web.native import (
    CONNECT_TIMEOUT,
    NO_RETURN_PHASES,
    NOT_FINAL_QR_STATUSES,
    NativeConnection,
    _Phase,
)
from sessions.engines.web.outbound import _recipient_jid, _send_error, outbound_message
from sessions.engines.web.store import STORE_APPLICATION_NAME, _device_stored, forget_device_keys, jid_string
from sessions.engines.web.translate import inbound_message, receipts

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import JID

    from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

FIRST_QR_SECONDS = 60  # whatsmeow shows the first QR code for 60 s and every following one for 20 s
NEXT_QR_SECONDS = 20


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class WebConnection(NativeConnection):
    """One number online through WhatsApp Web. See the package notes for its threads and neonize's rules; the
    native side is `NativeConnection`."""

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
            raise SendError(NOT_CONNECTED, "The WhatsApp Web number is not connected.", retryable=True)
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
        message = inbound_message(
            event, number_id=self.number_id, phone_number_id=self.phone_number_id, display_digits=self.display_digits
        )
        if message is not None:
            self.listener.on_messages(self.number_id, [message])

    def _on_receipt(self, event: ProtoMessage) -> None:
        updates = receipts(event, phone_number_id=self.phone_number_id)
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

    def _outbound_message(self, content: OutboundText, to: JID) -> ProtoMessage:
        return outbound_message(content, to, number_id=self.number_id, device_jid=self.device_jid)
