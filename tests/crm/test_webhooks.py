"""Event webhooks (docs/webhooks.md): deliveries signed and checked by a real receiver on 127.0.0.1, written only
when the change commits, retried with backoff and given up, emitted by every hooked service for the right client
only, and operated from admin."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaign_progress_publish
from conversations.inbound import InboundMessage, InboundSender, StatusUpdate
from conversations.models import Conversation, Message
from conversations.services.actions import conversation_resolve
from conversations.services.receive import inbound_message_receive
from conversations.services.statuses import message_status_apply, message_statuses_apply
from crm.models import ClientMembership, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEventType
from crm.roles import STAFF
from crm.webhooks import (
    BACKOFF_MAX,
    webhook_backoff,
    webhook_deliveries_sweep,
    webhook_delivery_send,
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_events_emit,
)
from queues.models import AgentAvailability
from queues.services import agent_availability_set, conversation_assign
from sessions.leases import redis_connection
from sessions.models import NumberSession, SessionState
from sessions.services.states import session_state_set
from tests.campaigns.factories import CampaignFactory
from tests.conftest import free_port, project_env, start_celery_worker, stop_processes
from tests.conversations.factories import ContactFactory, ConversationFactory, MessageFactory
from tests.crm.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.fakes.webhook_receiver import WebhookReceiver, signature_valid
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

E = WebhookEventType
D = WebhookDelivery.Status


class Boom(Exception):
    pass


@pytest.fixture
def receiver():
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
def tienda():
    return ClientFactory(name="Tienda", slug="tienda")


def endpoint_for(client, receiver: WebhookReceiver, events=None, **extra) -> WebhookEndpoint:
    endpoint, secret = webhook_endpoint_create(
        client=client, url=f"{receiver.url}/hooks/crm", events=events or list(E.values), **extra
    )
    receiver.secret = secret
    return endpoint


def body_of(delivery: WebhookDelivery) -> dict:
    return json.loads(delivery.body)


def make_due(delivery: WebhookDelivery) -> None:
    """As if the wait before the next attempt had passed."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# --- signing and delivery ------------------------------------------------------------------------------------


def test_a_delivery_is_signed_and_the_receiver_verifies_it_with_the_endpoint_secret(
    tienda, receiver, django_capture_on_commit_callbacks
):
    # given an endpoint of the client, its secret copied into the receiver
    endpoint = endpoint_for(tienda, receiver)

    # when a service emits an event in its transaction, and the worker sends it
    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            (delivery_id,) = webhook_events_emit(
                client_id=tienda.pk, type=E.CONVERSATION_RESOLVED, data={"conversation": 7, "note": "ñandú"}
            )
    assert len(callbacks) == 1  # the enqueue waits for the commit
    outcome = webhook_delivery_send(delivery_id=delivery_id)

    # then the receiver got exactly the stored body, signed with the secret, with the documented headers
    assert outcome == "delivered"
    (request,) = receiver.received
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert request.verified
    assert request.raw == delivery.body.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "whatsapp-crm-webhooks/1"
    assert request.headers["x-webhook-id"] == str(delivery.event_id)
    assert request.headers["x-webhook-event"] == "conversation.resolved"
    assert abs(int(request.headers["x-webhook-timestamp"]) - time.time()) < 5
    payload = json.loads(request.raw)
    assert set(payload) == {"id", "type", "created_at", "client", "data"}
    assert payload["id"] == str(delivery.event_id) and payload["type"] == "conversation.resolved"
    assert payload["client"] == tienda.pk and payload["data"] == {"conversation": 7, "note": "ñandú"}
    assert datetime.fromisoformat(payload["created_at"]) <= timezone.now()
    # a wrong secret, or a body changed on the way, does not verify
    assert not signature_valid("whsec_other", request.headers, request.raw)
    assert not signature_valid(receiver.secret, request.headers, request.raw.replace(b"7", b"8"))
    # and the delivery and its endpoint keep the record
    assert delivery.status == D.DELIVERED and delivery.attempts == 1 and delivery.delivered_at is not None
    assert delivery.last_status_code == 200 and delivery.next_attempt_at is None
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.consecutive_failures == 0
    assert WebhookAttempt.objects.get(delivery=delivery).status_code == 200


