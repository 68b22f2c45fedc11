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

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from conversations.inbound import WebhookShapeError, check_envelope, phone_number_ids_of
from conversations.services import webhook_event_store
from crm.crypto import Secret
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": status, "message": message}}, status=status)


def _signing_secret(phone_number_ids: list[str]) -> tuple[str, int | None]:
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


@csrf_exempt
@require_http_methods(["GET", "POST"])
def whatsapp_webhook(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _handshake(request)
    raw = request.body
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    phone_number_ids = phone_number_ids_of(body)
    try:
        secret, client_id = _signing_secret(phone_number_ids)
    except DatabaseError:
        logger.exception("webhook: database unavailable")
        return _error(503, "temporarily unable to store the webhook; retry later")
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not header:
        return _error(403, f"missing {SIGNATURE_HEADER} header")
    if not _signature_ok(raw, header, secret):
        logger.warning("webhook refused: bad signature (phone_number_id %s)", ",".join(phone_number_ids) or "-")
        return _error(403, f"{SIGNATURE_HEADER} does not match the body")
    if body is None:
        return _error(400, "the body is not valid JSON")
    try:
        check_envelope(body)  # items inside are judged (and reported) by the worker
    except WebhookShapeError as exc:
        return _error(400, f"not a WhatsApp webhook: {exc}")
    try:
        event = webhook_event_store(body=body, phone_number_ids=phone_number_ids, client_id=client_id)
    except DatabaseError:
        logger.exception("webhook: could not store the event")
        return _error(503, "temporarily unable to store the webhook; retry later")
    logger.info("webhook event %s stored (phone_number_id %s)", event.pk, ",".join(phone_number_ids) or "-")
    return HttpResponse("EVENT_RECEIVED", content_type="text/plain")
