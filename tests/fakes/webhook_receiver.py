"""A receiver of the product's event webhooks on 127.0.0.1, as an integration would write one (docs/webhooks.md):
it keeps each request's raw body and headers, checks the signature with the endpoint's secret the way the docs
tell receivers to, and answers 200, or what a test scripted (a 500, a slow answer, a dropped connection).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.http_fake import FakeHandler, HttpFake, Reply, Script

__all__ = ["Received", "WebhookReceiver", "signature_valid"]


def signature_valid(secret: str, headers: dict[str, str], raw: bytes, *, tolerance: float = 300) -> bool:
    """What docs/webhooks.md asks of a receiver: HMAC-SHA256 over "<X-Webhook-Timestamp>.<raw body>" with the
    secret, compared in constant time with X-Webhook-Signature, and a timestamp no older than `tolerance`."""
    timestamp = headers.get("x-webhook-timestamp", "")
    signature = headers.get("x-webhook-signature", "")
    if not secret or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    raw: bytes
    status: int  # what the receiver answered (or was about to, for a slow answer the sender gave up on)
    verified: bool
    at: float

    @property
    def event_id(self) -> str:
        return self.headers.get("x-webhook-id", "")


class _Handler(FakeHandler):
    server_version = "FakeWebhookReceiver/1"


class WebhookReceiver(HttpFake[Script]):
    thread_name = "fake-webhook-receiver"
    handler_class = _Handler
    script_class = Script

    def __init__(self, secret: str = "") -> None:
        super().__init__()
        self.secret = secret
        self._statuses: deque[int] = deque()
        self._received: list[Received] = []

    def answer_next(self, *statuses: int) -> None:
        """The next requests get these statuses, in order; later ones 200 again."""
        with self._lock:
            self._statuses.extend(statuses)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until `count` requests arrived (or the timeout passed); what arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        status = self._statuses.popleft() if self._statuses else 200
        verified = signature_valid(self.secret, headers, raw)
        self._received.append(Received(headers, raw, status, verified, time.time()))
        text = b'{"ok":true}' if status < 300 else b'{"error":"receiver says no"}'
        return Reply(status, text, {"Content-Type": "application/json"})