def test_the_secret_is_stored_encrypted_and_never_in_the_body(tienda, receiver):
    endpoint = endpoint_for(tienda, receiver)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"number": 1})

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM crm_webhookendpoint WHERE id = %s", [endpoint.pk])
        (stored,) = cursor.fetchone()
    assert stored.startswith("enc:v1:") and receiver.secret not in stored
    assert receiver.secret.startswith("whsec_") and receiver.secret not in WebhookDelivery.objects.get().body
    assert str(endpoint.secret) != receiver.secret  # printed, the secret is masked
    assert delivery_id


def test_an_event_of_a_rolled_back_change_is_never_written_nor_queued(
    tienda, receiver, django_capture_on_commit_callbacks
):
    endpoint_for(tienda, receiver)

    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(Boom):
            with transaction.atomic():
                webhook_events_emit(client_id=tienda.pk, type=E.CONVERSATION_RESOLVED, data={"conversation": 1})
                raise Boom

    assert callbacks == []
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_committed_changes_only(receiver, settings):
    # given the webhooks worker running, and a conversation of a client with an endpoint
    client = ClientFactory(name="Tienda", slug="tienda-worker")
    endpoint_for(client, receiver, events=[E.CONVERSATION_RESOLVED])
    staff = UserFactory(username="staff-worker")
    kept = ConversationFactory(client=client, status=Conversation.Status.OPEN)
    undone = ConversationFactory(client=client, status=Conversation.Status.OPEN)
    worker = start_celery_worker(project_env(), queues="webhooks", name="webhooks")
    try:
        # when one resolution is rolled back and another commits
        with pytest.raises(Boom):
            with transaction.atomic():
                conversation_resolve(conversation=undone, by=staff, supervising=True)
                raise Boom
        conversation_resolve(conversation=kept, by=staff, supervising=True)

        # then only the committed one reaches the receiver, signed
        received = receiver.wait_for(1, timeout=45)
        time.sleep(1.0)
        received = receiver.received
    finally:
        stop_processes([worker])
    assert len(received) == 1, received
    assert received[0].verified
    data = json.loads(received[0].raw)["data"]
    assert data["conversation"] == kept.pk and data["by"]["id"] == staff.pk
    assert WebhookDelivery.objects.get().status == D.DELIVERED


# --- retries, backoff, give-up, timeouts ---------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_backoff_and_the_same_event_id_until_it_succeeds(
    tienda, receiver, settings, django_capture_on_commit_callbacks
):
    settings.EVENT_WEBHOOK_BACKOFF_BASE = 10
    endpoint = endpoint_for(tienda, receiver)
    receiver.answer_next(500, 503)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_STATUS, data={"message": 1})

    # first attempt: 500, next one 5-15 s later (10 s x 0.5-1.5), queued with that countdown
    before = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        assert webhook_delivery_send(delivery_id=delivery_id) == "retry"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == D.PENDING and delivery.attempts == 1 and delivery.last_status_code == 500
    assert delivery.last_error.startswith("HTTP 500") and "receiver says no" in delivery.last_error
    first_wait = (delivery.next_attempt_at - before).total_seconds()
    assert 5 - 1 <= first_wait <= 15 + 1
    assert len(callbacks) == 1

    # not due yet: a second task (or the sweeper) sends nothing
    assert webhook_delivery_send(delivery_id=delivery_id) == "skipped"
    assert len(receiver.received) == 1

    # second attempt: 503, next one 10-30 s later
    make_due(delivery)
    before = timezone.now()
    assert webhook_delivery_send(delivery_id=delivery_id) == "retry"
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert 10 - 1 <= (delivery.next_attempt_at - before).total_seconds() <= 30 + 1

    # third attempt: delivered
    make_due(delivery)
    assert webhook_delivery_send(delivery_id=delivery_id) == "delivered"
    delivery.refresh_from_db()
    assert delivery.status == D.DELIVERED and delivery.attempts == 3

    received = receiver.received
    assert [r.status for r in received] == [500, 503, 200]
    assert {r.event_id for r in received} == {str(delivery.event_id)}  # the receiver deduplicates on it
    assert len({r.raw for r in received}) == 1 and all(r.verified for r in received)
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500, 503, 200]
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0 and endpoint.last_failure_at is not None

    # delivered is final: nothing sends it again except staff
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    assert webhook_delivery_send(delivery_id=delivery_id) == "skipped"
    assert len(receiver.received) == 3


