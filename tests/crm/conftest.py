"""A small business for the CRM view tests: two queues, staff, a supervisor, three agents, conversations in
every state, and a second client whose data nobody here may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from conversations.models import Conversation, Message
from crm.models import ClientMembership
from crm.roles import STAFF
from queues.models import AgentAvailability, QueueMembership
from tests.conversations.factories import ContactFactory, ConversationFactory, MessageFactory
from tests.crm.factories import ClientFactory, UserFactory
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory


@dataclass
class World:
    client: object
    soporte: object
    ventas: object
    cloud: object
    sandbox: object
    staff: object
    supervisor: object
    ana: object
    beto: object
    carla: object
    ana_open: Conversation
    beto_open: Conversation
    waiting: Conversation
    ventas_waiting: Conversation
    resolved: Conversation
    foreign: Conversation


def _member(user, client, *queues, role=QueueMembership.Role.AGENT):
    ClientMembership.objects.get_or_create(user=user, client=client)
    for queue in queues:
        QueueMembership.objects.create(queue=queue, user=user, role=role)
    AgentAvailability.objects.get_or_create(user=user)
    return user


def conversation(world_client, number, queue, *, status, agent=None, name="Cliente", minutes_ago=10, **extra):
    now = timezone.now()
    contact = ContactFactory(client=world_client, name=name)
    conv = ConversationFactory(
        client=world_client,
        number=number,
        contact=contact,
        queue=queue,
        status=status,
        assigned_to=agent,
        waiting_since=now - timedelta(minutes=minutes_ago) if status == Conversation.Status.PENDING else None,
        last_message_at=now - timedelta(minutes=minutes_ago),
        last_inbound_at=now - timedelta(minutes=minutes_ago),
        resolved_at=now if status == Conversation.Status.RESOLVED else None,
        **extra,
    )
    MessageFactory(conversation=conv, body=f"Hola, soy {name}", provider_message_id=f"wamid.{conv.pk}.1")
    return conv


@pytest.fixture
def world(db) -> World:
    client = ClientFactory(name="Tienda", slug="tienda")
    other = ClientFactory(name="Otra", slug="otra")
    soporte = QueueFactory(client=client, name="Soporte")
    ventas = QueueFactory(client=client, name="Ventas")
    cloud = WhatsAppNumberFactory(client=client, alias="Linea Cloud", queue=soporte)
    sandbox = WhatsAppNumberFactory(client=client, alias="Linea Sandbox", queue=ventas, engine="sandbox")
    foreign_number = WhatsAppNumberFactory(client=other, alias="Ajena")
    foreign_queue = QueueFactory(client=other, name="Ajena")

    staff = UserFactory(username="staff", is_staff=True)
    staff.groups.add(Group.objects.get(name=STAFF))
    ClientMembership.objects.create(user=staff, client=client)
    supervisor = _member(UserFactory(username="sofia"), client, soporte, role=QueueMembership.Role.SUPERVISOR)
    ana = _member(UserFactory(username="ana"), client, soporte)
    beto = _member(UserFactory(username="beto"), client, soporte)
    carla = _member(UserFactory(username="carla"), client, ventas)

    OPEN, P, R = Conversation.Status.OPEN, Conversation.Status.PENDING, Conversation.Status.RESOLVED
    return World(
        client=client,
        soporte=soporte,
        ventas=ventas,
        cloud=cloud,
        sandbox=sandbox,
        staff=staff,
        supervisor=supervisor,
        ana=ana,
        beto=beto,
        carla=carla,
        ana_open=conversation(client, cloud, soporte, status=OPEN, agent=ana, name="Lucía Pérez", unread_count=2),
        beto_open=conversation(client, cloud, soporte, status=OPEN, agent=beto, name="Mario Díaz"),
        waiting=conversation(client, cloud, soporte, status=P, name="Rosa Quispe", minutes_ago=30),
        ventas_waiting=conversation(client, sandbox, ventas, status=P, name="Pedro Ruiz", minutes_ago=5),
        resolved=conversation(client, cloud, soporte, status=R, agent=ana, name="Elena Soto", minutes_ago=90),
        foreign=conversation(other, foreign_number, foreign_queue, status=P, name="Ajeno"),
    )


def outbound(conv: Conversation, body: str, status: str = Message.Status.DELIVERED, **extra) -> Message:
    return MessageFactory(
        conversation=conv,
        direction=Message.Direction.OUTBOUND,
        origin=Message.Origin.AGENT,
        body=body,
        status=status,
        **extra,
    )
