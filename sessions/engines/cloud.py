"""WhatsApp Cloud API engine: sends through Meta's Graph API messages endpoint (docs/sessions.md).

One `send` is one POST to `{WHATSAPP_GRAPH_API_URL}/{WHATSAPP_GRAPH_API_VERSION}/{phone_number_id}/messages`,
repeated with exponential backoff and jitter while the failure is transient (HTTP 429/5xx, a connection that could
not be opened, Meta's rate-limit and "try again" codes), at most `WHATSAPP_SEND_RETRIES` extra times. Every other
failure is raised at once as `SendError` with a sentence staff can act on; an expired token or a restricted
account also flags the number for attention.

At most once: the Graph API has no idempotency key, so a request Meta received but never answered (read timeout,
connection dropped mid-answer, a 2xx without an id) may have been sent. It is never repeated; it is raised as an
`ambiguous` SendError and the message is left for a human to decide (docs/outbound.md).

Files customers sent (`media_fetch`): `GET /{version}/{media_id}` answers a download URL that lives five minutes,
then a GET of that URL with the same token answers the bytes. Both are tried once more after a 5xx or a connection
problem (a GET is safe to repeat); files over WHATSAPP_MEDIA_MAX_BYTES are refused before or while downloading.

Settings (all optional): WHATSAPP_GRAPH_API_URL, WHATSAPP_GRAPH_API_VERSION, WHATSAPP_SEND_TIMEOUT (seconds per
request), WHATSAPP_SEND_RETRIES, WHATSAPP_SEND_BACKOFF (base seconds), WHATSAPP_SEND_RETRY_AFTER_MAX (seconds: the
longest `Retry-After` honoured), WHATSAPP_MEDIA_MAX_BYTES.

Logs carry ids, codes and HTTP statuses only: never the token, the message body, the recipient's number or a media
download URL (its query string is a credential).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from django.conf import settings

from sessions.engines.base import OutboundContent, OutboundTemplate, OutboundText, SendError, SendResult

if TYPE_CHECKING:
    from sessions.models import WhatsAppNumber
    from sessions.services.media import MediaFile

logger = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # no single backoff wait grows past this, however many retries are configured

# Meta error codes worth trying again later (rate limit, "something went wrong", service unavailable, API
# unknown/service errors). HTTP 429 and 5xx are retried whatever the code, unless the code is listed as final.
RETRYABLE_CODES = frozenset({130429, 131000, 131016, 1, 2})
# Codes that mean the number itself is unusable until staff act; never retried.
ATTENTION_CODES = frozenset({190, 368})
# Codes that are final even when they arrive with a 429/5xx status.
FINAL_CODES = frozenset({131047, 131026, 131049, 131050, 100}) | ATTENTION_CODES

REASONS: dict[int, str] = {
    1: "WhatsApp reported an unknown temporary error",
    2: "WhatsApp's service is temporarily unavailable",
    100: "WhatsApp rejected a parameter of the message",
    190: "Access token expired or invalid: update the number's token",
    368: "The WhatsApp account is restricted for policy violations: sending is blocked until Meta lifts it",
    130429: "Rate limit hit: too many messages sent from this number; try again later",
    131000: "Something went wrong at WhatsApp; try again later",
    131016: "WhatsApp's service is temporarily overloaded; try again later",
    131026: "Message undeliverable: the recipient may not use WhatsApp or may need to accept the latest terms",
    131047: "More than 24 hours since the customer last wrote: only an approved template can be sent",
    131049: "Meta chose not to deliver this message to keep engagement healthy; do not resend it right away",
    131050: "The customer has stopped marketing messages from this business",
    132000: "The template's parameters do not match the approved template (wrong number of parameters)",
    132001: "Template not found: it does not exist in this language or is not approved yet",
    132005: "The template's text is too long once the parameters are filled in",
    132007: "The template's content violates WhatsApp's policy",
    132012: "A template parameter has the wrong format",
    132015: "The template is paused because of low quality",
    132016: "The template is disabled because of low quality",
}


MEDIA_ATTEMPTS = 2  # a media GET is tried once more after a 5xx or a connection problem
MEDIA_DEADLINE = 300.0  # seconds one download may take in all, however slowly its bytes arrive
MEDIA_METADATA_MAX_BYTES = 64 * 1024  # Meta's answer about a media id is a few hundred bytes


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, before deciding whether to retry it."""

    error: SendError
    retry_after: float | None = None