def test_backoff_doubles_up_to_an_hour_with_jitter_between_half_and_one_and_a_half(settings):
    settings.EVENT_WEBHOOK_BACKOFF_BASE = 10
    for attempts in range(1, 15):
        base = min(10 * 2 ** (attempts - 1), BACKOFF_MAX)
        waits = [webhook_backoff(attempts) for _ in range(200)]
        assert all(0.5 * base <= w <= 1.5 * base for w in waits), attempts
        assert max(waits) - min(waits) > 0.3 * base  # really jittered, not a fixed delay


def test_a_delivery_that_keeps_failing_is_given_up_after_the_window(tienda, receiver, settings, monkeypatch):
    # given a 100 s window and waits of 10, 20, 40, 80, 160 s (jitter pinned to 1)
    settings.EVENT_WEBHOOK_BACKOFF_BASE = 10
    settings.EVENT_WEBHOOK_GIVE_UP_AFTER = 100
    monkeypatch.setattr("crm.webhooks.random.uniform", lambda low, high: 1.0)
    endpoint = endpoint_for(tienda, receiver)
    receiver.answer_next(*[500] * 10)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"number": 1})
    delivery = WebhookDelivery.objects.get(pk=delivery_id)

    outcomes = []
    for _ in range(5):
        make_due(delivery)
        outcomes.append(webhook_delivery_send(delivery_id=delivery_id))

    # then four retries fit in the window; the fifth would be 160 s away, beyond it: given up
    assert outcomes == ["retry", "retry", "retry", "retry", "failed"]
    delivery.refresh_from_db()
    assert delivery.status == D.FAILED and delivery.attempts == 5 and delivery.next_attempt_at is None
    assert delivery.last_status_code == 500
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 5 and endpoint.last_failure_at is not None
    # and nothing sends it again, not even the sweeper
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert webhook_deliveries_sweep() == {"queued": 0, "pruned": 0}
    assert webhook_delivery_send(delivery_id=delivery_id) == "skipped"
    assert len(receiver.received) == 5


def test_a_slow_receiver_counts_as_a_failure_after_the_timeout_without_hanging(tienda, receiver, settings):
    settings.EVENT_WEBHOOK_TIMEOUT = 0.5
    endpoint_for(tienda, receiver)
    receiver.slow_next(seconds=5)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"message": 1})

    started = time.monotonic()
    outcome = webhook_delivery_send(delivery_id=delivery_id)
    elapsed = time.monotonic() - started

    assert outcome == "retry" and elapsed < 2.5
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == D.PENDING and delivery.last_status_code is None
    assert delivery.last_error == "no answer within 0.5 s"
    (attempt,) = delivery.attempt_log.all()
    assert attempt.status_code is None and 400 <= attempt.duration_ms < 2500


def test_an_unreachable_receiver_is_a_failure_too(tienda):
    endpoint, _secret = webhook_endpoint_create(
        client=tienda, url=f"http://127.0.0.1:{free_port()}/hook", events=[E.SESSION_STATE]
    )
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"number": 1})

    assert webhook_delivery_send(delivery_id=delivery_id) == "retry"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.last_error.startswith("ConnectError") and delivery.attempts == 1


def test_a_redirect_is_not_followed(tienda, receiver):
    from tests.fakes.http_fake import Reply, Script

    endpoint_for(tienda, receiver)
    receiver._queue(Script(reply=Reply(302, b"", {"Location": f"{receiver.url}/elsewhere"})))
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"number": 1})

    assert webhook_delivery_send(delivery_id=delivery_id) == "retry"
    assert WebhookDelivery.objects.get(pk=delivery_id).last_status_code == 302
    assert [r.path for r in receiver.requests] == ["/hooks/crm"]


def test_one_send_at_a_time_a_delivery_being_sent_is_skipped(tienda, receiver):
    endpoint_for(tienda, receiver)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"number": 1})
    # another worker claimed it a moment ago
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=D.SENDING, next_attempt_at=timezone.now() + timedelta(seconds=30)
    )

    assert webhook_delivery_send(delivery_id=delivery_id) == "skipped"
    assert receiver.received == []

    # ... and was killed: once its claim lapses, the delivery goes out again
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhook_delivery_send(delivery_id=delivery_id) == "delivered"


