"""POST/GET /webhooks/whatsapp/: signatures, the handshake, what is stored and what is refused."""

from __future__ import annotations

import json

import pytest

from conversations.models import Message, WebhookEvent
from tests.conversations import meta_payloads as meta
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/whatsapp/"
SECRET = "test-app-secret"  # config.settings.test


def post(client, body, *, secret: str | None = SECRET, signature: str | None = None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {}
    if signature is not None:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature
    elif secret is not None:
        headers["HTTP_X_HUB_SIGNATURE_256"] = meta.sign(data, secret)
    return client.post(URL, data=data, content_type="application/json", **headers)


def text_webhook(wamid: str = "wamid.HBgL1", phone_number_id: str = meta.PHONE_NUMBER_ID) -> dict:
    return meta.webhook(
        meta.messages_change(
            phone_number_id,
            messages=[meta.text_message(wamid, meta.CUSTOMER_WA_ID, "Hola, ¿tienen stock?")],
            contacts=[meta.contact(meta.CUSTOMER_WA_ID, "Ana")],
        )
    )


@pytest.fixture
def number(default_client):
    return WhatsAppNumberFactory(client=default_client, phone_number_id=meta.PHONE_NUMBER_ID, verify_token="vt-123")


def test_a_signed_delivery_is_stored_before_the_200(client, number, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, text_webhook())

    assert response.status_code == 200 and response.content == b"EVENT_RECEIVED"
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PENDING
    assert event.body == text_webhook() and event.phone_number_ids == [meta.PHONE_NUMBER_ID]
    assert event.client_id == number.client_id
    assert len(callbacks) == 1  # the task is queued only once the event is committed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"secret": None}, "missing X-Hub-Signature-256 header"),
        ({"secret": "another-secret"}, "X-Hub-Signature-256 does not match the body"),
        ({"signature": "sha1=abc"}, "X-Hub-Signature-256 does not match the body"),
        ({"signature": "sha256=" + "0" * 64}, "X-Hub-Signature-256 does not match the body"),
    ],
    ids=["missing", "wrong secret", "wrong algorithm", "wrong digest"],
)
def test_a_missing_or_wrong_signature_is_refused_and_nothing_stored(client, number, kwargs, message):
    response = post(client, text_webhook(), **kwargs)

    assert response.status_code == 403
    assert response.json()["error"]["message"] == message
    assert not WebhookEvent.objects.exists()


def test_a_body_changed_after_signing_is_refused(client, number):
    body = json.dumps(text_webhook()).encode()
    signature = meta.sign(body, SECRET)

    response = post(client, None, raw=body.replace(b"Hola", b"Chau"), signature=signature)

    assert response.status_code == 403 and not WebhookEvent.objects.exists()


def test_a_client_with_its_own_meta_app_signs_with_its_secret(client, default_client):
    own = ClientFactory(slug="tienda", meta_app_secret="tienda-app-secret")
    WhatsAppNumberFactory(client=own, phone_number_id="555000111")

    assert post(client, text_webhook(phone_number_id="555000111")).status_code == 403  # the global secret
    response = post(client, text_webhook(phone_number_id="555000111"), secret="tienda-app-secret")

    assert response.status_code == 200
    assert WebhookEvent.objects.get().client == own


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "the body is not valid JSON"),
        (json.dumps({"object": "page", "entry": []}).encode(), "not a WhatsApp webhook: object must be"),
        (json.dumps({"object": "whatsapp_business_account", "entry": {}}).encode(), "not a WhatsApp webhook"),
        (json.dumps([1, 2]).encode(), "not a WhatsApp webhook"),
    ],
    ids=["bad json", "wrong object", "entry not a list", "array"],
)
def test_a_signed_body_that_is_not_a_whatsapp_webhook_gets_400_and_is_not_stored(client, number, raw, message):
    response = post(client, None, raw=raw, signature=meta.sign(raw, SECRET))

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)
    assert not WebhookEvent.objects.exists()


def test_an_unknown_phone_number_id_is_stored_not_dropped(client, number):
    response = post(client, text_webhook(phone_number_id="999999999"))

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.phone_number_ids == ["999999999"] and event.client is None


@pytest.mark.parametrize(
    "change",
    [
        meta.account_update_change(),
        meta.template_status_change(),
        meta.calls_change(),
        meta.user_preferences_change(),
        meta.message_echoes_change(),
        meta.field_change("some_future_field", {"x": 1}),
    ],
    ids=["account_update", "template_status", "calls", "user_preferences", "message_echoes", "future field"],
)
def test_every_well_formed_update_is_acknowledged(client, number, change):
    assert post(client, meta.webhook(change)).status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_the_verify_handshake_answers_the_raw_challenge(client, number, settings):
    settings.WHATSAPP_VERIFY_TOKEN = "global-token"
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}

    for token in ("vt-123", "global-token"):
        response = client.get(URL, {**query, "hub.verify_token": token})
        assert response.status_code == 200 and response.content == b"1158201444"
        assert response["Content-Type"].startswith("text/plain")

    assert client.get(URL, {**query, "hub.verify_token": "nope"}).status_code == 403
    assert client.get(URL, {**query, "hub.mode": "unsubscribe", "hub.verify_token": "vt-123"}).status_code == 403
    number.is_active = False
    number.save()
    assert client.get(URL, {**query, "hub.verify_token": "vt-123"}).status_code == 403  # inactive numbers' tokens


def test_other_methods_are_refused(client, number):
    assert client.put(URL).status_code == 405
    assert not Message.objects.exists()


def test_a_nul_character_in_a_message_is_stored_as_the_replacement_character(client, number):
    body = meta.webhook(
        meta.messages_change(
            meta.PHONE_NUMBER_ID,
            messages=[meta.text_message("wamid.nul", meta.CUSTOMER_WA_ID, "a\x00b")],
            contacts=[meta.contact(meta.CUSTOMER_WA_ID, "Ana")],
        )
    )

    response = post(client, body)  # json.dumps writes the NUL as \u0000, which jsonb refuses

    assert response.status_code == 200
    stored = WebhookEvent.objects.get().body
    assert stored["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "a\ufffdb"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_json_does_not_have_are_refused_as_not_json_and_nothing_is_stored(client, number, value):
    # found by make chaos: jsonb refuses them, and the refusal was answered 503 (Meta retries those for days)
    raw = (
        '{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "x", "value": {"n": '
        + value
        + "}}]}]}"
    ).encode()

    response = post(client, None, raw=raw)

    assert response.status_code == 400 and b"not valid JSON" in response.content
    assert not WebhookEvent.objects.exists()


def test_a_lone_surrogate_and_a_nul_at_any_depth_are_stored_as_the_replacement_character(client, number):
    body = text_webhook()
    body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "a\ud800b"
    deep = json.dumps(body)[:-1] + ', "deep": ' + "[" * 600 + '"\\u0000"' + "]" * 600 + "}"

    response = post(client, None, raw=deep.encode())

    assert response.status_code == 200
    stored = WebhookEvent.objects.get().body
    assert stored["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "a\ufffdb"
    inner = stored["deep"]
    for _ in range(600):
        inner = inner[0]
    assert inner == "\ufffd"