class CloudEngine:
    """Sends text and template messages through the WhatsApp Cloud API.

    Pass an `httpx.Client` to reuse its connection pool across sends; otherwise each send opens its own.
    """

    name = "cloud"
    reply_window = timedelta(hours=24)  # Meta's customer-service window
    supports_templates = True
    owns_connections = False  # stateless HTTP: any worker sends

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client if client is not None else _shared_client()

    def send(
        self, number: WhatsAppNumber, content: OutboundContent, *, before_send: Callable[[], None] | None = None
    ) -> SendResult:
        """`before_send` runs once, right before the first request leaves (it is built already): a caller pacing
        its sends waits there, so nothing of its own delays the request after its turn (campaign dispatch)."""
        token = _plaintext(number.access_token)
        if not token:
            logger.warning("Cloud API send from number %s refused: the number has no access token", number.pk)
            raise SendError(
                "no_token", "The number has no access token: add the token from Meta's app settings", attention=True
            )
        url = f"{_graph_url()}/{_graph_version()}/{number.phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        payload = message_payload(content)

        return self._send_with_retries(self._client, number, url, headers, payload, before_send)

    def media_fetch(self, number: WhatsAppNumber, media_id: str) -> MediaFile:
        """A file a customer sent to `number`: Meta's metadata for `media_id` (a short-lived download URL, the MIME
        type and size), then the bytes from that URL. Raises `MediaUnavailable`."""
        # The service owns these engine-neutral types; imported here because the service imports the engines.
        from sessions.services.media import MediaFile, MediaUnavailable

        def unavailable(code: str, message: str, http_status: int | None = None) -> MediaUnavailable:
            logger.warning(
                "Cloud API media %s of number %s unavailable: %s (HTTP %s)", media_id, number.pk, code, http_status
            )
            return MediaUnavailable(code, message)

        token = _plaintext(number.access_token)
        if not token:
            raise unavailable(
                MediaUnavailable.PROVIDER_ERROR,
                "The number has no access token: add the token from Meta's app settings.",
            )
        headers = {"Authorization": f"Bearer {token}"}
        limit = int(settings.WHATSAPP_MEDIA_MAX_BYTES)
        unreachable = "WhatsApp could not be reached to fetch the file; try again in a moment."
        bad_token = "WhatsApp refused the number's access token: update the token in the number's settings."

        url = f"{_graph_url()}/{_graph_version()}/{quote(media_id, safe='')}"
        answer = _media_get(self._client, url, headers, limit=MEDIA_METADATA_MAX_BYTES)
        if answer is None:
            raise unavailable(MediaUnavailable.PROVIDER_ERROR, unreachable)
        info = _json_object(answer.body)
        if answer.status in (400, 404) and _error_code(info) != 190:
            raise unavailable(
                MediaUnavailable.NOT_FOUND,
                "WhatsApp no longer has this file: it keeps files customers send for a limited time (about 30 days).",
                answer.status,
            )
        if answer.status == 401 or _error_code(info) == 190:
            raise unavailable(MediaUnavailable.PROVIDER_ERROR, bad_token, answer.status)
        download_url = info.get("url")
        if not 200 <= answer.status < 300 or answer.too_large or not isinstance(download_url, str) or not download_url:
            raise unavailable(
                MediaUnavailable.PROVIDER_ERROR,
                f"WhatsApp answered HTTP {answer.status} without a link to the file; try again later.",
                answer.status,
            )
        declared_size = _int_or_none(info.get("file_size"))
        if declared_size is not None and declared_size > limit:
            raise unavailable(MediaUnavailable.TOO_LARGE, _too_large_message(declared_size, limit), answer.status)

        download = _media_get(self._client, download_url, headers, limit=limit)
        if download is None:
            raise unavailable(MediaUnavailable.PROVIDER_ERROR, unreachable)
        if download.too_large:
            raise unavailable(MediaUnavailable.TOO_LARGE, _too_large_message(None, limit), download.status)
        if download.status == 401:
            raise unavailable(MediaUnavailable.PROVIDER_ERROR, bad_token, download.status)
        if download.status in (403, 404, 410):
            raise unavailable(
                MediaUnavailable.EXPIRED,
                "WhatsApp's download link for this file expired before the file arrived; open it again.",
                download.status,
            )
        if not 200 <= download.status < 300:
            raise unavailable(
                MediaUnavailable.PROVIDER_ERROR,
                f"WhatsApp answered HTTP {download.status} instead of the file; try again later.",
                download.status,
            )
        mime_type = info.get("mime_type") if isinstance(info.get("mime_type"), str) else ""
        mime_type = mime_type or download.content_type or "application/octet-stream"
        logger.info("Cloud API media %s of number %s fetched: %d bytes", media_id, number.pk, len(download.body))
        return MediaFile(content=download.body, mime_type=mime_type, filename="")

    def _send_with_retries(
        self,
        client: httpx.Client,
        number: WhatsAppNumber,
        url: str,
        headers: dict[str, str],
        payload: dict[str, Any],
        before_send: Callable[[], None] | None = None,
    ) -> SendResult:
        retries = max(0, int(settings.WHATSAPP_SEND_RETRIES))
        timeout = float(settings.WHATSAPP_SEND_TIMEOUT)
        max_attempts = retries + 1
        attempt = 0
        while True:
            attempt += 1
            outcome = _post_once(client, url, headers, payload, timeout, before_send if attempt == 1 else None)
            if isinstance(outcome, str):
                logger.info(
                    "Cloud API accepted message %s from phone number id %s (attempt %d)",
                    outcome,
                    number.phone_number_id,
                    attempt,
                )
                return SendResult(provider_message_id=outcome, attempts=attempt)

            error = outcome.error
            error.attempts = attempt
            if not error.retryable or attempt >= max_attempts:
                logger.warning(
                    "Cloud API send from phone number id %s failed: code %s, HTTP %s, retryable %s, attention %s, "
                    "attempts %d",
                    number.phone_number_id,
                    error.code,
                    error.http_status,
                    error.retryable,
                    error.attention,
                    attempt,
                )
                raise error
            wait = _retry_wait(attempt, outcome.retry_after)
            logger.info(
                "Cloud API send from phone number id %s failed with code %s (HTTP %s), attempt %d of %d; "
                "retrying in %.2fs",
                number.phone_number_id,
                error.code,
                error.http_status,
                attempt,
                max_attempts,
                wait,
            )
            time.sleep(wait)