def test_the_sweeper_queues_overdue_and_abandoned_deliveries_only(tienda, receiver, django_capture_on_commit_callbacks):
    endpoint_for(tienda, receiver)
    ids = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    ids += webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 2})
    ids += webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 3})
    ids += webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 4})
    overdue, abandoned, future, delivered = ids
    long_ago = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=overdue).update(next_attempt_at=long_ago)
    WebhookDelivery.objects.filter(pk=abandoned).update(status=D.SENDING, next_attempt_at=long_ago)
    WebhookDelivery.objects.filter(pk=future).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    WebhookDelivery.objects.filter(pk=delivered).update(status=D.DELIVERED, next_attempt_at=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_deliveries_sweep() == {"queued": 2, "pruned": 0}

    assert sorted(queued_deliveries()) == sorted([overdue, abandoned])


def queued_deliveries() -> list[int]:
    """The delivery ids waiting in the broker (Redis, queue "webhooks")."""
    found = []
    for raw in redis_connection().lrange("webhooks", 0, -1):
        envelope = json.loads(raw)
        if envelope["headers"]["task"] == "crm.tasks.webhook_delivery_send_task":
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            found.append(args[0])
    return found


def test_one_endpoint_never_has_more_than_two_sends_in_flight(tienda, receiver):
    # given a receiver that hangs: two of its deliveries are being sent right now
    endpoint_for(tienda, receiver)
    ids = [webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": n})[0] for n in range(3)]
    WebhookDelivery.objects.filter(pk__in=ids[:2]).update(
        status=D.SENDING, next_attempt_at=timezone.now() + timedelta(seconds=30)
    )

    # when a third is due, it waits a few seconds (no attempt spent) instead of taking another thread
    assert webhook_delivery_send(delivery_id=ids[2]) == "busy"
    waiting = WebhookDelivery.objects.get(pk=ids[2])
    assert waiting.status == D.PENDING and waiting.attempts == 0 and waiting.next_attempt_at > timezone.now()
    assert receiver.received == []


def test_the_sweeper_takes_at_most_twenty_of_one_endpoint_per_pass(
    tienda, receiver, django_capture_on_commit_callbacks
):
    busy = endpoint_for(tienda, receiver)
    other = endpoint_for(tienda, receiver)
    long_ago = timezone.now() - timedelta(minutes=5)
    for n in range(25):
        webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": n})
    WebhookDelivery.objects.update(next_attempt_at=long_ago)
    WebhookDelivery.objects.filter(endpoint=other).update(next_attempt_at=long_ago + timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_deliveries_sweep()["queued"] == 40

    queued = WebhookDelivery.objects.filter(pk__in=queued_deliveries())
    assert queued.filter(endpoint=busy).count() == 20 and queued.filter(endpoint=other).count() == 20


def test_old_finished_deliveries_are_pruned_with_their_attempts(tienda, receiver, settings):
    settings.EVENT_WEBHOOK_RETENTION_DAYS = 30
    endpoint_for(tienda, receiver)
    old, recent, pending = (
        webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": n})[0] for n in range(3)
    )
    assert webhook_delivery_send(delivery_id=old) == "delivered"
    WebhookDelivery.objects.filter(pk=old).update(updated_at=timezone.now() - timedelta(days=31))
    WebhookDelivery.objects.filter(pk=recent).update(status=D.DELIVERED)
    WebhookDelivery.objects.filter(pk=pending).update(updated_at=timezone.now() - timedelta(days=40))

    assert webhook_deliveries_sweep()["pruned"] == 1

    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {recent, pending}
    assert not WebhookAttempt.objects.filter(delivery_id=old).exists()


def test_private_addresses_are_refused_unless_the_operator_allows_them(client, staff, tienda, receiver, settings):
    # given the production default
    endpoint = endpoint_for(tienda, receiver)
    settings.EVENT_WEBHOOK_ALLOW_PRIVATE = False
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})

    # a delivery to 127.0.0.1 is not sent, and says why
    assert webhook_delivery_send(delivery_id=delivery_id) == "retry"
    assert receiver.received == []
    assert "private or local address (127.0.0.1)" in WebhookDelivery.objects.get(pk=delivery_id).last_error
    # and admin refuses such an endpoint (the cloud's metadata service here) with the reason
    client.force_login(staff)
    response = client.post(
        "/admin/crm/webhookendpoint/add/",
        {
            "client": tienda.pk,
            "url": "http://169.254.169.254/latest/",
            "description": "x",
            "events": ["message.received"],
        },
    )
    assert response.status_code == 200 and "private or local address" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 1 and endpoint.pk


def test_an_inactive_endpoint_gets_no_new_events_and_its_pending_deliveries_are_not_sent(tienda, receiver):
    endpoint = endpoint_for(tienda, receiver)
    (pending,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})

    webhook_endpoint_update(
        endpoint=endpoint, url=endpoint.url, events=endpoint.events, description="", is_active=False
    )

    assert webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 2}) == []
    assert webhook_delivery_send(delivery_id=pending) == "failed"
    assert WebhookDelivery.objects.get(pk=pending).last_error == "The endpoint is inactive."
    assert receiver.received == []


