"""The one interface every engine implements (docs/sessions.md, docs/outbound.md).

Services hand an engine a number and what to send; the engine talks to its provider and answers with the
provider's message id, or raises `SendError` saying whether the failure is worth retrying and whether the
number itself needs staff attention. Nothing above this layer branches on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conversations.inbound import InboundMessage, StatusUpdate
    from sessions.models import WhatsAppNumber


@dataclass(frozen=True)
class OutboundText:
    """Free text to one recipient. `to` is the recipient's WhatsApp id (digits, no +)."""

    to: str
    body: str
    reply_to: str | None = None  # provider id of the message this one quotes
    preview_url: bool = False


@dataclass(frozen=True)
class OutboundTemplate:
    """An approved template. `components` are Meta's component objects (header/body/button parameters)."""

    to: str
    name: str
    language: str
    components: list[dict[str, Any]] = field(default_factory=list)


OutboundContent = OutboundText | OutboundTemplate


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    attempts: int = 1


# The code a connection engine refuses with when the number is not online in this process: nothing was handed to
# the provider, so the message may wait and go later (conversations.services.outbound).
NOT_CONNECTED = "not_connected"


class SendError(Exception):
    """The provider did not accept the message.

    `code` is the provider's error code as text (Meta's numeric code, or "http_503", "timeout"…), `reason` a
    readable sentence for staff, `retryable` whether trying again later may succeed, `attention` whether the
    number itself is unusable until staff act (expired token, restricted account), `ambiguous` whether the
    provider may have sent the message anyway (it stopped answering after receiving the request): such a
    message must never be sent again automatically.
    """

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        retryable: bool = False,
        attention: bool = False,
        ambiguous: bool = False,
        http_status: int | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.retryable = retryable
        self.attention = attention
        self.ambiguous = ambiguous
        self.http_status = http_status
        self.attempts = attempts


class Engine(Protocol):
    name: str
    # True for engines whose sends need a live connection held by the sessions worker (ConnectionEngine).
    owns_connections: bool
    # How long after the customer's last message free text may be sent (None: no such rule). Outside it only
    # templates may go, and only where the engine supports them.
    reply_window: timedelta | None
    supports_templates: bool

    def send(self, number: WhatsAppNumber, content: OutboundContent) -> SendResult:
        """Send `content` from `number`; the provider's message id, or SendError."""
        ...


# Connection engines (WhatsApp Web, sandbox): a long-lived connection held by the sessions worker's supervisor.


class DisconnectKind:
    """Why a connection ended; the supervisor's reconnect policy keys on it (docs/sessions.md)."""

    TRANSIENT = "transient"  # network, keepalive timeout, server 5xx: reconnect with backoff
    LOGGED_OUT = "logged_out"  # unlinked from the phone: device data removed, no reconnect
    CONFLICT = "conflict"  # another connection with the same keys replaced this one: no reconnect
    BANNED = "banned"  # temporary ban: reconnect after `until`
    QR_TIMEOUT = "qr_timeout"  # nobody scanned the QR code in time: a new one only on request
    CLOSED = "closed"  # we closed it (lease lost, staff disconnected, shutdown)


@dataclass(frozen=True)
class Disconnect:
    kind: str
    reason: str
    until: datetime | None = None  # end of a temporary ban


class ConnectionListener(Protocol):
    """What a connection reports, from any thread; the supervisor implements it. Calls must not block long."""

    def on_connecting(self, number_id: int) -> None: ...

    def on_qr(self, number_id: int, code: str, expires_at: datetime) -> None: ...

    def on_pairing_code(self, number_id: int, code: str) -> None: ...

    def on_connected(self, number_id: int, device_jid: str) -> None: ...

    def on_disconnected(self, number_id: int, disconnect: Disconnect) -> None: ...

    def on_messages(self, number_id: int, messages: list[InboundMessage]) -> None: ...

    def on_receipts(self, number_id: int, updates: list[StatusUpdate]) -> None: ...


class Connection(Protocol):
    """One number's live connection, owned by the process holding its lease."""

    number_id: int

    def start(self) -> None:
        """Begin connecting without blocking; progress arrives through the listener."""
        ...

    def stop(self) -> None:
        """Close the connection; the listener hears `CLOSED`. Keeps the device paired."""
        ...

    def logout(self) -> None:
        """Unlink the device from the account (a new QR code is needed afterwards)."""
        ...

    def request_pairing_code(self, phone: str) -> str:
        """Pair by code instead of QR: the code to type on the phone."""
        ...

    def send(self, content: OutboundContent) -> SendResult:
        """Send while connected; `SendError` otherwise."""
        ...


class ConnectionEngine(Engine, Protocol):
    """An engine whose sends need a live connection held by one sessions worker (`owns_connections`)."""

    owns_connections: bool

    def open(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> Connection:
        """A connection for `number`, resuming the paired device `device_jid` (empty: pair with a QR code)."""
        ...

    def forget_device(self, *, number: WhatsAppNumber, device_jid: str) -> None:
        """Remove the stored device data (after a logout)."""
        ...
