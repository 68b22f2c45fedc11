"""Outbound event webhooks (docs/webhooks.md): endpoints staff register per client, events services emit, signed
deliveries retried with backoff by the `webhooks` worker.

Services call `webhook_events_emit` inside their own transaction: it writes one delivery per subscribed endpoint
and queues their sends after commit. A change that is rolled back takes its deliveries with it, so nothing is sent
for it; a delivery whose enqueue was lost (the process died right after the commit) is found by the sweeper.
Only the `webhooks` worker talks to receivers: a slow or failing one costs the product nothing but that worker's
time, and a client without endpoints costs an emitting service one Redis read.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from crm.crypto import SecretDecryptionError
from crm.models import WEBHOOK_PING, Client, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

USER_AGENT = "whatsapp-crm-webhooks/1"
SECRET_PREFIX = "whsec_"
# How long "which events do this client's endpoints want" is remembered in Redis. Cleared whenever an endpoint
# changes, so this only bounds a rare race (an emitter reading the database just before the change commits).
SUBSCRIBED_MEMO_SECONDS = 60
# Backoff: a retry due within this many seconds is queued with a countdown; a later one is left to the sweeper
# (long broker ETAs are fragile: STYLE.md "Celery").
COUNTDOWN_MAX = 300
BACKOFF_MAX = 3600
# The sweeper hands out deliveries overdue by this much (their own task or countdown normally came first),
# at most SWEEP_BATCH per run.
SWEEP_GRACE = 30
SWEEP_BATCH = 500
# A worker's claim on a delivery it is sending lapses this long after the POST's timeout (a killed worker's
# delivery goes out again after that; receivers deduplicate by X-Webhook-Id).
CLAIM_MARGIN = 30
# Sends to one endpoint at once, and how long a delivery waits when its endpoint is that busy.
ENDPOINT_IN_FLIGHT = 2
BUSY_WAIT = 5
# The sweeper hands out at most this many deliveries of one endpoint per run, oldest first, so a receiver with a
# backlog does not take every turn.
SWEEP_PER_ENDPOINT = 20
# Deliveries (and their attempts) delivered or given up longer ago than EVENT_WEBHOOK_RETENTION_DAYS are deleted
# by the sweeper, this many per run.
PRUNE_BATCH = 5000
SNIPPET_BYTES = 200
ERROR_CHARS = 300

D = WebhookDelivery.Status


class WebhookPayload(TypedDict):
    """The JSON body of every delivery."""

    id: str
    type: str
    created_at: str
    client: int
    data: dict[str, Any]


# --- Endpoints ---------------------------------------------------------------------------------------------


def webhook_secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _subscribed_key(client_id: int) -> str:
    return f"webhooks:subscribed:{client_id}"


def _subscribed_forget(client_id: int) -> None:
    """Emitters re-read the client's endpoints from now on, and again once this transaction commits."""

    def forget() -> None:
        try:
            cache.delete(_subscribed_key(client_id))
        except Exception:  # Redis away: the memo lapses within SUBSCRIBED_MEMO_SECONDS
            logger.warning("webhook subscriptions of client %s not refreshed", client_id, exc_info=True)

    forget()
    transaction.on_commit(forget)