# --- who gets what -------------------------------------------------------------------------------------------


def test_a_client_without_endpoints_gets_no_deliveries_and_emitting_costs_no_query_once_known(
    tienda, django_assert_num_queries
):
    assert webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"message": 1}) == []

    with django_assert_num_queries(0):  # remembered in Redis: the inbound path pays one Redis read
        assert webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"message": 2}) == []
    assert not WebhookDelivery.objects.exists()


def test_a_new_endpoint_receives_events_at_once_despite_the_memo(tienda, receiver):
    assert webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1}) == []  # memo: none

    endpoint = endpoint_for(tienda, receiver, events=[E.SESSION_STATE])

    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 2})
    assert WebhookDelivery.objects.get(pk=delivery_id).endpoint == endpoint


def test_events_go_only_to_the_clients_endpoints_subscribed_to_them(tienda, ventas, receiver):
    mine = endpoint_for(tienda, receiver, events=[E.MESSAGE_RECEIVED, E.SESSION_STATE])
    statuses_only = endpoint_for(tienda, receiver, events=[E.MESSAGE_STATUS])
    theirs = endpoint_for(ventas, receiver)

    webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"message": 1})
    webhook_events_emit(client_id=tienda.pk, type=E.CAMPAIGN_PROGRESS, data={"campaign": 1})

    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.endpoint == mine and delivery.event_type == E.MESSAGE_RECEIVED
    assert not statuses_only.deliveries.exists() and not theirs.deliveries.exists()


def test_one_event_to_two_endpoints_has_one_id(tienda, receiver):
    first = endpoint_for(tienda, receiver)
    second = endpoint_for(tienda, receiver)

    webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})

    deliveries = list(WebhookDelivery.objects.order_by("endpoint_id"))
    assert [d.endpoint for d in deliveries] == [first, second]
    assert deliveries[0].event_id == deliveries[1].event_id and deliveries[0].body == deliveries[1].body


# --- emission from the services ------------------------------------------------------------------------------


@pytest.fixture
def line(tienda):
    queue = QueueFactory(client=tienda, name="Soporte")
    return WhatsAppNumberFactory(client=tienda, queue=queue, alias="Linea 1")


def inbound(number, wamid: str, text: str, wa_id: str = "51987654321", name: str = "Rosa") -> InboundMessage:
    return InboundMessage(
        phone_number_id=number.phone_number_id,
        display_phone_number=number.display_number,
        provider_message_id=wamid,
        sender=InboundSender(wa_id=wa_id, bsuid=None, name=name, username=None),
        timestamp=datetime(2026, 11, 30, 15, 0, tzinfo=UTC),
        kind="text",
        body=text,
        media=None,
        quoted_provider_id=None,
        error_code="",
        error_reason="",
        raw={},
    )


def deliveries_of(kind: str) -> list[dict]:
    return [body_of(d) for d in WebhookDelivery.objects.filter(event_type=kind).order_by("pk")]


def test_a_stored_inbound_message_emits_message_received_once(tienda, line, receiver):
    endpoint_for(tienda, receiver)

    result = inbound_message_receive(number=line, message=inbound(line, "wamid.w1", "Hola, ¿tienen stock?"))
    inbound_message_receive(number=line, message=inbound(line, "wamid.w1", "Hola, ¿tienen stock?"))  # duplicate

    (payload,) = deliveries_of(E.MESSAGE_RECEIVED)
    message = result.message
    assert payload["client"] == tienda.pk
    assert payload["data"] == {
        "message": message.pk,
        "conversation": message.conversation_id,
        "conversation_action": "created",
        "number": line.pk,
        "contact": {"id": message.conversation.contact_id, "name": "Rosa", "phone": "+51987654321"},
        "kind": "text",
        "body": "Hola, ¿tienen stock?",
        "media": None,
        "timestamp": "2026-11-30T15:00:00Z",
    }


