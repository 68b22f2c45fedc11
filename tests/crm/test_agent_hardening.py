"""What a second review of the CRM found: hostile files, races between colleagues, capacity freed by a resolve,
memberships that change while a page stays open, and parameters past what the database holds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from conversations.models import Conversation, Message, MessageTemplate
from conversations.services.actions import ConversationActionError, conversation_reply, conversation_take
from crm.events import queue_group
from queues.models import AgentAvailability, QueueMembership
from queues.services import agent_availability_set
from tests.conversations.factories import MessageFactory
from tests.crm.test_consumers import communicator, session_cookie_for

HTML = b"<html><script>fetch('/conversations/1/take/', {method: 'POST'})</script></html>"


def test_a_customer_html_file_is_downloaded_never_shown_as_one_of_our_pages(client, world, graph_api):
    world.cloud.refresh_from_db()
    graph_api.tokens[world.cloud.phone_number_id] = world.cloud.access_token.reveal()
    graph_api.add_media("media-html", HTML, "text/html", phone_number_id=world.cloud.phone_number_id)
    doc = MessageFactory(
        conversation=world.ana_open,
        kind=Message.Kind.DOCUMENT,
        media_id="media-html",
        media_mime_type="text/html",
        media_filename="oferta.html",
    )
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/media/{doc.pk}/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="oferta.html"'
    assert response["Content-Security-Policy"].startswith("sandbox;")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_photo_is_shown_inline(client, world, graph_api):
    world.cloud.refresh_from_db()
    graph_api.tokens[world.cloud.phone_number_id] = world.cloud.access_token.reveal()
    graph_api.add_media("media-jpg", b"\xff\xd8\xff jpeg", "image/jpeg", phone_number_id=world.cloud.phone_number_id)
    photo = MessageFactory(
        conversation=world.ana_open, kind=Message.Kind.IMAGE, media_id="media-jpg", media_mime_type="image/jpeg"
    )
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/media/{photo.pk}/")

    assert response["Content-Disposition"].startswith("inline;")


def test_an_agent_cannot_take_what_a_colleague_took_a_moment_earlier(world):
    # given ana's page showed Rosa waiting; meanwhile beto took her
    conversation_take(conversation=world.waiting, user=world.beto)

    # when ana's take arrives, checked again under the row lock
    with pytest.raises(ConversationActionError) as refused:
        conversation_take(conversation=world.waiting, user=world.ana)

    assert refused.value.code == "assigned_elsewhere"
    assert Conversation.objects.get(pk=world.waiting.pk).assigned_to == world.beto


def test_an_agent_reply_to_a_conversation_the_policy_gave_a_colleague_is_refused_and_nothing_is_sent(world):
    before = Message.objects.filter(direction=Message.Direction.OUTBOUND).count()
    conversation_take(conversation=world.ventas_waiting, user=world.carla)

    with pytest.raises(ConversationActionError):
        conversation_reply(conversation=world.ventas_waiting, by=world.ana, text="Hola")

    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == before


def test_a_supervisor_may_still_step_in(world):
    conversation_take(conversation=world.beto_open, user=world.supervisor, supervising=True)

    assert Conversation.objects.get(pk=world.beto_open.pk).assigned_to == world.supervisor


def test_resolving_frees_capacity_for_the_oldest_waiting_customer(client, world, django_capture_on_commit_callbacks):
    # given ana is online with room for one conversation, which she has; Rosa waits in her queue
    QueueMembership.objects.filter(queue=world.soporte, user=world.ana).update(capacity=1)
    agent_availability_set(user=world.ana, status=AgentAvailability.Status.ONLINE)
    assert Conversation.objects.get(pk=world.waiting.pk).status == Conversation.Status.PENDING
    client.force_login(world.ana)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/conversations/{world.ana_open.pk}/resolve/")

    assert response.status_code == 302
    waiting = Conversation.objects.get(pk=world.waiting.pk)
    assert (waiting.status, waiting.assigned_to) == (Conversation.Status.OPEN, world.ana)


@pytest.mark.django_db(transaction=True)
def test_an_agent_taken_off_a_queue_stops_receiving_it_once_her_groups_are_worked_out_again(client, world, monkeypatch):
    monkeypatch.setattr("crm.consumers.REGROUP_SECONDS", 0)  # at every ping instead of about once a minute
    cookie = session_cookie_for(client, world.ana)
    event = {"type": "message.created", "data": {"conversation": world.waiting.pk, "preview": "datos"}}

    async def scenario():
        ws = communicator(cookie=cookie)
        await ws.connect()
        await ws.receive_json_from(timeout=5)  # hello
        from channels.db import database_sync_to_async

        await database_sync_to_async(QueueMembership.objects.filter(user=world.ana).delete)()
        await ws.send_json_to({"type": "ping"})
        await ws.receive_nothing(timeout=0.5)  # the consumer works out her groups again
        await get_channel_layer().group_send(queue_group(world.soporte.pk), {"type": "live.event", "event": event})
        nothing = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return nothing

    assert async_to_sync(scenario)()


def test_a_snooze_past_a_year_is_refused(client, world):
    client.force_login(world.ana)
    until = (timezone.localtime() + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M")

    response = client.post(f"/conversations/{world.ana_open.pk}/snooze/", {"until": "custom", "custom": until})
    far = client.post(f"/conversations/{world.ana_open.pk}/snooze/", {"until": "custom", "custom": "9999-12-31T23:59"})

    assert response.status_code == far.status_code == 400
    assert Conversation.objects.get(pk=world.ana_open.pk).snoozed_until is None
    assert client.get(f"/conversations/{world.ana_open.pk}/").status_code == 200


def test_a_template_value_with_a_nul_character_is_refused(client, world):
    Conversation.objects.filter(pk=world.ana_open.pk).update(last_inbound_at=timezone.now() - timedelta(hours=30))
    template = MessageTemplate.objects.create(client=world.client, name="pedido", language="es", body="Hola {{1}}")
    before = Message.objects.count()
    client.force_login(world.ana)

    response = client.post(f"/conversations/{world.ana_open.pk}/reply/", {"template": template.pk, "param_1": "a\x00"})

    assert response.status_code == 400
    assert Message.objects.count() == before


def test_a_since_in_the_year_one_is_refused_not_a_server_error(client, world):
    client.force_login(world.ana)

    response = client.get(
        f"/conversations/{world.ana_open.pk}/", {"fragment": "messages", "since": "0001-01-01T00:00:00+00:00"}
    )

    assert response.status_code == 400


@pytest.mark.parametrize("target", ["/\\evil.example", "//evil.example", "https://evil.example/", "/\t/evil.example"])
def test_availability_never_redirects_off_site(client, world, target):
    client.force_login(world.ana)

    response = client.post("/availability/", {"status": "away", "next": target})

    assert response.status_code == 302 and response["Location"] == "/inbox/"
