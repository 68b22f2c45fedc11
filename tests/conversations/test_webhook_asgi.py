"""The lean ASGI path for webhook deliveries (conversations/webhook_asgi.py): same answers as the Django view,
stored before the 200, stored events handed to the broker in batches, everything else passed to Django."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import redis as redis_lib
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler

from config.asgi import application
from conversations.models import WebhookEvent
from conversations.webhook_asgi import WEBHOOK_PATH, WebhookApp
from tests.conversations import meta_payloads as meta
from tests.conversations.test_webhook_api import SECRET, text_webhook
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def number(default_client):
    return WhatsAppNumberFactory(client=default_client, phone_number_id=meta.PHONE_NUMBER_ID)


def deliver(body: bytes, *, secret: str | None = SECRET, app=application, path: str = WEBHOOK_PATH):
    headers = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    if secret is not None:
        headers.append((b"x-hub-signature-256", meta.sign(body, secret).encode()))

    async def run():
        response = await HttpCommunicator(app, "POST", path, body=body, headers=headers).get_response(timeout=10)
        await asyncio.sleep(0.1)  # daphne's loop lives on; this one lets the enqueue batch leave before it closes
        return response

    return asyncio.run(run())


def queued_event_ids(settings) -> list[int]:
    """Event ids in the webhook tasks waiting on the broker's default queue (Redis, the test database)."""
    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    ids: list[int] = []
    for raw in broker.lrange("default", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "conversations.tasks.webhook_events_process_task":
            args = json.loads(base64.b64decode(message["body"]))[0]
            ids += args[0]
    return ids


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_a_signed_delivery_is_stored_and_answered_by_the_lean_path(number, settings):
    body = json.dumps(text_webhook()).encode()

    response = deliver(body)

    assert response["status"] == 200 and response["body"] == b"EVENT_RECEIVED"
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PENDING and event.client_id == number.client_id
    assert wait_for(lambda: queued_event_ids(settings)) == [event.pk]


def test_deliveries_close_together_reach_the_broker_in_one_task(number, settings):
    app = WebhookApp(application.application_mapping["http"].inner)
    bodies = [json.dumps(text_webhook(wamid=f"wamid.BATCH{n}")).encode() for n in range(5)]

    async def run():
        communicators = []
        for body in bodies:
            headers = [(b"x-hub-signature-256", meta.sign(body, SECRET).encode())]
            communicators.append(HttpCommunicator(app, "POST", WEBHOOK_PATH, body=body, headers=headers))
        responses = await asyncio.gather(*(c.get_response(timeout=10) for c in communicators))
        await asyncio.sleep(0.1)
        return responses

    responses = asyncio.run(run())

    assert [r["status"] for r in responses] == [200] * 5
    stored = sorted(WebhookEvent.objects.values_list("pk", flat=True))
    assert sorted(wait_for(lambda: queued_event_ids(settings))) == stored
    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen("default") < 5  # batched, not one task per delivery


@pytest.mark.parametrize(
    "body, secret, status, message",
    [
        (json.dumps(text_webhook()).encode(), None, 403, "missing X-Hub-Signature-256 header"),
        (json.dumps(text_webhook()).encode(), "wrong", 403, "X-Hub-Signature-256 does not match the body"),
        (b"{not json", SECRET, 400, "the body is not valid JSON"),
        (json.dumps({"object": "page", "entry": []}).encode(), SECRET, 400, "not a WhatsApp webhook"),
    ],
    ids=["unsigned", "wrong secret", "bad json", "wrong object"],
)
def test_rejected_deliveries_store_nothing(number, settings, body, secret, status, message):
    response = deliver(body, secret=secret)

    assert response["status"] == status
    assert json.loads(response["body"])["error"]["message"].startswith(message)
    assert not WebhookEvent.objects.exists()
    assert queued_event_ids(settings) == []


def test_a_body_over_the_upload_limit_gets_413_and_nothing_stored(number, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps(text_webhook() | {"padding": "x" * 2000}).encode()

    response = deliver(body)

    assert response["status"] == 413 and not WebhookEvent.objects.exists()


def test_the_handshake_and_other_paths_go_to_the_inner_app(settings):
    seen: list[tuple[str, str]] = []

    async def inner(scope, receive, send):
        seen.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = WebhookApp(inner)

    async def request(method: str, path: str):
        return await HttpCommunicator(app, method, path).get_response(timeout=10)

    responses = [
        asyncio.run(request("GET", WEBHOOK_PATH + "?hub.mode=subscribe")),
        asyncio.run(request("GET", "/healthz")),
        asyncio.run(request("POST", "/admin/login/")),
    ]

    assert [r["status"] for r in responses] == [204, 204, 204]
    assert seen == [("GET", WEBHOOK_PATH), ("GET", "/healthz"), ("POST", "/admin/login/")]
    assert not WebhookEvent.objects.exists()


def test_the_served_application_wraps_django_with_the_lean_path():
    http = application.application_mapping["http"]

    assert isinstance(http, WebhookApp) and isinstance(http.inner, ASGIHandler)


def test_a_replaced_app_secret_verifies_at_once_and_the_old_one_only_until_the_new_one_is_seen(default_client):
    own = ClientFactory(slug="tienda", meta_app_secret="first-secret")
    WhatsAppNumberFactory(client=own, phone_number_id="555000111")
    body = json.dumps(text_webhook(phone_number_id="555000111")).encode()
    assert deliver(body, secret="first-secret")["status"] == 200  # now cached

    own.meta_app_secret = "second-secret"
    own.save()

    assert deliver(body, secret="first-secret")["status"] == 200  # the cached secret, for its window at most
    assert deliver(body, secret="second-secret")["status"] == 200  # a mismatch re-reads the database
    assert deliver(body, secret="first-secret")["status"] == 403
    assert deliver(body, secret="second-secret")["status"] == 200


def test_without_the_cache_a_replaced_secret_stops_at_once(default_client, settings):
    settings.WEBHOOK_SECRET_CACHE_SECONDS = 0
    own = ClientFactory(slug="tienda", meta_app_secret="first-secret")
    WhatsAppNumberFactory(client=own, phone_number_id="555000111")
    body = json.dumps(text_webhook(phone_number_id="555000111")).encode()
    assert deliver(body, secret="first-secret")["status"] == 200

    own.meta_app_secret = "second-secret"
    own.save()

    assert deliver(body, secret="first-secret")["status"] == 403