def test_assignment_emits_conversation_assigned(tienda, line, receiver):
    endpoint_for(tienda, receiver, events=[E.CONVERSATION_ASSIGNED])
    ana = UserFactory(username="ana", first_name="Ana", last_name="Soto")
    conversation = ConversationFactory(client=tienda, number=line, queue=line.queue)

    conversation_assign(conversation=conversation, user_id=ana.pk, reason="taken")

    (payload,) = deliveries_of(E.CONVERSATION_ASSIGNED)
    assert payload["data"] == {
        "conversation": conversation.pk,
        "queue": line.queue_id,
        "agent": {"id": ana.pk, "username": "ana", "name": "Ana Soto"},
        "previous_agent": None,
        "reason": "taken",
        "by": None,
        "number": line.pk,
        "contact": conversation.contact_id,
    }


def test_inbound_routing_to_an_agent_emits_both_events(tienda, line, receiver):
    endpoint_for(tienda, receiver)
    ana = UserFactory(username="ana")
    ClientMembershipFactory(user=ana, client=tienda)
    QueueMembershipFactory(queue=line.queue, user=ana, capacity=5)
    agent_availability_set(user=ana, status=AgentAvailability.Status.ONLINE)

    inbound_message_receive(number=line, message=inbound(line, "wamid.w2", "Hola"))

    assert deliveries_of(E.CONVERSATION_ASSIGNED)[0]["data"]["agent"]["id"] == ana.pk
    assert len(deliveries_of(E.MESSAGE_RECEIVED)) == 1


def test_resolving_emits_conversation_resolved(tienda, line, receiver):
    endpoint_for(tienda, receiver, events=[E.CONVERSATION_RESOLVED])
    staff = UserFactory(username="sofia", first_name="Sofía")
    conversation = ConversationFactory(client=tienda, number=line, queue=line.queue, status=Conversation.Status.OPEN)

    conversation_resolve(conversation=conversation, by=staff, supervising=True)
    conversation_resolve(conversation=conversation, by=staff, supervising=True)  # already resolved: no event

    (payload,) = deliveries_of(E.CONVERSATION_RESOLVED)
    conversation.refresh_from_db()
    assert payload["data"]["conversation"] == conversation.pk
    assert payload["data"]["by"] == {"id": staff.pk, "username": "sofia", "name": "Sofía"}
    resolved_at = datetime.fromisoformat(payload["data"]["resolved_at"])
    assert abs(resolved_at - conversation.resolved_at) < timedelta(milliseconds=1)


def outbound_message(conversation, wamid: str) -> Message:
    return MessageFactory(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.ACCEPTED,
        provider_message_id=wamid,
    )


def status_update(number, wamid: str, status: str, **extra) -> StatusUpdate:
    return StatusUpdate(
        phone_number_id=number.phone_number_id,
        provider_message_id=wamid,
        status=status,
        timestamp=datetime(2026, 11, 30, 15, 1, tzinfo=UTC),
        recipient_wa_id="51987654321",
        recipient_bsuid=None,
        error_code=extra.get("error_code", ""),
        error_reason=extra.get("error_reason", ""),
        raw={},
    )


def test_status_moves_emit_message_status_on_the_single_and_the_batch_path(tienda, line, receiver):
    endpoint_for(tienda, receiver, events=[E.MESSAGE_STATUS])
    conversation = ConversationFactory(client=tienda, number=line, contact=ContactFactory(client=tienda))
    first = outbound_message(conversation, "wamid.o1")
    second = outbound_message(conversation, "wamid.o2")

    # single path: delivered, then a stale "sent" (no move, no event)
    message_status_apply(number=line, update=status_update(line, "wamid.o1", "delivered"))
    message_status_apply(number=line, update=status_update(line, "wamid.o1", "sent"))
    # batch path: read for the first, failed for the second
    message_statuses_apply(
        number=line,
        updates=[
            status_update(line, "wamid.o1", "read"),
            status_update(line, "wamid.o2", "failed", error_code="131026", error_reason="Message undeliverable"),
        ],
    )

    events = [p["data"] for p in deliveries_of(E.MESSAGE_STATUS)]
    assert [(e["message"], e["status"]) for e in events] == [
        (first.pk, "delivered"),
        (first.pk, "read"),
        (second.pk, "failed"),
    ]
    assert events[2] == {
        "message": second.pk,
        "conversation": conversation.pk,
        "number": line.pk,
        "status": "failed",
        "status_at": "2026-11-30T15:01:00Z",
        "error_code": "131026",
        "error_reason": "Message undeliverable",
    }