@dataclass(frozen=True)
class _Fetched:
    """One media GET's answer, its body read up to a limit (`too_large`: the limit was passed, body dropped)."""

    status: int
    content_type: str
    body: bytes
    too_large: bool = False


class _TooSlow(Exception):
    """A download took longer than MEDIA_DEADLINE."""


def _media_get(client: httpx.Client, url: str, headers: dict[str, str], *, limit: int) -> _Fetched | None:
    """GET `url`, reading at most `limit` bytes; once more after a 5xx or a connection problem. None: WhatsApp
    could not be reached (or was too slow) both times. The URL is never logged: its query string is a credential."""
    timeout = float(settings.WHATSAPP_SEND_TIMEOUT)
    fetched: _Fetched | None = None
    for attempt in range(1, MEDIA_ATTEMPTS + 1):
        try:
            fetched = _media_get_once(client, url, headers, limit=limit, timeout=timeout)
        except (httpx.TransportError, _TooSlow) as exc:
            logger.info(
                "Cloud API media request failed (%s), attempt %d of %d", type(exc).__name__, attempt, MEDIA_ATTEMPTS
            )
            fetched = None
        else:
            if fetched.status < 500:
                return fetched
            logger.info(
                "Cloud API media request answered HTTP %d, attempt %d of %d", fetched.status, attempt, MEDIA_ATTEMPTS
            )
        if attempt < MEDIA_ATTEMPTS:
            time.sleep(_retry_wait(attempt, None))
    return fetched


def _media_get_once(client: httpx.Client, url: str, headers: dict[str, str], *, limit: int, timeout: float) -> _Fetched:
    deadline = time.monotonic() + MEDIA_DEADLINE
    with client.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        declared = _int_or_none(response.headers.get("Content-Length"))
        if declared is not None and declared > limit:
            return _Fetched(status, content_type, b"", too_large=True)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                return _Fetched(status, content_type, b"", too_large=True)
            if time.monotonic() > deadline:
                raise _TooSlow
            chunks.append(chunk)
    return _Fetched(status, content_type, b"".join(chunks))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(body: dict[str, Any]) -> int | None:
    error = body.get("error")
    return _int_or_none(error.get("code")) if isinstance(error, dict) else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _too_large_message(size: int | None, limit: int) -> str:
    megabytes = f"{size / 1_048_576:.1f} MB, " if size is not None else ""
    return f"The file is too large to open here ({megabytes}the limit is {limit / 1_048_576:.1f} MB)."


def message_payload(content: OutboundContent) -> dict[str, Any]:
    """The JSON body Meta expects for `content`."""
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    if content.to.isdigit():
        payload["to"] = content.to
    else:  # a business-scoped user id (e.g. "US.13491208655302741918"): customers who hide their number
        payload["recipient"] = content.to
    if isinstance(content, OutboundText):
        if content.reply_to:
            payload["context"] = {"message_id": content.reply_to}
        payload["type"] = "text"
        payload["text"] = {"body": content.body, "preview_url": content.preview_url}
    elif isinstance(content, OutboundTemplate):
        template: dict[str, Any] = {"name": content.name, "language": {"code": content.language}}
        if content.components:
            template["components"] = content.components
        payload["type"] = "template"
        payload["template"] = template
    else:  # pragma: no cover - guarded by the type checker
        raise TypeError(f"cannot send {type(content).__name__} through the Cloud API")
    return payload