@transaction.atomic
def webhook_endpoint_create(
    *,
    client: Client,
    url: str,
    events: list[str],
    description: str = "",
    is_active: bool = True,
    created_by: AbstractBaseUser | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret, which staff see once (admin shows it masked after that)."""
    secret = webhook_secret_new()
    endpoint = WebhookEndpoint(
        client=client,
        url=url,
        events=sorted(set(events)),
        description=description,
        is_active=is_active,
        secret=secret,
        created_by=created_by,
    )
    endpoint.full_clean()
    endpoint.save()
    _subscribed_forget(client.pk)
    logger.info("webhook endpoint %s created for client %s", endpoint.pk, client.pk)
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, url: str, events: list[str], description: str, is_active: bool
) -> WebhookEndpoint:
    """Change where an endpoint points and what it receives. Deliveries already made keep their body."""
    endpoint.url = url
    endpoint.events = sorted(set(events))
    endpoint.description = description
    endpoint.is_active = is_active
    endpoint.full_clean()
    endpoint.save(update_fields=["url", "events", "description", "is_active", "updated_at"])
    _subscribed_forget(endpoint.client_id)
    return endpoint


@transaction.atomic
def webhook_endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret, used from the next attempt on (also for deliveries still being retried). Returned
    once, to be shown once."""
    secret = webhook_secret_new()
    endpoint.secret = secret
    endpoint.save(update_fields=["secret", "updated_at"])
    logger.info("webhook endpoint %s: secret rotated", endpoint.pk)
    return secret


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its deliveries."""
    client_id = endpoint.client_id
    endpoint.delete()
    _subscribed_forget(client_id)


# --- Emitting ----------------------------------------------------------------------------------------------


def _subscribed(client_id: int) -> frozenset[str]:
    """Event types some active endpoint of the client wants: one Redis read, the database only on a miss."""
    key = _subscribed_key(client_id)
    try:
        cached = cache.get(key)
    except Exception:
        cached = None
    if cached is not None:
        return frozenset(cached)
    wanted: set[str] = set()
    for events in WebhookEndpoint.objects.filter(client_id=client_id, is_active=True).values_list("events", flat=True):
        wanted.update(events)
    try:
        cache.set(key, sorted(wanted), SUBSCRIBED_MEMO_SECONDS)
    except Exception:  # Redis away: the next emission asks the database again
        logger.debug("webhook subscriptions of client %s not remembered", client_id, exc_info=True)
    return frozenset(wanted)


def webhook_event_wanted(*, client_id: int, type: str) -> bool:
    """Whether some active endpoint of the client receives `type` (for emitters whose data costs a query)."""
    return type in _subscribed(client_id)


def webhook_event_throttle(*, key: str, state: str, seconds: float) -> bool:
    """True when an event about `key` may go now: none went in the last `seconds`, or `state` changed since the
    last one. False means skip it (a later event carries the news)."""
    if seconds <= 0:
        return True
    cache_key = f"webhooks:throttle:{key}"
    try:
        if cache.get(cache_key) == state:
            return False
        cache.set(cache_key, state, seconds)
    except Exception:  # Redis away: send rather than lose a status change
        return True
    return True


def _body(event_id: uuid.UUID, type: str, at: datetime, client_id: int, data: dict[str, Any]) -> str:
    payload: WebhookPayload = {
        "id": str(event_id),
        "type": type,
        "created_at": DjangoJSONEncoder().default(at),  # the form of every time in the data: ms, "Z" for UTC
        "client": client_id,
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)


def webhook_events_emit(*, client_id: int, type: str, data: dict[str, Any]) -> list[int]:
    """Queue one event for every active endpoint of the client subscribed to `type`; the ids of the deliveries.

    Call it inside the transaction of the change it reports: the deliveries commit (and are sent) with the change,
    or not at all. `data` holds ids and small facts, never secrets."""
    return webhook_events_emit_many(client_id=client_id, events=[(type, data)])


def webhook_events_emit_many(*, client_id: int, events: Iterable[tuple[str, dict[str, Any]]]) -> list[int]:
    """`webhook_events_emit` for several events of one client (a batch of inbound messages): one query finds the
    endpoints, one INSERT writes every delivery, one callback after commit queues them."""
    events = list(events)
    wanted = _subscribed(client_id) if events else frozenset()
    events = [(type_, data) for type_, data in events if type_ in wanted]
    if not events:
        return []
    types = sorted({type_ for type_, _ in events})
    endpoints = list(
        WebhookEndpoint.objects.filter(client_id=client_id, is_active=True, events__overlap=types)
        .order_by("pk")
        .values_list("pk", "events")
    )
    return _deliveries_create(client_id, endpoints, events)


def _deliveries_create(
    client_id: int, endpoints: list[tuple[int, list[str]]], events: list[tuple[str, dict[str, Any]]]
) -> list[int]:
    now = timezone.now()
    give_up_at = now + timedelta(seconds=settings.EVENT_WEBHOOK_GIVE_UP_AFTER)
    rows = []
    for type_, data in events:
        event_id = uuid.uuid4()
        body = None
        for endpoint_id, subscribed in endpoints:
            if type_ in subscribed or type_ == WEBHOOK_PING:
                body = body or _body(event_id, type_, now, client_id, data)
                rows.append(
                    WebhookDelivery(
                        endpoint_id=endpoint_id,
                        event_id=event_id,
                        event_type=type_,
                        body=body,
                        next_attempt_at=now,
                        give_up_at=give_up_at,
                    )
                )
    if not rows:
        return []
    with transaction.atomic(savepoint=False):  # a caller outside any transaction gets one of its own
        ids = [row.pk for row in WebhookDelivery.objects.bulk_create(rows)]
        _enqueue_on_commit(ids)
    return ids


def webhook_endpoint_ping(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Staff's "Send a test event": a `ping` delivered, signed and retried like any event."""
    data = {"endpoint": endpoint.pk, "message": "Test event from WhatsApp CRM: the endpoint works."}
    (delivery_id,) = _deliveries_create(endpoint.client_id, [(endpoint.pk, [])], [(WEBHOOK_PING, data)])
    return WebhookDelivery.objects.get(pk=delivery_id)


def _enqueue_on_commit(delivery_ids: list[int], countdown: float | None = None) -> None:
    def enqueue() -> None:
        from crm.tasks import webhook_delivery_send_task

        for delivery_id in delivery_ids:
            try:
                webhook_delivery_send_task.apply_async((delivery_id,), countdown=countdown)
            except Exception:  # the broker is away: the delivery is stored; the sweeper queues it later
                logger.warning("webhook delivery %s stored but not queued; the sweeper will", delivery_id)

    transaction.on_commit(enqueue, robust=True)


# --- Sending -----------------------------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"), the X-Webhook-Signature header."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: EVENT_WEBHOOK_BACKOFF_BASE doubling per attempt,
    at most an hour, times a random 0.5-1.5 so receivers that come back are not hit by every retry at once."""
    base = min(float(settings.EVENT_WEBHOOK_BACKOFF_BASE) * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
    return base * random.uniform(0.5, 1.5)


def webhook_url_problem(url: str) -> str:
    """Why events may not be sent to `url` now ("" when they may): its host must resolve, and unless
    EVENT_WEBHOOK_ALLOW_PRIVATE, only to public addresses (never this machine, the cloud's metadata service or the
    private network the product runs in)."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return f"the host {host} does not resolve"
    if settings.EVENT_WEBHOOK_ALLOW_PRIVATE:
        return ""
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            return (
                f"{host} is a private or local address ({ip}); set EVENT_WEBHOOK_ALLOW_PRIVATE to send events inside "
                "your network"
            )
    return ""


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST once, within EVENT_WEBHOOK_TIMEOUT x 2 in all (a receiver that drips its answer byte by byte is cut
    off): (status code, "") for a 2xx answer, else (status code or None, a short reason). Redirects are never
    followed."""
    problem = webhook_url_problem(url)
    if problem:
        return None, f"not sent: {problem}"
    timeout = float(settings.EVENT_WEBHOOK_TIMEOUT)
    client = httpx.Client(follow_redirects=False, timeout=timeout)
    outcome: list[tuple[int | None, str]] = []

    def send() -> None:
        try:
            with client.stream("POST", url, content=body, headers=headers) as response:
                code = response.status_code
                if 200 <= code < 300:
                    outcome.append((code, ""))
                    return
                snippet = b""
                for chunk in response.iter_bytes():  # a little of the answer, for staff reading the attempt
                    snippet += chunk
                    if len(snippet) >= SNIPPET_BYTES:
                        break
                text = snippet[:SNIPPET_BYTES].decode("utf-8", "replace").strip()
                outcome.append((code, f"HTTP {code}" + (f": {text}" if text else "")))
        except httpx.TimeoutException:
            outcome.append((None, f"no answer within {timeout:g} s"))
        except Exception as exc:  # refused, DNS, TLS, closed by the deadline: the receiver is unreachable
            outcome.append((None, f"{type(exc).__name__}: {exc}"))

    sender = threading.Thread(target=send, name="webhook-post", daemon=True)
    sender.start()
    sender.join(timeout * 2)
    if sender.is_alive():
        client.close()  # aborts the sockets: the sender thread ends with an error we no longer wait for
        sender.join(1.0)
        return None, f"no complete answer within {timeout * 2:g} s"
    client.close()
    return outcome[0] if outcome else (None, "no answer")


def webhook_delivery_send(*, delivery_id: int) -> str:
    """POST one due delivery: "delivered", "retry" (failed; tried again later), "failed" (given up) or "skipped"
    (not due, already sent, or being sent by another worker). Safe to run twice: each run first claims the
    delivery, and only a pending (or abandoned) one can be claimed."""
    now = timezone.now()
    lease = now + timedelta(seconds=float(settings.EVENT_WEBHOOK_TIMEOUT) * 2 + CLAIM_MARGIN)
    with transaction.atomic():
        # a countdown may fire a moment early (clocks of two hosts): within a second counts as due
        due = WebhookDelivery.objects.filter(
            pk=delivery_id, status__in=[D.PENDING, D.SENDING], next_attempt_at__lte=now + timedelta(seconds=1)
        )
        endpoint_id = due.values_list("endpoint_id", flat=True).first()
        if endpoint_id is None:
            return "skipped"
        # At most ENDPOINT_IN_FLIGHT sends per endpoint at once (claims of one endpoint take turns on its row):
        # a slow or dead receiver holds that many threads, never the whole pool other clients' events need.
        WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).values_list("pk").first()
        in_flight = WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status=D.SENDING, next_attempt_at__gt=now
        ).exclude(pk=delivery_id)
        if in_flight.count() >= ENDPOINT_IN_FLIGHT:
            due.filter(status=D.PENDING).update(next_attempt_at=now + timedelta(seconds=BUSY_WAIT), updated_at=now)
            return "busy"  # no attempt spent; the sweeper hands it out again
        if not due.update(status=D.SENDING, next_attempt_at=lease, updated_at=now):
            return "skipped"
    try:
        delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    except SecretDecryptionError:  # TOKEN_ENCRYPTION_KEY replaced instead of rotated: no retry can succeed
        logger.error("webhook delivery %s failed: its endpoint's secret cannot be decrypted", delivery_id)
        return _delivery_fail(delivery_id, "The endpoint's secret cannot be decrypted.", now)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        return _delivery_fail(delivery_id, "The endpoint is inactive.", now)
    secret = endpoint.secret.reveal()
    body = delivery.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": str(delivery.event_id),
        "X-Webhook-Event": delivery.event_type,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": webhook_signature(secret, timestamp, body),
    }
    started = time.monotonic()
    status_code, error = _post(endpoint.url, body, headers)
    duration_ms = int((time.monotonic() - started) * 1000)
    return _delivery_record(delivery, status_code, error[:ERROR_CHARS], duration_ms)


def _delivery_fail(delivery_id: int, reason: str, now: datetime) -> str:
    """Give up a claimed delivery that no retry could send; staff may send it again once the cause is fixed."""
    WebhookDelivery.objects.filter(pk=delivery_id, status=D.SENDING).update(
        status=D.FAILED, next_attempt_at=None, last_error=reason, updated_at=now
    )
    return "failed"


@transaction.atomic
def _delivery_record(delivery: WebhookDelivery, status_code: int | None, error: str, duration_ms: int) -> str:
    now = timezone.now()
    WebhookAttempt.objects.create(
        delivery_id=delivery.pk, status_code=status_code, error=error, duration_ms=duration_ms
    )
    current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    current.attempts += 1
    current.last_status_code = status_code
    current.last_error = error
    fields = ["attempts", "last_status_code", "last_error", "status", "next_attempt_at", "updated_at"]
    endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
    if not error:
        current.status, current.next_attempt_at, current.delivered_at = D.DELIVERED, None, now
        current.save(update_fields=[*fields, "delivered_at"])
        endpoints.update(consecutive_failures=0, last_success_at=now, updated_at=now)
        return "delivered"

    endpoints.update(consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now, updated_at=now)
    if current.status != D.SENDING:  # staff sent it again meanwhile: their send decides what happens next
        current.save(update_fields=["attempts", "last_status_code", "last_error", "updated_at"])
        return "retry"
    wait = webhook_backoff(current.attempts)
    next_at = now + timedelta(seconds=wait)
    if current.give_up_at is not None and next_at > current.give_up_at:
        current.status, current.next_attempt_at = D.FAILED, None
        current.save(update_fields=fields)
        logger.warning(
            "webhook delivery %s to endpoint %s given up after %s attempt(s): %s",
            delivery.pk,
            delivery.endpoint_id,
            current.attempts,
            error,
        )
        return "failed"
    current.status, current.next_attempt_at = D.PENDING, next_at
    current.save(update_fields=fields)
    if wait <= COUNTDOWN_MAX:
        _enqueue_on_commit([delivery.pk], countdown=wait)
    logger.info(
        "webhook delivery %s to endpoint %s failed (attempt %s, %s); next in %.0f s",
        delivery.pk,
        delivery.endpoint_id,
        current.attempts,
        error,
        wait,
    )
    return "retry"


@transaction.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery) -> bool:
    """Staff's "Send again": a delivered, failed or waiting delivery goes out now, with the same event id (the
    receiver may recognise it) and a fresh retry window. False for one being sent right now."""
    current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if current.status == D.SENDING and current.next_attempt_at and current.next_attempt_at > timezone.now():
        return False
    now = timezone.now()
    current.status = D.PENDING
    current.attempts = 0
    current.next_attempt_at = now
    current.give_up_at = now + timedelta(seconds=settings.EVENT_WEBHOOK_GIVE_UP_AFTER)
    current.delivered_at = None
    current.save(update_fields=["status", "attempts", "next_attempt_at", "give_up_at", "delivered_at", "updated_at"])
    _enqueue_on_commit([current.pk])
    return True


def webhook_deliveries_sweep() -> dict[str, int]:
    """Beat's pass (every 30 s): queue deliveries overdue by SWEEP_GRACE (a lost enqueue, a retry too far off
    for a countdown, a worker killed mid-send), oldest first, at most SWEEP_PER_ENDPOINT of one endpoint and
    SWEEP_BATCH in all; and delete deliveries delivered or given up more than EVENT_WEBHOOK_RETENTION_DAYS ago
    (they hold customers' messages), PRUNE_BATCH at a time."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=SWEEP_GRACE)
    ranked = (
        WebhookDelivery.objects.filter(status__in=[D.PENDING, D.SENDING], next_attempt_at__lte=cutoff)
        .annotate(turn=Window(RowNumber(), partition_by=[F("endpoint_id")], order_by=F("next_attempt_at").asc()))
        .filter(turn__lte=SWEEP_PER_ENDPOINT)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)
    )
    due = list(ranked[:SWEEP_BATCH])
    _enqueue_on_commit(due)  # outside a transaction: at once
    if due:
        logger.info("webhook sweep: %s due deliveries queued", len(due))
    old = now - timedelta(days=settings.EVENT_WEBHOOK_RETENTION_DAYS)
    stale = list(
        WebhookDelivery.objects.filter(status__in=[D.DELIVERED, D.FAILED], updated_at__lt=old).values_list(
            "pk", flat=True
        )[:PRUNE_BATCH]
    )
    pruned = (
        WebhookDelivery.objects.filter(pk__in=stale).delete()[1].get(WebhookDelivery._meta.label, 0) if stale else 0
    )
    return {"queued": len(due), "pruned": pruned}