def test_session_transitions_emit_session_state(tienda, receiver):
    endpoint_for(tienda, receiver, events=[E.SESSION_STATE])
    number = WhatsAppNumberFactory(client=tienda, alias="Web 1", engine="sandbox", access_token="")

    session_state_set(number_id=number.pk, state=SessionState.CONNECTING, reason="Connecting")
    session_state_set(number_id=number.pk, state=SessionState.CONNECTING, reason="Connecting", owner="w1")  # same
    session_state_set(number_id=number.pk, state=SessionState.CONNECTED, reason="Connected")

    events = [p["data"] for p in deliveries_of(E.SESSION_STATE)]
    assert [(e["previous_state"], e["state"]) for e in events] == [
        ("disconnected", "connecting"),
        ("connecting", "connected"),
    ]
    assert events[1]["number"] == number.pk and events[1]["alias"] == "Web 1" and events[1]["reason"] == "Connected"
    assert "qr_code" not in events[1] and "pairing_code" not in events[1]
    assert NumberSession.objects.get(number=number).state == SessionState.CONNECTED


def test_campaign_progress_is_throttled_except_for_status_changes(tienda, receiver, settings):
    settings.EVENT_WEBHOOK_PROGRESS_EVERY = 10
    endpoint_for(tienda, receiver, events=[E.CAMPAIGN_PROGRESS])
    campaign = CampaignFactory(client=tienda, status=Campaign.Status.RUNNING)

    for _ in range(3):  # a dispatcher reporting every second
        campaign_progress_publish(campaign)
    campaign.status = Campaign.Status.PAUSED
    campaign_progress_publish(campaign)  # a status change always goes
    campaign_progress_publish(campaign)

    events = [p["data"] for p in deliveries_of(E.CAMPAIGN_PROGRESS)]
    assert [e["status"] for e in events] == ["running", "paused"]
    assert events[0]["campaign"] == campaign.pk and events[0]["name"] == campaign.name
    assert {"total", "done", "left", "percent", "counts"} <= set(events[0])

    settings.EVENT_WEBHOOK_PROGRESS_EVERY = 0  # unthrottled
    campaign_progress_publish(campaign)
    assert len(deliveries_of(E.CAMPAIGN_PROGRESS)) == 3


# --- admin ---------------------------------------------------------------------------------------------------


@pytest.fixture
def staff(tienda):
    user = UserFactory(username="staff", is_staff=True)
    user.groups.add(Group.objects.get(name=STAFF))
    ClientMembership.objects.create(user=user, client=tienda)
    return user


def test_staff_create_an_endpoint_in_admin_and_see_its_secret_once(client, staff, tienda, receiver):
    client.force_login(staff)

    response = client.post(
        "/admin/crm/webhookendpoint/add/",
        {
            "client": tienda.pk,
            "url": f"{receiver.url}/hooks/crm",
            "description": "n8n",
            "events": [E.MESSAGE_RECEIVED, E.CONVERSATION_RESOLVED],
            "is_active": "on",
        },
        follow=True,
    )

    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    secret = response.content.decode().split('class="webhook-secret">')[1].split("<")[0]
    assert secret == endpoint.secret.reveal() and secret.startswith("whsec_")
    assert endpoint.created_by == staff and endpoint.events == [E.CONVERSATION_RESOLVED, E.MESSAGE_RECEIVED]
    page = client.get(f"/admin/crm/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert secret not in page and endpoint.secret.masked() in page

    # "Rotate secret" shows the new one, once; the old one no longer signs
    response = client.post(
        "/admin/crm/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
        follow=True,
    )
    rotated = response.content.decode().split('class="webhook-secret">')[1].split("<")[0]
    endpoint.refresh_from_db()
    assert rotated == endpoint.secret.reveal() != secret


def test_admin_rejects_a_url_that_is_not_http(client, staff, tienda):
    client.force_login(staff)

    response = client.post(
        "/admin/crm/webhookendpoint/add/",
        {"client": tienda.pk, "url": "ftp://example.test/x", "events": [E.MESSAGE_RECEIVED], "is_active": "on"},
    )

    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()
    assert "http:// or https://" in response.content.decode()


def test_send_a_test_event_from_admin_reaches_the_receiver_signed(client, staff, tienda, receiver):
    endpoint = endpoint_for(tienda, receiver, events=[E.SESSION_STATE])
    client.force_login(staff)

    client.post("/admin/crm/webhookendpoint/", {"action": "send_test_event", "_selected_action": [endpoint.pk]})

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "ping"
    assert webhook_delivery_send(delivery_id=delivery.pk) == "delivered"
    (request,) = receiver.received
    assert request.verified and request.headers["x-webhook-event"] == "ping"


def test_send_again_from_admin_requeues_a_failed_delivery(
    client, staff, tienda, receiver, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(tienda, receiver)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=D.FAILED, attempts=30, next_attempt_at=None)
    client.force_login(staff)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            "/admin/crm/webhookdelivery/", {"action": "send_again", "_selected_action": [delivery_id]}
        )

    assert response.status_code == 302 and len(callbacks) == 1
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == D.PENDING and delivery.attempts == 0
    assert delivery.next_attempt_at <= timezone.now()
    assert delivery.give_up_at > timezone.now() + timedelta(hours=23)
    assert webhook_delivery_send(delivery_id=delivery_id) == "delivered"
    # the delivery page lists its attempts
    page = client.get(f"/admin/crm/webhookdelivery/{delivery_id}/change/").content.decode()
    assert "attempts" in page.lower() and str(delivery.event_id) in page and endpoint.url in page


