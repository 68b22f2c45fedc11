"""A staff user limited to one client cannot list, open, change or pick another client's rows in admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from conversations.models import Conversation
from sessions.models import WhatsAppNumber
from tests.conversations.factories import ConversationFactory, MessageFactory
from tests.crm.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory


@pytest.fixture
def two_clients(db):
    ventas, marketing = ClientFactory(name="Ventas", slug="ventas"), ClientFactory(name="Marketing", slug="marketing")
    data = {}
    for client in (ventas, marketing):
        queue = QueueFactory(client=client, name=f"{client.name} queue")
        number = WhatsAppNumberFactory(client=client, alias=f"{client.name} line", queue=queue)
        conversation = ConversationFactory(client=client, number=number, queue=queue)
        MessageFactory(conversation=conversation, body=f"{client.name} message")
        data[client.slug] = {"client": client, "queue": queue, "number": number, "conversation": conversation}
    return data


@pytest.fixture
def ventas_staff(two_clients, client):
    user = UserFactory(username="ventas-staff", is_staff=True)
    user.groups.add(Group.objects.get(name="Staff"))
    ClientMembershipFactory(user=user, client=two_clients["ventas"]["client"])
    client.force_login(user)
    return client


CHANGELISTS = [
    "/admin/crm/client/",
    "/admin/queues/queue/",
    "/admin/wa_sessions/whatsappnumber/",
    "/admin/wa_sessions/numbersession/",
    "/admin/conversations/contact/",
    "/admin/conversations/conversation/",
    "/admin/conversations/message/",
]


@pytest.mark.parametrize("url", CHANGELISTS)
def test_changelists_show_only_the_users_clients(ventas_staff, two_clients, url):
    response = ventas_staff.get(url)

    assert response.status_code == 200
    result_count = response.context["cl"].result_count
    rows = list(response.context["cl"].result_list)
    assert result_count == len(rows) >= 1
    assert all("Marketing" not in str(row) for row in rows)


def test_another_clients_row_cannot_be_opened_or_changed(ventas_staff, two_clients):
    marketing_number = two_clients["marketing"]["number"]
    url = f"/admin/wa_sessions/whatsappnumber/{marketing_number.pk}/change/"

    opened = ventas_staff.get(url)
    changed = ventas_staff.post(url, {"alias": "hijacked"})
    deleted = ventas_staff.post(f"/admin/wa_sessions/whatsappnumber/{marketing_number.pk}/delete/", {"post": "yes"})

    assert opened.status_code == 302 and opened.url == "/admin/"
    assert changed.status_code == 302 and deleted.status_code == 302
    marketing_number.refresh_from_db()
    assert marketing_number.alias == "Marketing line"


def test_bulk_delete_action_cannot_reach_another_clients_rows(ventas_staff, two_clients):
    ids = [two_clients[slug]["conversation"].pk for slug in ("ventas", "marketing")]

    ventas_staff.post(
        "/admin/conversations/conversation/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )

    assert Conversation.objects.filter(pk=two_clients["marketing"]["conversation"].pk).exists()


def test_forms_offer_and_accept_only_the_users_clients_choices(ventas_staff, two_clients):
    ventas, marketing = two_clients["ventas"], two_clients["marketing"]

    add_page = ventas_staff.get("/admin/wa_sessions/whatsappnumber/add/")
    form = add_page.context["adminform"].form
    assert list(form.fields["client"].queryset) == [ventas["client"]]
    assert form.fields["client"].initial == ventas["client"].pk  # the only client is preselected
    assert list(form.fields["queue"].queryset) == [ventas["queue"]]

    picked_other = ventas_staff.post(
        "/admin/wa_sessions/whatsappnumber/add/",
        {
            "client": marketing["client"].pk,
            "alias": "Sneaky",
            "display_number": "+51 911 222 333",
            "phone_number_id": "999000111",
            "engine": "cloud",
            "queue": marketing["queue"].pk,
        },
    )
    assert picked_other.status_code == 200  # the form is shown again with errors
    errors = picked_other.context["adminform"].form.errors
    assert "client" in errors and "queue" in errors
    assert not WhatsAppNumber.objects.filter(alias="Sneaky").exists()


def test_autocomplete_returns_only_the_users_clients_rows(ventas_staff, two_clients):
    response = ventas_staff.get(
        "/admin/autocomplete/",
        {"app_label": "wa_sessions", "model_name": "whatsappnumber", "field_name": "queue", "term": "queue"},
    )

    assert response.status_code == 200
    names = [result["text"] for result in response.json()["results"]]
    assert names == ["Ventas queue"]


def test_a_number_cannot_point_at_a_queue_of_another_client(admin_client, two_clients):
    ventas, marketing = two_clients["ventas"], two_clients["marketing"]
    number = ventas["number"]

    response = admin_client.post(
        f"/admin/wa_sessions/whatsappnumber/{number.pk}/change/",
        {
            "client": ventas["client"].pk,
            "alias": number.alias,
            "display_number": number.display_number,
            "phone_number_id": number.phone_number_id,
            "engine": "cloud",
            "queue": marketing["queue"].pk,
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["queue"] == ["The queue belongs to another client."]
    number.refresh_from_db()
    assert number.queue == ventas["queue"]


def test_superuser_sees_every_client(admin_client, two_clients):
    response = admin_client.get("/admin/wa_sessions/whatsappnumber/")

    assert response.context["cl"].result_count == 2


def test_staff_without_any_client_sees_nothing(client, two_clients):
    user = UserFactory(username="unassigned", is_staff=True)
    user.groups.add(Group.objects.get(name="Staff"))
    client.force_login(user)

    response = client.get("/admin/wa_sessions/whatsappnumber/")

    assert response.status_code == 200 and response.context["cl"].result_count == 0


def test_limited_staff_cannot_manage_users(ventas_staff):
    assert ventas_staff.get("/admin/auth/user/").status_code == 403


def test_admin_header_tells_staff_which_clients_they_work_in(ventas_staff, admin_client, client, two_clients):
    assert "Clients: Ventas" in ventas_staff.get("/admin/").content.decode()
    assert "All clients" in admin_client.get("/admin/").content.decode()


def sidebar_choices(response) -> list[str]:
    changelist = response.context["cl"]
    return [str(choice["display"]) for spec in changelist.filter_specs for choice in spec.choices(changelist)]


@pytest.mark.parametrize(
    "url",
    [
        "/admin/wa_sessions/whatsappnumber/",
        "/admin/queues/queue/",
        "/admin/queues/queuemembership/",
        "/admin/conversations/conversation/",
        "/admin/wa_sessions/numbersession/",
    ],
)
def test_sidebar_filters_never_name_another_clients_rows(ventas_staff, admin_client, two_clients, url):
    # the same filters list Marketing's rows for a superuser, so the check below has teeth
    assert any("Marketing" in name for name in sidebar_choices(admin_client.get(url)))

    names = sidebar_choices(ventas_staff.get(url))

    assert not [name for name in names if "Marketing" in name or name == "Default"]


def test_the_front_door_is_the_agents_crm_behind_its_login(client):
    response = client.get("/")

    assert response.status_code == 302 and response.url == "/login/?next=/"
