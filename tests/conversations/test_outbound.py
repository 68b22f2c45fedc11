"""The one outbound service against the fake Graph API: checks before writing, at most once, statuses, sweeps."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations.inbound import StatusUpdate
from conversations.models import Message
from conversations.services import (
    OutboundRefused,
    Template,
    message_deliver,
    message_send,
    message_status_apply,
    outbound_messages_sweep,
)
from crm.events import client_group, live_events_of, queue_group
from tests.conversations.factories import ContactFactory, ConversationFactory, MessageFactory
from tests.crm.factories import UserFactory
from tests.queues.factories import QueueFactory

pytestmark = pytest.mark.django_db

TOKEN = "EAAG-outbound-test-token-0001"


@pytest.fixture
def conversation(graph_api, default_client):
    """A conversation on a Cloud API number whose customer wrote an hour ago (the 24-hour window is open)."""
    queue = QueueFactory(client=default_client)
    convo = ConversationFactory(
        client=default_client,
        number__queue=queue,
        number__access_token=TOKEN,
        queue=queue,
        last_inbound_at=timezone.now() - timedelta(hours=1),
    )
    graph_api.tokens[convo.number.phone_number_id] = TOKEN
    return convo


def send_and_deliver(conversation, **kwargs) -> tuple[Message, str]:
    message = message_send(conversation=conversation, **kwargs)
    outcome = message_deliver(message_id=message.pk)
    message.refresh_from_db()
    return message, outcome


def refused(**kwargs) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as excinfo:
        message_send(**kwargs)
    return excinfo.value


def status(provider_id: str, name: str, **kwargs) -> StatusUpdate:
    return StatusUpdate(
        phone_number_id="",
        provider_message_id=provider_id,
        status=name,
        timestamp=timezone.now(),
        recipient_wa_id=None,
        recipient_bsuid=None,
        error_code=kwargs.get("error_code", ""),
        error_reason=kwargs.get("error_reason", ""),
        raw={"id": provider_id, "status": name},
    )


def receive_events(layer, channel: str, count: int) -> list[dict]:
    """`count` live events from one channel, received in one event loop (channels_redis buffers per loop)."""

    async def receive() -> list[dict]:
        events: list[dict] = []
        while len(events) < count:
            events += live_events_of(await asyncio.wait_for(layer.receive(channel), 5))
        return events

    return async_to_sync(receive)()


# Sending text inside the window


def test_a_reply_is_written_before_the_call_and_its_wamid_after(conversation, graph_api):
    agent = UserFactory()
    before = timezone.now()

    message = message_send(conversation=conversation, text="  Hola, ya te ayudo  ", sent_by=agent)

    assert (message.status, message.provider_message_id, message.direction) == ("pending", None, "out")
    assert (message.body, message.origin, message.sent_by) == ("Hola, ya te ayudo", "agent", agent)
    assert graph_api.requests == []

    assert message_deliver(message_id=message.pk) == "accepted"
    message.refresh_from_db()
    request = graph_api.requests[-1]
    assert message.status == "accepted"
    assert message.provider_message_id.startswith("wamid.")
    assert request.path == f"/v23.0/{conversation.number.phone_number_id}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json["to"] == conversation.contact.wa_id
    assert request.json["text"]["body"] == "Hola, ya te ayudo"
    conversation.refresh_from_db()
    assert conversation.last_message_at >= before


def test_a_reply_quotes_the_customer_message(conversation, graph_api):
    original = MessageFactory(conversation=conversation, provider_message_id="wamid.CUSTOMER1")

    message, _ = send_and_deliver(conversation, text="Sí, lo tenemos", reply_to=original)

    assert message.quoted == original
    assert graph_api.requests[-1].json["context"] == {"message_id": "wamid.CUSTOMER1"}


def test_a_customer_known_only_by_business_scoped_id_is_written_to_by_that_id(conversation, graph_api):
    contact = ContactFactory(client=conversation.client, phone="", identity_key="", wa_id="", bsuid="PE.1349120865")
    conversation.contact = contact
    conversation.save()

    send_and_deliver(conversation, text="Hola")

    body = graph_api.requests[-1].json
    assert body["recipient"] == "PE.1349120865" and "to" not in body


# The 24-hour window


def test_free_text_outside_the_window_is_refused_and_nothing_is_written(conversation, graph_api):
    conversation.last_inbound_at = timezone.now() - timedelta(hours=25)
    conversation.save()

    error = refused(conversation=conversation, text="¿Sigues interesado?")

    assert error.code == "window_closed"
    assert "More than 24 hours since the customer last wrote" in error.message
    assert "only an approved template" in error.message
    assert Message.objects.count() == 0 and graph_api.requests == []


def test_free_text_to_a_customer_who_never_wrote_is_refused(conversation):
    conversation.last_inbound_at = None
    conversation.save()

    error = refused(conversation=conversation, text="Hola")

    assert error.code == "window_closed" and "has not written on this number yet" in error.message


def test_a_template_may_be_sent_outside_the_window(conversation, graph_api):
    conversation.last_inbound_at = timezone.now() - timedelta(days=3)
    conversation.save()
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#123"}]}]

    message, outcome = send_and_deliver(
        conversation, template=Template(name="order_ready", language="es", components=components)
    )

    assert outcome == "accepted" and message.kind == "template"
    assert message.body == "Template order_ready (es): Ana, #123"
    sent = graph_api.requests[-1].json
    assert sent["type"] == "template"
    assert sent["template"] == {"name": "order_ready", "language": {"code": "es"}, "components": components}


# Other refusals: nothing written, nothing sent


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"text": "   "}, "empty"),
        ({"text": "x" * 4097}, "too_long"),
        ({"text": "a", "template": Template("t", "es")}, "invalid"),
        ({}, "invalid"),
        ({"template": Template("", "es")}, "invalid"),
        ({"template": Template("t", "es", components=["body"])}, "invalid"),
    ],
)
def test_malformed_sends_are_refused(conversation, graph_api, kwargs, code):
    assert refused(conversation=conversation, **kwargs).code == code
    assert Message.objects.count() == 0 and graph_api.requests == []


def test_an_inactive_number_cannot_send(conversation):
    conversation.number.is_active = False
    conversation.number.save()

    error = refused(conversation=conversation, text="Hola")

    assert error.code == "number_inactive" and conversation.number.alias in error.message
    assert Message.objects.count() == 0


def test_an_engine_that_cannot_send_is_refused_up_front(conversation):
    conversation.number.engine = "telegram"  # not registered in sessions.engines.ENGINES
    conversation.number.save()

    assert refused(conversation=conversation, text="Hola").code == "engine_unavailable"
    assert Message.objects.count() == 0


def test_opted_out_contacts_get_no_campaign_or_template_but_a_reply_to_their_own_message(conversation, graph_api):
    conversation.contact.opted_out_at = timezone.now()
    conversation.contact.save()

    assert refused(conversation=conversation, template=Template("promo", "es")).code == "opted_out"
    assert refused(conversation=conversation, text="Oferta", origin=Message.Origin.CAMPAIGN).code == "opted_out"
    message, outcome = send_and_deliver(conversation, text="Listo, no te escribiremos más ofertas")
    assert outcome == "accepted"


# Provider failures: retried, final, attention


def test_transient_errors_are_retried_until_meta_accepts(conversation, graph_api):
    graph_api.fail_next(2, status=429, code=130429)

    message, outcome = send_and_deliver(conversation, text="Hola")

    assert outcome == "accepted" and message.status == "accepted"
    assert len(graph_api.requests) == 3


def test_a_final_error_fails_the_message_with_code_and_reason_and_is_sent_once(conversation, graph_api):
    graph_api.fail_next(status=400, code=131026, message="Message undeliverable")

    message, outcome = send_and_deliver(conversation, text="Hola")

    assert outcome == "failed" and len(graph_api.requests) == 1
    assert message.error_code == "131026"
    assert message.error_reason.startswith("Message undeliverable: the recipient may not use WhatsApp")
    assert message.provider_message_id is None


def test_an_expired_token_flags_the_number_and_tells_staff_until_a_send_succeeds(
    conversation, graph_api, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group(conversation.client_id), channel)
    graph_api.fail_next(status=401, code=190, message="Error validating access token")

    with django_capture_on_commit_callbacks(execute=True):
        message, outcome = send_and_deliver(conversation, text="Hola")

    number = conversation.number
    number.refresh_from_db()
    assert outcome == "failed" and message.error_code == "190" and len(graph_api.requests) == 1
    assert number.attention_reason.startswith("Access token expired or invalid")
    assert number.attention_since is not None
    (event,) = live_events_of(async_to_sync(layer.receive)(channel))
    assert event["type"] == "number.attention" and event["data"]["number"] == number.pk

    # when: staff fixed the token and the next send is accepted
    with django_capture_on_commit_callbacks(execute=True):
        send_and_deliver(conversation, text="Hola otra vez")

    number.refresh_from_db()
    assert (number.attention_reason, number.attention_since) == ("", None)


def test_a_restricted_account_flags_the_number(conversation, graph_api):
    graph_api.fail_next(status=403, code=368, message="Temporarily blocked for policies violations")

    send_and_deliver(conversation, text="Hola")

    conversation.number.refresh_from_db()
    assert "restricted" in conversation.number.attention_reason


# At most once


def test_a_timeout_leaves_the_message_unknown_and_it_is_never_sent_again(conversation, graph_api, settings):
    settings.WHATSAPP_SEND_TIMEOUT = 0.2
    graph_api.slow_next(seconds=2)

    message, outcome = send_and_deliver(conversation, text="Hola")

    assert outcome == "unknown" and message.status == "unknown"
    assert "may or may not have been sent" in message.error_reason
    assert message_deliver(message_id=message.pk) == "skipped"
    outbound_messages_sweep()
    assert len(graph_api.requests) == 1


def test_delivering_the_same_message_twice_sends_it_once(conversation, graph_api):
    message = message_send(conversation=conversation, text="Hola")

    outcomes = [message_deliver(message_id=message.pk), message_deliver(message_id=message.pk)]

    assert outcomes == ["accepted", "skipped"]
    assert len(graph_api.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_delivering_one_message_at_once_send_it_once(graph_api, default_client):
    convo = ConversationFactory(client=default_client, last_inbound_at=timezone.now())
    message = message_send(conversation=convo, text="Hola")
    graph_api.delay = 0.2  # both workers are in flight together
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def work():
        try:
            barrier.wait()
            outcomes.append(message_deliver(message_id=message.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["accepted", "skipped", "skipped", "skipped"]
    assert len(graph_api.requests) == 1


def test_a_number_deactivated_while_the_message_waited_sends_nothing(conversation, graph_api):
    message = message_send(conversation=conversation, text="Hola")
    conversation.number.is_active = False
    conversation.number.save()

    assert message_deliver(message_id=message.pk) == "failed"

    message.refresh_from_db()
    assert message.error_code == "number_inactive" and graph_api.requests == []


# The sweeper


def test_a_message_left_sending_by_a_dead_worker_becomes_unknown_not_resent(conversation, graph_api, settings):
    message = message_send(conversation=conversation, text="Hola")
    Message.objects.filter(pk=message.pk).update(status="sending", status_at=timezone.now() - timedelta(hours=1))
    fresh = message_send(conversation=conversation, text="Hola 2")
    Message.objects.filter(pk=fresh.pk).update(status="sending", status_at=timezone.now())

    assert outbound_messages_sweep() == {"requeued": 0, "unknown": 1}

    message.refresh_from_db()
    fresh.refresh_from_db()
    assert (message.status, message.error_code) == ("unknown", "interrupted")
    assert "Check with the customer before sending it again" in message.error_reason
    assert fresh.status == "sending"
    assert message_deliver(message_id=message.pk) == "skipped"
    assert graph_api.requests == []


def test_a_pending_message_whose_task_was_lost_is_queued_again(conversation, settings):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    message = message_send(conversation=conversation, text="Hola")  # its on-commit task never ran: lost
    Message.objects.filter(pk=message.pk).update(status_at=timezone.now() - timedelta(minutes=5))
    queued_before = broker.llen("default")

    assert outbound_messages_sweep() == {"requeued": 1, "unknown": 0}

    assert broker.llen("default") == queued_before + 1
    task = json.loads(broker.lindex("default", 0))
    assert task["headers"]["task"] == "conversations.tasks.message_deliver_task"
    assert task["headers"]["argsrepr"] == f"({message.pk},)"


# Statuses


def test_statuses_that_arrive_before_the_wamid_is_recorded_are_applied_when_it_is(conversation, graph_api):
    graph_api.reply_next(
        status=200, body=json.dumps({"messages": [{"id": "wamid.EARLY"}]}), content_type="application/json"
    )
    message = message_send(conversation=conversation, text="Hola")
    # the webhook beats the send's bookkeeping
    assert message_status_apply(number=conversation.number, update=status("wamid.EARLY", "delivered")) == "unmatched"
    assert message_status_apply(number=conversation.number, update=status("wamid.EARLY", "sent")) == "unmatched"

    message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert (message.provider_message_id, message.status) == ("wamid.EARLY", "delivered")


def test_webhook_statuses_move_a_sent_message_forward_only(conversation):
    message, _ = send_and_deliver(conversation, text="Hola")
    number, wamid = conversation.number, message.provider_message_id

    for name in ("read", "delivered", "sent"):
        message_status_apply(number=number, update=status(wamid, name))

    message.refresh_from_db()
    assert message.status == "read"


def test_a_failed_status_after_acceptance_keeps_meta_code_and_reason(conversation):
    message, _ = send_and_deliver(conversation, text="Hola")

    message_status_apply(
        number=conversation.number,
        update=status(message.provider_message_id, "failed", error_code="131049", error_reason="Ecosystem"),
    )

    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == ("failed", "131049", "Ecosystem")


def test_live_events_tell_the_queue_about_the_message_and_its_acceptance(
    conversation, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(queue_group(conversation.queue_id), channel)

    with django_capture_on_commit_callbacks(execute=True):  # also queues the task, for a worker that is not here
        message = message_send(conversation=conversation, text="Hola")
    with django_capture_on_commit_callbacks(execute=True):
        message_deliver(message_id=message.pk)

    created, accepted = receive_events(layer, channel, 2)
    assert (created["type"], created["data"]["message"], created["data"]["status"]) == (
        "message.created",
        message.pk,
        "pending",
    )
    assert (accepted["type"], accepted["data"]["status"]) == ("message.status", "accepted")


def test_the_settings_have_safe_defaults():
    assert settings.OUTBOUND_SENDING_STALE_AFTER > settings.WHATSAPP_SEND_TIMEOUT * (settings.WHATSAPP_SEND_RETRIES + 1)
