"""The Cloud API webhook workload the inbound benchmarks replay: customers writing in and delivery statuses of
messages the business sent, mixed 1 message : 3 statuses (sent, delivered, read), as Meta says to plan for.

`prepare(items)` resets the bench client's conversation data and creates what the statuses refer to: a number in
a queue with agents online, existing customers with open conversations, and one accepted outbound message per
three statuses. `bodies(items, per_body)` builds the webhook bodies, shaped like Meta's (tests/conversations/
meta_payloads.py builds them).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.conversations import meta_payloads as meta

PHONE_NUMBER_ID = "106540300000001"
CUSTOMERS = 5000  # distinct senders; the first EXISTING already have a conversation
EXISTING = 3000
AGENTS = 10


@dataclass(frozen=True)
class Expected:
    inbound_messages: int
    outbound_messages: int


def _customer(n: int) -> str:
    return f"5198{n:07d}"  # Peruvian mobiles: valid numbers, E.164 +5198…


def _outbound_wamid(n: int) -> str:
    return f"wamid.BENCHOUT{n:08d}"


def prepare(items: int) -> Expected:
    """Wipe the bench client's conversations and create the number, queue, agents, customers and the outbound
    messages the statuses will name."""
    from django.db import connection, transaction
    from django.utils import timezone

    from conversations.identity import phone_identity
    from conversations.models import Contact, Conversation, Message
    from crm.models import Client, ClientMembership
    from queues.models import AgentAvailability, Queue, QueueMembership
    from sessions.models import WhatsAppNumber
    from sessions.services import number_session_ensure

    messages, outbound = items // 4, items - items // 4
    outbound_messages = outbound // 3
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE conversations_message, conversations_conversation, conversations_contact, "
            "conversations_webhookevent, conversations_unmatchedstatus RESTART IDENTITY CASCADE"
        )
    from django.contrib.auth import get_user_model

    User = get_user_model()
    with transaction.atomic():
        client, _ = Client.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        queue, _ = Queue.objects.get_or_create(client=client, name="Bench queue")
        number, _ = WhatsAppNumber.objects.update_or_create(
            phone_number_id=PHONE_NUMBER_ID,
            defaults={
                "client": client,
                "alias": "Bench line",
                "display_number": "+51 999 000 001",
                "queue": queue,
                "is_active": True,
            },
        )
        number_session_ensure(number=number)
        for n in range(AGENTS):
            agent, _ = User.objects.get_or_create(username=f"bench-agent-{n}")
            ClientMembership.objects.get_or_create(user=agent, client=client)
            QueueMembership.objects.update_or_create(queue=queue, user=agent, defaults={"capacity": 30_000})
            AgentAvailability.objects.update_or_create(user=agent, defaults={"status": "online"})

        now = timezone.now()
        contacts = []
        for n in range(EXISTING):
            identity = phone_identity(_customer(n))
            contacts.append(
                Contact(
                    client=client,
                    phone=identity.e164,
                    identity_key=identity.key,
                    wa_id=identity.wa_id,
                    name=f"Customer {n}",
                )
            )
        Contact.objects.bulk_create(contacts, batch_size=1000)
        agents = list(QueueMembership.objects.filter(queue=queue).values_list("user_id", flat=True))
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(
                    client=client,
                    number=number,
                    contact=contact,
                    queue=queue,
                    assigned_to_id=agents[index % len(agents)],
                    status=Conversation.Status.OPEN,
                    assigned_at=now,
                    last_message_at=now,
                    last_inbound_at=now,
                )
                for index, contact in enumerate(contacts)
            ],
            batch_size=1000,
        )
        Message.objects.bulk_create(
            [
                Message(
                    conversation=conversations[n % len(conversations)],
                    number=number,
                    direction=Message.Direction.OUTBOUND,
                    origin=Message.Origin.AGENT,
                    body=f"Reply {n}",
                    provider_message_id=_outbound_wamid(n),
                    status=Message.Status.ACCEPTED,
                    status_at=now,
                )
                for n in range(outbound_messages)
            ],
            batch_size=2000,
        )
    with connection.cursor() as cursor:  # fresh statistics, as autovacuum keeps them on a live database
        cursor.execute("ANALYZE conversations_message, conversations_conversation, conversations_contact")
    return Expected(inbound_messages=messages, outbound_messages=outbound_messages)


def items_stream(items: int):
    """(kind, entry, contact) per item, in the order Meta would deliver them: 1 message then 3 statuses."""
    message_n = status_n = 0
    for index in range(items):
        if index % 4 == 0:
            sender = _customer(message_n % CUSTOMERS)
            yield (
                "message",
                meta.text_message(f"wamid.BENCHIN{message_n:08d}", sender, f"Hola, consulta {message_n}"),
                meta.contact(sender, f"Customer {message_n % CUSTOMERS}"),
            )
            message_n += 1
        else:
            target, which = divmod(status_n, 3)
            name = ("sent", "delivered", "read")[which]
            yield "status", meta.status(_outbound_wamid(target), name, _customer(target % EXISTING)), None
            status_n += 1


def bodies(items: int, per_body: int) -> list[dict]:
    """Webhook bodies carrying `per_body` items each (messages and statuses of one batch in one entry)."""
    result = []
    batch: list = []
    for item in items_stream(items):
        batch.append(item)
        if len(batch) == per_body:
            result.append(_body(batch))
            batch = []
    if batch:
        result.append(_body(batch))
    return result


def _body(batch: list) -> dict:
    messages = [entry for kind, entry, _ in batch if kind == "message"]
    contacts = [contact for kind, _, contact in batch if kind == "message"]
    statuses = [entry for kind, entry, _ in batch if kind == "status"]
    changes = []
    if messages:
        changes.append(meta.messages_change(PHONE_NUMBER_ID, messages=messages, contacts=contacts))
    if statuses:
        changes.append(meta.statuses_change(PHONE_NUMBER_ID, statuses=statuses))
    return meta.webhook(*changes)
