"""A webhook event's messages are received as one batch per number: a handful of queries for the whole batch,
the same outcome as one by one, a poison message isolated, and concurrent batches sharing senders safe."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from conversations.inbound import parse_webhook
from conversations.models import Contact, Conversation, Message, WebhookEvent
from conversations.services import webhook_event_process, webhook_events_process
from conversations.services.receive import inbound_messages_receive
from tests.conversations import meta_payloads as meta
from tests.conversations.test_inbound_processing import PNID, agent
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def customer(n: int) -> str:
    return f"5198700{n:04d}"


def webhook_of(*messages, contacts=None) -> dict:
    return meta.webhook(meta.messages_change(PNID, messages=list(messages), contacts=contacts or []))


def event_of(*messages, contacts=None) -> WebhookEvent:
    return WebhookEvent.objects.create(body=webhook_of(*messages, contacts=contacts), phone_number_ids=[PNID])


def test_several_messages_of_one_new_sender_open_one_conversation_assigned_once(number, queue):
    ana = agent(queue, "ana")
    event = event_of(
        *[
            meta.text_message(f"wamid.m{n}", customer(1), f"mensaje {n}", timestamp=str(1_700_000_000 + n))
            for n in range(4)
        ],
        contacts=[meta.contact(customer(1), "Rosa")],
    )

    processed = webhook_event_process(event_id=event.pk)

    assert processed.status == WebhookEvent.Status.PROCESSED and processed.report["messages_stored"] == 4
    conversation = Conversation.objects.get()
    assert conversation.assigned_to == ana and conversation.status == Conversation.Status.OPEN
    assert conversation.contact.name == "Rosa" and Contact.objects.count() == 1
    assert list(conversation.messages.values_list("body", flat=True)) == [f"mensaje {n}" for n in range(4)]
    assert conversation.last_message_at.timestamp() == 1_700_000_003


def test_only_the_first_message_of_a_batch_announces_a_new_conversation(number):
    messages = [meta.text_message(f"wamid.n{n}", customer(1), "Hola") for n in range(3)]

    results = inbound_messages_receive(number=number, messages=parse_webhook(webhook_of(*messages)).messages)

    assert [r.conversation for r in results] == ["created", "existing", "existing"]
    assert all(r.created for r in results)


def test_a_reply_to_a_message_of_the_same_batch_keeps_its_link(number):
    event = event_of(
        meta.text_message("wamid.first", customer(1), "¿Precio?"),
        meta.text_message("wamid.second", customer(1), "¿y envío?", context=meta.reply_context("wamid.first")),
    )

    webhook_event_process(event_id=event.pk)

    assert Message.objects.get(provider_message_id="wamid.second").quoted.provider_message_id == "wamid.first"


def test_the_same_message_twice_in_one_batch_is_stored_once(number):
    raw = meta.text_message("wamid.twice", customer(1), "Hola")

    processed = webhook_event_process(event_id=event_of(raw, raw).pk)

    assert Message.objects.filter(provider_message_id="wamid.twice").count() == 1
    assert processed.report["messages_stored"] == 1 and processed.report["messages_duplicate"] == 1


def test_a_message_the_database_refuses_fails_alone(number):
    with connection.cursor() as cursor:  # a row PostgreSQL refuses (rolled back with the test's transaction)
        cursor.execute("ALTER TABLE conversations_message ADD CONSTRAINT test_poison CHECK (body <> 'poison')")
    good = [meta.text_message(f"wamid.ok{n}", customer(n), "Hola") for n in range(3)]
    poison = meta.text_message("wamid.bad", customer(9), "poison")

    processed = webhook_event_process(event_id=event_of(good[0], poison, *good[1:]).pk)

    assert processed.status == WebhookEvent.Status.FAILED
    assert "message wamid.bad: IntegrityError" in processed.error and processed.report["messages_stored"] == 3
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == {"wamid.ok0", "wamid.ok1", "wamid.ok2"}


def test_a_batch_costs_the_same_queries_for_4_messages_as_for_20(number, queue, django_assert_max_num_queries):
    agent(queue, "ana", capacity=1000)

    def batch(first: int, size: int) -> int:
        messages = [meta.text_message(f"wamid.q{first + n}", customer(n), "Hola") for n in range(size)]
        # First contact opens the conversations; what is measured is the steady state (known customers).
        webhook_event_process(event_id=event_of(*messages).pk)
        again = [meta.text_message(f"wamid.r{first + n}", customer(n), "¿Sigue?") for n in range(size)]
        event = event_of(*again)
        connection.queries_log.clear()
        with django_assert_max_num_queries(1000) as captured:
            webhook_event_process(event_id=event.pk)
        return len(captured.captured_queries)

    small, large = batch(0, 4), batch(100, 20)

    assert small == large and large <= 12, (small, large)
    assert Message.objects.count() == 48


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_sharing_senders_in_opposite_orders_store_everything_once(default_client):
    queue = QueueFactory(client=default_client)
    WhatsAppNumberFactory(client=default_client, phone_number_id=PNID, queue=queue)
    senders = [customer(n) for n in range(10)]
    events = []
    for round_ in range(6):
        order = senders if round_ % 2 == 0 else list(reversed(senders))
        events.append(event_of(*[meta.text_message(f"wamid.{round_}.{s}", s, "Hola") for s in order]).pk)
    failures: list[BaseException] = []

    def work(ids):
        try:
            for event_id in ids:
                webhook_event_process(event_id=event_id)
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(events[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    assert Message.objects.count() == 60 and Contact.objects.count() == 10
    assert Conversation.objects.count() == 10
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.PROCESSED}


def test_events_processed_together_each_get_their_own_report(number):
    first = event_of(*[meta.text_message(f"wamid.a{n}", customer(n), "Hola") for n in range(3)])
    second = event_of(
        meta.text_message("wamid.a0", customer(0), "Hola"),  # Meta delivered it again in another webhook
        meta.text_message("wamid.b1", customer(1), "¿Hay stock?"),
    )

    processed = webhook_events_process(event_ids=[first.pk, second.pk])

    assert [e.status for e in processed] == [WebhookEvent.Status.PROCESSED] * 2
    assert processed[0].report["messages_stored"] == 3
    assert processed[1].report["messages_stored"] == 1 and processed[1].report["messages_duplicate"] == 1
    assert Message.objects.count() == 4 and Conversation.objects.count() == 3
    assert webhook_events_process(event_ids=[first.pk, second.pk]) == []  # processed events are skipped


def test_a_poison_message_in_one_of_several_events_fails_only_its_event(number):
    with connection.cursor() as cursor:  # a row PostgreSQL refuses (rolled back with the test's transaction)
        cursor.execute("ALTER TABLE conversations_message ADD CONSTRAINT test_poison CHECK (body <> 'poison')")
    healthy = event_of(meta.text_message("wamid.h1", customer(1), "Hola"))
    sick = event_of(
        meta.text_message("wamid.s1", customer(2), "Hola"), meta.text_message("wamid.s2", customer(3), "poison")
    )
    later = event_of(meta.text_message("wamid.h2", customer(4), "Hola"))

    processed = {e.pk: e for e in webhook_events_process(event_ids=[healthy.pk, sick.pk, later.pk])}

    assert processed[healthy.pk].status == processed[later.pk].status == WebhookEvent.Status.PROCESSED
    assert processed[sick.pk].status == WebhookEvent.Status.FAILED
    assert "message wamid.s2: IntegrityError" in processed[sick.pk].error
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == {"wamid.h1", "wamid.s1", "wamid.h2"}


def test_hostile_items_are_reported_and_skipped_while_the_rest_of_the_event_is_stored(number):
    # found by make chaos's hostile bodies: each of these used to raise, and the whole task with it
    nested = "[" * 100_000 + "]" * 100_000
    flow = meta.interactive_flow_reply("wamid.flow", customer(1), nested)
    order = meta.order_message("wamid.order", customer(2), [meta.product_item("sku", 1, 1e30, "PEN")])
    huge_quantity = meta.order_message("wamid.qty", customer(3), [meta.product_item("sku", 1, 10.5, "PEN")])
    huge_quantity["order"]["product_items"][0]["quantity"] = "1e999999"
    long_id = meta.text_message("wamid." + "x" * 200, customer(4), "Hola")
    padded = meta.text_message("wamid.padded", "+51" + " " * 70 + "960 000 007", "Hola")
    long_bsuid = meta.text_message("wamid.bsuid", None, "Hola")
    long_bsuid["from_user_id"] = "PE." + "u" * 200
    good = meta.text_message("wamid.good", customer(5), "Hola")

    processed = webhook_event_process(
        event_id=event_of(flow, order, huge_quantity, long_id, padded, long_bsuid, good).pk
    )

    bodies = dict(Message.objects.values_list("provider_message_id", "body"))
    assert set(bodies) == {"wamid.flow", "wamid.order", "wamid.qty", "wamid.padded", "wamid.good"}
    padded_sender = Message.objects.get(provider_message_id="wamid.padded").conversation.contact
    assert padded_sender.wa_id == "51960000007" and padded_sender.phone == "+51960000007"
    assert bodies["wamid.order"] == "Order: 1 item" and bodies["wamid.qty"] == "Order: 1 item, 10.50 PEN"
    assert bodies["wamid.flow"].startswith("[Form reply] [[[")
    assert processed.status == WebhookEvent.Status.FAILED  # it names what it skipped
    assert "messages[3]: id longer than 128 characters" in processed.error
    assert "messages[5]: from_user_id longer than 160 characters" in processed.error


def test_an_event_that_cannot_be_read_fails_alone_and_the_others_of_its_batch_are_processed(number, monkeypatch):
    # a reader bug still to be found (the known ones are above): whatever it raises, it fails that event only
    from conversations.services import webhook_events

    def parse(body):
        if body.get("poison"):
            raise ZeroDivisionError("a bug in the reader")
        return parse_webhook(body)

    monkeypatch.setattr(webhook_events, "parse_webhook", parse)
    unreadable = WebhookEvent.objects.create(body={**webhook_of(), "poison": True}, phone_number_ids=[PNID])
    good = event_of(meta.text_message("wamid.after", customer(1), "Hola"))

    events = webhook_events_process(event_ids=[unreadable.pk, good.pk])

    assert {e.pk: e.status for e in events} == {unreadable.pk: "failed", good.pk: "processed"}
    assert "could not be read: ZeroDivisionError: a bug in the reader" in events[0].error
    assert Message.objects.filter(provider_message_id="wamid.after").exists()


def test_the_parser_limits_match_the_columns_they_guard():
    from conversations.inbound import MAX_BSUID, MAX_PROVIDER_ID, MAX_WA_ID

    assert MAX_PROVIDER_ID == Message._meta.get_field("provider_message_id").max_length
    assert MAX_PROVIDER_ID == Message._meta.get_field("quoted_provider_message_id").max_length
    assert MAX_WA_ID == Contact._meta.get_field("wa_id").max_length
    assert MAX_BSUID == Contact._meta.get_field("bsuid").max_length
