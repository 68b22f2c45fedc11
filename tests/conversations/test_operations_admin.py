"""What staff see and do in admin about delivery: numbers needing attention, failed webhook events, messages of
unknown fate, agents' capacity and availability (Django test client, real database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Message, UnmatchedStatus, WebhookEvent
from queues.models import AgentAvailability, QueueMembership
from sessions.services import number_attention_set
from tests.conversations import meta_payloads as meta
from tests.conversations.factories import ConversationFactory, MessageFactory
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.factories import WhatsAppNumberFactory
from tests.sessions.test_numbers_admin import change_form, messages_of, staff_login

pytestmark = pytest.mark.django_db

NUMBERS = "/admin/wa_sessions/whatsappnumber/"
EVENTS = "/admin/conversations/webhookevent/"


# Numbers needing attention


def test_the_index_names_numbers_that_cannot_send_to_their_own_staff_only(client, ventas, marketing):
    staff_login(client, ventas)
    lima = WhatsAppNumberFactory(client=ventas, alias="Ventas Lima", queue=QueueFactory(client=ventas))
    other = WhatsAppNumberFactory(client=marketing, alias="Marketing line", queue=QueueFactory(client=marketing))
    number_attention_set(number=lima, reason="Access token expired or invalid (code 190)")
    number_attention_set(number=other, reason="Restricted (code 368)")

    page = client.get("/admin/").content.decode()

    assert 'id="numbers-needing-attention"' in page
    assert "Ventas Lima (Ventas): Access token expired or invalid (code 190)" in page
    assert "Marketing line" not in page
    assert f"{NUMBERS}?attention=yes" in page
    listed = client.get(NUMBERS, {"attention": "yes"}).context["cl"].result_list
    assert [number.alias for number in listed] == ["Ventas Lima"]


def test_saving_a_new_token_clears_the_flag(admin_client, ventas):
    number = WhatsAppNumberFactory(client=ventas)
    number_attention_set(number=number, reason="Access token expired or invalid (code 190)")

    response = admin_client.post(
        f"{NUMBERS}{number.pk}/change/", change_form(number, access_token="EAAG-new-token-0002"), follow=True
    )

    number.refresh_from_db()
    assert (number.attention_reason, number.attention_since) == ("", None)
    assert number.access_token.reveal() == "EAAG-new-token-0002"
    assert any("no longer flagged" in text for _, text in messages_of(response))
    assert 'id="numbers-needing-attention"' not in admin_client.get("/admin/").content.decode()


def test_saving_without_a_new_token_keeps_the_flag(admin_client, ventas):
    number = WhatsAppNumberFactory(client=ventas)
    number_attention_set(number=number, reason="Restricted (code 368)")

    admin_client.post(f"{NUMBERS}{number.pk}/change/", change_form(number, alias="Renamed"))

    number.refresh_from_db()
    assert (number.alias, number.attention_reason) == ("Renamed", "Restricted (code 368)")


def test_the_clear_action_clears_only_flagged_numbers(admin_client, ventas):
    flagged = WhatsAppNumberFactory(client=ventas)
    healthy = WhatsAppNumberFactory(client=ventas)
    number_attention_set(number=flagged, reason="Restricted (code 368)")

    response = admin_client.post(
        NUMBERS, {"action": "clear_attention", "_selected_action": [flagged.pk, healthy.pk]}, follow=True
    )

    flagged.refresh_from_db()
    assert flagged.attention_since is None
    assert ("info", "1 number(s) cleared; the next failed send flags them again.") in messages_of(response)


def test_a_repeated_failure_does_not_move_the_flag(ventas):
    number = WhatsAppNumberFactory(client=ventas)
    assert number_attention_set(number=number, reason="Restricted (code 368)") is True
    since = number.attention_since

    assert number_attention_set(number=number, reason="Restricted (code 368)") is False

    number.refresh_from_db()
    assert number.attention_since == since


# Webhook events


def failed_event(client, *, phone_number_id: str) -> WebhookEvent:
    body = meta.webhook(
        meta.messages_change(phone_number_id, messages=[meta.text_message("wamid.LATE1", meta.CUSTOMER_WA_ID, "Hola")])
    )
    return WebhookEvent.objects.create(
        client=client,
        body=body,
        phone_number_ids=[phone_number_id],
        status=WebhookEvent.Status.FAILED,
        attempts=1,
        error=f"unknown phone_number_id {phone_number_id}: add the number and reprocess it",
    )


def test_staff_see_failed_events_on_the_index_and_reprocess_them_once_the_number_exists(client, ventas):
    staff_login(client, ventas)
    event = failed_event(ventas, phone_number_id="106540352299999")

    page = client.get("/admin/").content.decode()
    assert 'id="delivery-problems"' in page and "1 webhook event could not be fully processed" in page
    listed = client.get(EVENTS, {"status__exact": "failed"})
    assert listed.status_code == 200 and list(listed.context["cl"].result_list) == [event]
    detail = client.get(f"{EVENTS}{event.pk}/change/").content.decode()
    assert "wamid.LATE1" in detail and "unknown phone_number_id" in detail

    # when: the number is added, then the event is reprocessed, twice
    WhatsAppNumberFactory(client=ventas, phone_number_id="106540352299999", queue=QueueFactory(client=ventas))
    for _ in range(2):
        response = client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED and event.error == ""
    assert Message.objects.filter(provider_message_id="wamid.LATE1").count() == 1
    assert ("success", "1 event(s) processed.") in messages_of(response)
    assert 'id="delivery-problems"' not in client.get("/admin/").content.decode()


def test_an_event_that_still_fails_is_reported(admin_client, ventas):
    event = failed_event(ventas, phone_number_id="106540352288888")

    response = admin_client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)

    assert any(
        level == "warning" and f"still failed (see their error): {event.pk}" in text
        for level, text in messages_of(response)
    )


def test_events_of_unknown_numbers_and_other_clients_stay_hidden_from_limited_staff(client, ventas, marketing):
    staff_login(client, ventas)
    mine = failed_event(ventas, phone_number_id="1")
    failed_event(marketing, phone_number_id="2")
    failed_event(None, phone_number_id="3")

    assert list(client.get(EVENTS).context["cl"].result_list) == [mine]
    assert "1 webhook event could not" in client.get("/admin/").content.decode()


def test_agents_without_the_staff_role_cannot_open_or_reprocess_events(client, ventas):
    staff_login(client, ventas, role="Agent")
    event = failed_event(ventas, phone_number_id="1")

    assert client.get(EVENTS).status_code == 403
    client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED


def test_unmatched_statuses_are_listed_read_only(admin_client, ventas):
    number = WhatsAppNumberFactory(client=ventas)
    UnmatchedStatus.objects.create(
        number=number, provider_message_id="wamid.EARLY", status="delivered", status_at=timezone.now()
    )

    page = admin_client.get("/admin/conversations/unmatchedstatus/").content.decode()

    assert "wamid.EARLY" in page
    assert admin_client.get("/admin/conversations/unmatchedstatus/add/").status_code == 403


# Messages of unknown fate


def test_the_index_points_at_recent_messages_that_may_not_have_been_sent(admin_client, ventas):
    conversation = ConversationFactory(client=ventas)
    MessageFactory(conversation=conversation, direction="out", status="unknown", status_at=timezone.now())
    MessageFactory(
        conversation=conversation, direction="out", status="unknown", status_at=timezone.now() - timedelta(days=30)
    )

    page = admin_client.get("/admin/").content.decode()

    assert "1 message of the last week may or may not have reached the customer" in page
    listed = admin_client.get("/admin/conversations/message/", {"status__exact": "unknown"})
    assert len(listed.context["cl"].result_list) == 2


# Agents: capacity and availability


def test_staff_set_agents_online_and_waiting_conversations_are_handed_out(client, ventas):
    staff_login(client, ventas)
    queue = QueueFactory(client=ventas)
    agent = UserFactory(username="lucia")
    ClientMembershipFactory(user=agent, client=ventas)
    membership = QueueMembershipFactory(queue=queue, user=agent, capacity=5)
    waiting = ConversationFactory(client=ventas, queue=queue, waiting_since=timezone.now())

    page = client.get("/admin/queues/queuemembership/")
    assert page.status_code == 200 and "Offline" in page.content.decode()
    response = client.post(
        "/admin/queues/queuemembership/",
        {"action": "set_online", "_selected_action": [membership.pk]},
        follow=True,
    )

    assert AgentAvailability.objects.get(user=agent).status == "online"
    assert ("success", "1 agent(s) set online.") in messages_of(response)
    waiting.refresh_from_db()
    assert waiting.assigned_to == agent  # coming online hands out the queue's waiting conversations


def test_staff_change_a_members_capacity(client, ventas):
    staff_login(client, ventas)
    agent = UserFactory(username="mario")
    ClientMembershipFactory(user=agent, client=ventas)
    membership = QueueMembershipFactory(queue=QueueFactory(client=ventas), user=agent, capacity=5)

    response = client.post(
        f"/admin/queues/queuemembership/{membership.pk}/change/",
        {"queue": membership.queue_id, "user": agent.pk, "role": "agent", "capacity": "2"},
    )

    assert response.status_code == 302
    assert QueueMembership.objects.get(pk=membership.pk).capacity == 2
