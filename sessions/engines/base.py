"""The one interface every engine implements (docs/sessions.md, docs/outbound.md).

Services hand an engine a number and what to send; the engine talks to its provider and answers with the
provider's message id, or raises `SendError` saying whether the failure is worth retrying and whether the
number itself needs staff attention. Nothing above this layer branches on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
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
    # How long after the customer's last message free text may be sent (None: no such rule). Outside it only
    # templates may go, and only where the engine supports them.
    reply_window: timedelta | None
    supports_templates: bool

    def send(self, number: WhatsAppNumber, content: OutboundContent) -> SendResult:
        """Send `content` from `number`; the provider's message id, or SendError."""
        ...
