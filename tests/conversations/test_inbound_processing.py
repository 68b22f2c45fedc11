"""Processing stored webhook events: every message stored once, contacts merged, statuses forward only,
conversations routed and assigned by policy, live events after commit."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from conversations.models import Contact, Conversation, Message, UnmatchedStatus, WebhookEvent
from conversations.services import unmatched_statuses_sweep, webhook_event_process
from crm.events import live_events_of, queue_group
from queues.models import AgentAvailability
from queues.services import agent_availability_set
from tests.conversations import meta_payloads as meta
from tests.conversations.factories import ConversationFactory
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db
PNID = meta.PHONE_NUMBER_ID
ANA = meta.CUSTOMER_WA_ID


def agent(queue, name: str, *, online: bool = True, capacity: int = 5):
    user = UserFactory(username=name)
    ClientMembershipFactory(user=user, client=queue.client)
    QueueMembershipFactory(queue=queue, user=user, capacity=capacity)
    if online:
        agent_availability_set(user=user, status=AgentAvailability.Status.ONLINE)
    return user


def process(*messages, statuses=(), contacts=None, phone_number_id=PNID) -> WebhookEvent:
    changes = []
    if messages:
        contacts = contacts if contacts is not None else [meta.contact(ANA, "Ana")]
        changes.append(meta.messages_change(phone_number_id, messages=list(messages), contacts=contacts))
    if statuses:
        changes.append(meta.statuses_change(phone_number_id, statuses=list(statuses)))
    event = WebhookEvent.objects.create(body=meta.webhook(*changes), phone_number_ids=[phone_number_id])
    return webhook_event_process(event_id=event.pk)


MESSAGE_TYPES = [
    (meta.text_message("wamid.t", ANA, "Hola"), "text", "Hola"),
    (meta.image_message("wamid.i", ANA, media_id="MEDIA1", caption="Foto del pedido"), "image", "Foto del pedido"),
    (meta.video_message("wamid.v", ANA, media_id="MEDIA2"), "video", ""),
    (meta.audio_message("wamid.a", ANA, media_id="MEDIA3"), "audio", ""),
    (meta.audio_message("wamid.vo", ANA, media_id="MEDIA4", voice=True), "voice", ""),
    (meta.document_message("wamid.d", ANA, media_id="MEDIA5", filename="factura.pdf"), "document", "factura.pdf"),
    (meta.sticker_message("wamid.s", ANA, media_id="MEDIA6"), "sticker", ""),
    (meta.location_message("wamid.l", ANA, -12.05, -77.04, name="Tienda"), "location", "Tienda"),
    (meta.contacts_message("wamid.c", ANA, [meta.contact_card("Luis", "+51 987 654 321")]), "contacts", "Luis"),
    (meta.interactive_button_reply("wamid.ib", ANA, "yes", "Sí, confirmo"), "interactive", "Sí, confirmo"),
    (meta.interactive_list_reply("wamid.il", ANA, "p1", "Plan básico"), "interactive", "Plan básico"),
    (meta.button_reply("wamid.b", ANA, "Ver catálogo", "CATALOG"), "button", "Ver catálogo"),
    (meta.reaction_message("wamid.r", ANA, "wamid.t0", "👍"), "reaction", "👍"),
    (meta.reaction_message("wamid.r0", ANA, "wamid.t0", None), "reaction", "Removed"),
    (meta.order_message("wamid.o", ANA, [meta.product_item("SKU1", 2, 75.0, "PEN")]), "order", "Order"),
    (meta.unsupported_message("wamid.u", ANA, inner_type="poll"), "unsupported", "Unsupported"),
    (meta.text_message("wamid.ad", ANA, "Info", referral=meta.ad_referral("Promo verano")), "text", "Promo verano"),
]


@pytest.mark.parametrize(
    "raw, kind, text", MESSAGE_TYPES, ids=[m[0]["id"].removeprefix("wamid.") + "-" + m[1] for m in MESSAGE_TYPES]
)
def test_every_message_type_is_stored_with_a_readable_body_and_its_payload(number, raw, kind, text):
    event = process(raw)

    assert event.status == WebhookEvent.Status.PROCESSED, event.error
    message = Message.objects.get(provider_message_id=raw["id"])
    assert message.kind == kind
    assert text in message.body
    assert message.payload == raw
    assert message.direction == Message.Direction.INBOUND and message.status == Message.Status.RECEIVED
    if kind in ("image", "video", "audio", "voice", "document", "sticker"):
        assert message.media_id.startswith("MEDIA") and message.media_mime_type


def test_duplicates_are_stored_once(number):
    raw = meta.text_message("wamid.dup", ANA, "Hola")

    process(raw)
    second = process(raw, raw)

    assert Message.objects.filter(provider_message_id="wamid.dup").count() == 1
    assert second.report["messages_duplicate"] == 2 and second.status == WebhookEvent.Status.PROCESSED


def test_a_reply_keeps_its_link_to_the_quoted_message(number):
    process(meta.text_message("wamid.q1", ANA, "¿Precio?"))

    process(meta.text_message("wamid.q2", ANA, "¿y envío?", context=meta.reply_context("wamid.q1")))

    reply = Message.objects.get(provider_message_id="wamid.q2")
    assert reply.quoted == Message.objects.get(provider_message_id="wamid.q1")
    assert reply.quoted_provider_message_id == "wamid.q1"


def test_a_poison_item_fails_alone_and_the_event_says_why(number):
    bad = meta.text_message("wamid.bad", "12", "x")  # neither a possible phone number nor a BSUID

    event = process(meta.text_message("wamid.ok", ANA, "Hola"), bad, contacts=[meta.contact(ANA, "Ana")])

    assert Message.objects.filter(provider_message_id="wamid.ok").exists()
    assert not Message.objects.filter(provider_message_id="wamid.bad").exists()
    assert event.status == WebhookEvent.Status.FAILED
    assert "message wamid.bad: InboundRejected" in event.error


def test_an_unknown_number_is_reported_and_its_event_can_be_reprocessed_once_known(default_client):
    event = process(meta.text_message("wamid.x", ANA, "Hola"), phone_number_id="777000")

    assert event.status == WebhookEvent.Status.FAILED
    assert event.error.startswith("unknown phone_number_id 777000")
    assert not Message.objects.exists()

    WhatsAppNumberFactory(client=default_client, phone_number_id="777000")
    event = webhook_event_process(event_id=event.pk, force=True)

    assert event.status == WebhookEvent.Status.PROCESSED
    assert Message.objects.filter(provider_message_id="wamid.x").exists()


def test_national_variants_of_a_number_are_one_contact(number):
    process(meta.text_message("wamid.mx1", "5215512345678", "Hola"), contacts=[meta.contact("5215512345678", "Luz")])
    process(meta.text_message("wamid.mx2", "525512345678", "Sigo"), contacts=[meta.contact("525512345678", "Luz")])

    contact = Contact.objects.get()
    assert contact.phone == "+525512345678"
    assert Conversation.objects.get().messages.count() == 2


def test_a_bsuid_only_sender_becomes_a_contact(number):
    raw = meta.text_message("wamid.b1", None, "Hola", from_user_id=meta.CUSTOMER_BSUID)

    process(raw, contacts=[meta.contact(None, "Anon", user_id=meta.CUSTOMER_BSUID)])

    contact = Contact.objects.get()
    assert (contact.phone, contact.bsuid, contact.name) == ("", meta.CUSTOMER_BSUID, "Anon")


# --- statuses -------------------------------------------------------------------------------------------------


def outbound(number, wamid: str, status=Message.Status.ACCEPTED) -> Message:
    conversation = ConversationFactory(client=number.client, number=number, queue=number.queue)
    return Message.objects.create(
        conversation=conversation,
        number=number,
        direction=Message.Direction.OUTBOUND,
        body="Gracias",
        provider_message_id=wamid,
        status=status,
    )


def test_statuses_never_move_backwards(number):
    message = outbound(number, "wamid.out1")

    process(statuses=[meta.status("wamid.out1", "read", ANA), meta.status("wamid.out1", "delivered", ANA)])
    process(statuses=[meta.status("wamid.out1", "sent", ANA)])

    message.refresh_from_db()
    assert message.status == Message.Status.READ


def test_a_failed_status_keeps_code_and_reason(number):
    message = outbound(number, "wamid.out2")
    failed = meta.status("wamid.out2", "failed", ANA, errors=[meta.error(131026, "Message undeliverable", "x")])

    process(statuses=[failed])

    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.FAILED, "131026")
    assert "undeliverable" in message.error_reason.lower()


def test_a_status_before_its_message_is_kept_and_applied_later(number):
    event = process(statuses=[meta.status("wamid.early", "delivered", ANA)])
    assert event.report["statuses_unmatched"] == 1 and UnmatchedStatus.objects.count() == 1

    message = outbound(number, "wamid.early")
    assert unmatched_statuses_sweep() == {"applied": 1, "expired": 0}

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED and not UnmatchedStatus.objects.exists()


def test_a_status_before_its_message_delivered_again_or_processed_twice_is_kept_once(number):
    # found by make chaos: an event requeued while a worker still processed it kept its statuses twice
    first = process(statuses=[meta.status("wamid.early", "delivered", ANA), meta.status("wamid.early", "read", ANA)])
    webhook_event_process(event_id=first.pk, force=True)
    process(statuses=[meta.status("wamid.early", "delivered", ANA)])

    assert sorted(UnmatchedStatus.objects.values_list("status", flat=True)) == ["delivered", "read"]


# --- routing, assignment, reopening ---------------------------------------------------------------------------


def test_a_new_conversation_goes_to_the_least_loaded_online_agent(number, queue):
    busy, free = agent(queue, "busy"), agent(queue, "free")
    agent(queue, "away", online=False)
    ConversationFactory(
        client=queue.client, number=number, queue=queue, assigned_to=busy, status=Conversation.Status.OPEN
    )

    process(meta.text_message("wamid.n1", ANA, "Hola"))

    conversation = Conversation.objects.get(contact__phone="+" + ANA)
    assert conversation.assigned_to == free and conversation.status == Conversation.Status.OPEN


def test_without_an_available_agent_it_waits_and_is_handed_out_oldest_first(number, queue, default_client):
    ana = agent(queue, "ana", online=False, capacity=1)
    process(meta.text_message("wamid.w1", "51987000001", "primero"), contacts=[])
    process(meta.text_message("wamid.w2", "51987000002", "segundo"), contacts=[])
    assert set(Conversation.objects.values_list("status", flat=True)) == {Conversation.Status.PENDING}

    agent_availability_set(user=ana, status=AgentAvailability.Status.ONLINE)

    first = Conversation.objects.get(contact__phone="+51987000001")
    second = Conversation.objects.get(contact__phone="+51987000002")
    assert first.assigned_to == ana and first.status == Conversation.Status.OPEN
    assert second.assigned_to is None and second.status == Conversation.Status.PENDING  # capacity 1


def test_a_number_without_queue_keeps_its_conversations_unrouted(default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id=PNID, queue=None)

    process(meta.text_message("wamid.u1", ANA, "Hola"))

    conversation = Conversation.objects.get()
    assert conversation.queue is None and conversation.status == Conversation.Status.PENDING


def test_a_resolved_conversation_reopens_within_the_window_else_a_new_one(number, settings):
    process(meta.text_message("wamid.r1", ANA, "Hola"))
    conversation = Conversation.objects.get()
    Conversation.objects.filter(pk=conversation.pk).update(
        status=Conversation.Status.RESOLVED, resolved_at=conversation.created_at
    )

    process(meta.text_message("wamid.r2", ANA, "Otra pregunta"))
    assert Conversation.objects.get().pk == conversation.pk

    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.RESOLVED)
    settings.CONVERSATION_REOPEN_WINDOW = 0
    process(meta.text_message("wamid.r3", ANA, "Mucho después"))
    assert Conversation.objects.count() == 2


def test_the_message_event_reaches_the_queue_group_after_commit(number, queue, django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(queue_group(queue.pk), channel)

    with django_capture_on_commit_callbacks(execute=True):
        process(meta.text_message("wamid.e1", ANA, "Hola en vivo"))

    (event,) = live_events_of(async_to_sync(layer.receive)(channel))
    assert event["type"] == "message.created"
    assert event["data"]["preview"] == "Hola en vivo" and event["data"]["queue"] == queue.pk


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_assign_past_capacity(default_client):
    queue = QueueFactory(client=default_client)
    number = WhatsAppNumberFactory(client=default_client, phone_number_id=PNID, queue=queue)
    agent(queue, "solo", capacity=3)
    events = [
        WebhookEvent.objects.create(
            body=meta.webhook(
                meta.messages_change(PNID, messages=[meta.text_message(f"wamid.c{n}", f"5198700{n:04d}", "Hola")])
            ),
            phone_number_ids=[PNID],
        )
        for n in range(12)
    ]

    def work(ids):
        try:
            for event_id in ids:
                webhook_event_process(event_id=event_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=([e.pk for e in events[i::2]],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert Message.objects.filter(number=number).count() == 12
    assert Conversation.objects.filter(status=Conversation.Status.OPEN).count() == 3
    assert Conversation.objects.filter(status=Conversation.Status.PENDING).count() == 9


@pytest.mark.django_db(transaction=True)
def test_assignment_waits_for_whoever_holds_the_queues_membership_locks(default_client):
    # given: another worker is in the middle of assigning in this queue (it holds the membership row locks)
    import psycopg

    queue = QueueFactory(client=default_client)
    WhatsAppNumberFactory(client=default_client, phone_number_id=PNID, queue=queue)
    agent(queue, "solo", capacity=1)
    event = WebhookEvent.objects.create(
        body=meta.webhook(meta.messages_change(PNID, messages=[meta.text_message("wamid.l1", ANA, "Hola")])),
        phone_number_ids=[PNID],
    )
    db = connection.settings_dict
    other = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
    other.execute("SELECT id FROM queues_queuemembership WHERE queue_id = %s FOR UPDATE", [queue.pk])

    # when: a worker processes a message for that queue
    def work():
        try:
            webhook_event_process(event_id=event.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        worker.join(timeout=1.0)
        # then: it cannot count the agent's load until the other worker is done ...
        assert worker.is_alive()
    finally:
        other.rollback()
        other.close()
        worker.join(timeout=30)
    # ... and then assigns
    assert not worker.is_alive()
    assert Conversation.objects.get().status == Conversation.Status.OPEN