def _post_once(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    timeout: float,
    before_send: Callable[[], None] | None = None,
) -> str | _Failure:
    """One POST: the provider message id, or the failure it ended with."""
    request = client.build_request("POST", url, headers=headers, json=payload, timeout=timeout)
    if before_send is not None:
        before_send()
    try:
        response = client.send(request)
    except (httpx.ConnectTimeout, httpx.PoolTimeout):
        # Nothing reached Meta: safe to try again.
        return _Failure(SendError("connect_timeout", "Could not reach WhatsApp in time", retryable=True))
    except httpx.ConnectError as exc:
        return _Failure(
            SendError("connection_error", f"Could not reach WhatsApp ({type(exc).__name__})", retryable=True)
        )
    except httpx.TimeoutException:
        return _Failure(
            SendError(
                "timeout",
                "WhatsApp did not answer in time: the message may or may not have been sent",
                ambiguous=True,
            )
        )
    except httpx.TransportError as exc:
        return _Failure(
            SendError(
                "connection_lost",
                f"The connection to WhatsApp broke before it answered ({type(exc).__name__}): the message may or "
                "may not have been sent",
                ambiguous=True,
            )
        )

    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None

    if 200 <= status < 300:
        message_id = _message_id(body)
        if message_id:
            return message_id
        return _Failure(
            SendError(
                "bad_response",
                "WhatsApp answered without a message id; the message may or may not have been sent",
                http_status=status,
                ambiguous=True,
            )
        )
    return _Failure(_error_from_response(status, body), retry_after=_parse_retry_after(response))


def _message_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    message_id = messages[0].get("id")
    return message_id if isinstance(message_id, str) and message_id else None


def _error_from_response(status: int, body: Any) -> SendError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        transient = status == 429 or status >= 500
        return SendError(
            f"http_{status}",
            f"WhatsApp answered HTTP {status} without an error description",
            retryable=transient,
            http_status=status,
        )

    raw_code = error.get("code")
    try:
        code: int | None = int(raw_code)
    except (TypeError, ValueError):
        code = None
    code_text = str(raw_code) if raw_code is not None else f"http_{status}"

    if code in FINAL_CODES or (code is not None and 132000 <= code < 133000):
        retryable = False
    else:
        retryable = code in RETRYABLE_CODES or status == 429 or status >= 500
    return SendError(
        code_text,
        _reason(code, error),
        retryable=retryable,
        attention=code in ATTENTION_CODES,
        http_status=status,
    )


def _reason(code: int | None, error: dict[str, Any]) -> str:
    """A sentence for staff: ours for well-known codes, else Meta's, plus Meta's details when it gave some."""
    sentence = REASONS.get(code) if code is not None else None
    if not sentence:
        sentence = next(
            (
                str(error[key]).strip()
                for key in ("error_user_msg", "error_user_title", "message", "title")
                if error.get(key)
            ),
            "",
        )
        sentence = sentence or "WhatsApp rejected the message"
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    if isinstance(details, str) and details.strip() and details.strip() not in sentence:
        return f"{sentence} ({details.strip()})"
    return sentence


def _parse_retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_wait(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number `attempt`: exponential backoff with jitter, or the server's
    `Retry-After` when it asks for longer, capped at WHATSAPP_SEND_RETRY_AFTER_MAX."""
    base = float(settings.WHATSAPP_SEND_BACKOFF)
    ceiling = min(MAX_BACKOFF, base * 2 ** (attempt - 1))
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        cap = float(settings.WHATSAPP_SEND_RETRY_AFTER_MAX)
        wait = max(wait, min(retry_after, cap))
    return wait


_client_lock = threading.Lock()
_client: httpx.Client | None = None
_client_pid: int | None = None


def _shared_client() -> httpx.Client:
    """One connection pool per process (thread-safe), so consecutive sends reuse their TLS connection. A forked
    child (Celery prefork) opens its own rather than sharing the parent's sockets."""
    global _client, _client_pid
    pid = os.getpid()
    with _client_lock:
        if _client is None or _client_pid != pid:
            limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
            # TCP_NODELAY (as urllib3 does): a request's headers and body leave at once instead of the body
            # waiting ~40 ms for the server's delayed ACK, which would cap a connection at ~25 sends a second.
            transport = httpx.HTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            _client = httpx.Client(limits=limits, transport=transport)
            _client_pid = pid
        return _client


def _plaintext(token: Any) -> str:
    if token is None:
        return ""
    reveal = getattr(token, "reveal", None)
    return reveal() if callable(reveal) else str(token)


def _graph_url() -> str:
    return str(settings.WHATSAPP_GRAPH_API_URL).rstrip("/")


def _graph_version() -> str:
    return str(settings.WHATSAPP_GRAPH_API_VERSION).strip("/")