def test_staff_see_only_their_clients_endpoints_and_deliveries(client, staff, tienda, ventas, receiver):
    endpoint_for(tienda, receiver, description="Tienda ERP")
    endpoint_for(ventas, receiver, description="Ventas ERP")
    webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    webhook_events_emit(client_id=ventas.pk, type=E.SESSION_STATE, data={"n": 2})
    client.force_login(staff)

    endpoints = client.get("/admin/crm/webhookendpoint/").content.decode()
    deliveries = client.get("/admin/crm/webhookdelivery/").content.decode()
    theirs = WebhookDelivery.objects.get(endpoint__client=ventas)
    search = client.get("/admin/crm/webhookdelivery/", {"q": str(theirs.event_id)}).content.decode()

    assert "Tienda ERP" in endpoints and "Ventas ERP" not in endpoints
    assert "Tienda ERP" in deliveries and "Ventas ERP" not in deliveries
    assert "0 results" in search
    assert client.get(f"/admin/crm/webhookdelivery/{theirs.pk}/change/").status_code == 302  # not found for them
    assert client.get("/admin/crm/webhookdelivery/", {"q": "not-a-uuid"}).status_code == 200


def test_an_event_id_is_a_uuid(tienda, receiver):
    endpoint_for(tienda, receiver)
    webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    assert uuid.UUID(body_of(WebhookDelivery.objects.get())["id"]).version == 4


def test_staff_edit_and_delete_an_endpoint_in_admin_and_emitters_notice_at_once(client, staff, tienda, receiver):
    endpoint = endpoint_for(tienda, receiver, events=[E.SESSION_STATE])
    webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    assert webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"n": 1}) == []  # remembered
    client.force_login(staff)

    # editing: now it wants received messages, at a new URL
    response = client.post(
        f"/admin/crm/webhookendpoint/{endpoint.pk}/change/",
        {
            "client": tienda.pk,
            "url": f"{receiver.url}/v2",
            "description": "ERP",
            "events": [E.MESSAGE_RECEIVED],
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url.endswith("/v2") and endpoint.events == [E.MESSAGE_RECEIVED]
    assert len(webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"n": 2})) == 1

    # deleting takes its deliveries along, and emitters stop writing for it
    response = client.post(f"/admin/crm/webhookendpoint/{endpoint.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert webhook_events_emit(client_id=tienda.pk, type=E.MESSAGE_RECEIVED, data={"n": 3}) == []


def test_a_secret_that_cannot_be_decrypted_fails_the_delivery_instead_of_looping(tienda, receiver):
    endpoint = endpoint_for(tienda, receiver)
    (delivery_id,) = webhook_events_emit(client_id=tienda.pk, type=E.SESSION_STATE, data={"n": 1})
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="enc:v1:not-a-fernet-token")

    assert webhook_delivery_send(delivery_id=delivery_id) == "failed"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == D.FAILED and "cannot be decrypted" in delivery.last_error
    assert receiver.received == []
