"""`/webhooks/whatsapp/`: Meta's verify handshake (GET) and signed webhook deliveries (POST). docs/inbound.md.

The view validates and stores; it never processes. A delivery is answered 200 only once its body is committed
to the database, 403 when the signature is missing or wrong, 400 when the body is not a WhatsApp webhook, and
503 when the database cannot store it (Meta retries). Nothing is stored for a rejected request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from conversations.inbound import WebhookShapeError, check_envelope, phone_number_ids_of
from conversations.services import webhook_event_store
from crm.crypto import Secret
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"


@dataclass(frozen=True)
class WebhookReply:
    """What to answer a webhook POST: the same for the Django view and the lean ASGI path (webhook_asgi.py)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    event_id: int | None = None


def _error(status: int, message: str) -> WebhookReply:
    return WebhookReply(status, json.dumps({"error": {"code": status, "message": message}}).encode())


class _SecretCache:
    """Signing secrets by phone_number_id, kept WEBHOOK_SECRET_CACHE_SECONDS so a delivery costs no query.

    A signature that does not match a cached secret is checked once more against the database, so a secret
    changed in admin takes effect on the next delivery, not after the cache expires."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[tuple[str, ...], tuple[float, str, int | None]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[str, ...]) -> tuple[str, int | None] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, key: tuple[str, ...], secret: str, client_id: int | None) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # bodies naming random ids cannot grow it without bound
            self._entries[key] = (time.monotonic() + settings.WEBHOOK_SECRET_CACHE_SECONDS, secret, client_id)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_secrets = _SecretCache()


def _signing_secret_from_db(phone_number_ids: list[str]) -> tuple[str, int | None]:
    """The app secret for this body (its number's client's own Meta app, else WHATSAPP_APP_SECRET) and that
    client's id."""
    if phone_number_ids:
        number = (
            WhatsAppNumber.objects.filter(phone_number_id__in=phone_number_ids)
            .select_related("client")
            .only("client__id", "client__meta_app_secret")
            .first()
        )
        if number is not None:
            own = number.client.meta_app_secret
            if isinstance(own, Secret) and own:
                return own.reveal(), number.client_id
            return settings.WHATSAPP_APP_SECRET, number.client_id
    return settings.WHATSAPP_APP_SECRET, None


def _signing_secret(phone_number_ids: list[str], *, fresh: bool = False) -> tuple[str, int | None]:
    key = tuple(phone_number_ids)
    cached = None if fresh else _secrets.get(key)
    if cached is not None:
        return cached
    secret, client_id = _signing_secret_from_db(phone_number_ids)
    _secrets.put(key, secret, client_id)
    return secret, client_id


def _signature_ok(raw: bytes, header: str, secret: str) -> bool:
    if not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def _verify_tokens() -> list[str]:
    tokens = [settings.WHATSAPP_VERIFY_TOKEN] if settings.WHATSAPP_VERIFY_TOKEN else []
    for (value,) in WhatsAppNumber.objects.filter(is_active=True).values_list("verify_token"):
        if value:
            tokens.append(value.reveal() if isinstance(value, Secret) else str(value))
    return [t for t in tokens if t]


def _handshake(request: HttpRequest) -> HttpResponse:
    mode = request.GET.get("hub.mode", "")
    token = request.GET.get("hub.verify_token", "")
    challenge = request.GET.get("hub.challenge", "")
    if mode != "subscribe" or not token or not challenge:
        return HttpResponse("expected hub.mode=subscribe with hub.verify_token and hub.challenge", status=403)
    if not any(hmac.compare_digest(token.encode(), known.encode()) for known in _verify_tokens()):
        logger.warning("webhook handshake refused: unknown verify token")
        return HttpResponse("verify token does not match", status=403)
    return HttpResponse(challenge, content_type="text/plain")


def webhook_post(raw: bytes, signature: str, *, enqueue: bool = True) -> WebhookReply:
    """Check and store one webhook delivery. 200 only once the event is committed; nothing stored otherwise.

    `enqueue=False` leaves handing the stored event to a worker to the caller (the ASGI path batches it)."""
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):
        body = None
    phone_number_ids = phone_number_ids_of(body)
    if not signature:
        return _error(403, f"missing {SIGNATURE_HEADER} header")
    try:
        secret, client_id = _signing_secret(phone_number_ids)
        if not _signature_ok(raw, signature, secret):
            secret, client_id = _signing_secret(phone_number_ids, fresh=True)  # changed since it was cached?
    except DatabaseError:
        logger.exception("webhook: database unavailable")
        return _error(503, "temporarily unable to store the webhook; retry later")
    if not _signature_ok(raw, signature, secret):
        logger.warning("webhook refused: bad signature (phone_number_id %s)", ",".join(phone_number_ids) or "-")
        return _error(403, f"{SIGNATURE_HEADER} does not match the body")
    if body is None:
        return _error(400, "the body is not valid JSON")
    try:
        check_envelope(body)  # items inside are judged (and reported) by the worker
    except WebhookShapeError as exc:
        return _error(400, f"not a WhatsApp webhook: {exc}")
    if b"\\u0000" in raw or _SURROGATE_ESCAPE.search(raw):
        body = _storable(body)  # escapes of what jsonb cannot hold; the signature was over the raw body
    try:
        event = webhook_event_store(body=body, phone_number_ids=phone_number_ids, client_id=client_id, enqueue=enqueue)
    except (DataError, RecursionError) as exc:  # this body can never be stored: retrying cannot help
        logger.warning("webhook refused: the body cannot be stored (%s)", exc)
        return _error(400, f"the body cannot be stored: {str(exc).splitlines()[0][:200] or type(exc).__name__}")
    except DatabaseError:
        logger.exception("webhook: could not store the event")
        return _error(503, "temporarily unable to store the webhook; retry later")
    logger.info("webhook event %s stored (phone_number_id %s)", event.pk, ",".join(phone_number_ids) or "-")
    return WebhookReply(200, b"EVENT_RECEIVED", "text/plain", event.pk)


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:20]} is too large")
    return number


# What PostgreSQL's jsonb cannot hold in a string: U+0000 and UTF-16 surrogates that are not part of a pair (a
# pair is one character once decoded). Both become U+FFFD, the character for "unrepresentable".
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _storable(body):
    """`body` (freshly parsed, changed in place) with every string and key cleaned of what jsonb cannot hold.
    Iterative, so any depth json.loads accepted is walked without recursion."""
    if isinstance(body, str):
        return _UNSTORABLE.sub("\ufffd", body)
    stack = [body] if isinstance(body, list | dict) else []
    while stack:
        node = stack.pop()
        pairs = enumerate(node) if isinstance(node, list) else list(node.items())
        if isinstance(node, dict):
            node.clear()
        for key, item in pairs:
            if isinstance(item, str):
                item = _UNSTORABLE.sub("\ufffd", item)
            elif isinstance(item, list | dict):
                stack.append(item)
            if isinstance(node, list):
                node[key] = item
            else:
                node[_UNSTORABLE.sub("\ufffd", key)] = item
    return body


@csrf_exempt
@require_http_methods(["GET", "POST"])
def whatsapp_webhook(request: HttpRequest) -> HttpResponse:
    """Behind Django's middleware. In production daphne serves POSTs from webhook_asgi.py's lean path instead;
    both answer through webhook_post."""
    if request.method == "GET":
        return _handshake(request)
    reply = webhook_post(request.body, request.headers.get(SIGNATURE_HEADER, ""))
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)
