"""Staff assign numbers to queues and run the registry sync from the admin (Django test client, real database)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages

from conversations.models import Conversation
from sessions.models import Engine, RegistrySyncRun, WhatsAppNumber
from tests.conversations.factories import ConversationFactory
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.conftest import connection_entry, table_snapshot
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/wa_sessions/whatsappnumber/"
SYNC_URL = "/admin/wa_sessions/whatsappnumber/sync-registry/"


def staff_login(client, *clients, role: str | None = "Staff"):
    user = UserFactory(is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    for member_of in clients:
        ClientMembershipFactory(user=user, client=member_of)
    client.force_login(user)
    return user


def change_form(number: WhatsAppNumber, **changes) -> dict:
    """The number's change form as the browser posts it (secrets left blank keep the stored ones)."""
    return {
        "client": number.client_id,
        "alias": number.alias,
        "display_number": number.display_number,
        "phone_number_id": number.phone_number_id,
        "engine": number.engine,
        "waba_id": number.waba_id,
        "is_active": "on" if number.is_active else "",
        "queue": number.queue_id or "",
        "warmup_days": number.warmup_days,
        **changes,
    }


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


# --- "Sync from registry" -------------------------------------------------------------------------------------


def test_staff_run_the_sync_from_the_numbers_list_and_see_the_report(
    client, ventas, marketing, registry_file, settings
):
    settings.WHATSAPP_CONNECTIONS_FILE = str(
        registry_file([connection_entry(1, client="ventas"), connection_entry(2, client="marketing")])
    )
    staff_login(client, ventas)

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert b'id="registry-sync"' in page.content and b'id="registry-preview"' in page.content

    response = client.post(SYNC_URL)

    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert WhatsAppNumber.objects.count() == 2
    run = RegistrySyncRun.objects.get()
    assert run.trigger == "admin" and run.triggered_by.is_staff
    assert "2 created" in run.summary
    # A user limited to Ventas reads only Ventas' part: no other client's names, nor its counts.
    run_link = f'(<a href="/admin/wa_sessions/registrysyncrun/{run.pk}/change/">run {run.pk}</a>)'
    assert messages_of(response) == [
        (
            "success",
            "your clients: 1 created, 0 updated, 0 ids corrected, 0 missing from registry, 1 without queue " + run_link,
        ),
        ("info", "Created Linea 1 (106540352200001)"),
        ("warning", "No queue: Linea 1 (106540352200001)"),
    ]


def test_limited_staff_never_read_other_clients_lines_of_any_kind(client, ventas, marketing, registry_file, settings):
    # given: each client has a placeholder to correct, a number to update and one missing from the registry
    for n, owner in ((1, ventas), (3, marketing)):
        WhatsAppNumberFactory(
            client=owner,
            alias=f"{owner.name} placeholder",
            phone_number_id=f"wsp-{n}",
            display_number=f"+51 900 00{n} 00{n}",
        )
        WhatsAppNumberFactory(client=owner, alias=f"{owner.name} gone", phone_number_id=f"55500{n}")
        WhatsAppNumberFactory(
            client=owner,
            alias=f"{owner.name} kept",
            phone_number_id=f"1065403522{n + 1:05d}",
            display_number=f"+51 900 00{n + 1} 00{n + 1}",
        )
    entries = [connection_entry(n, alias=f"Renamed {n}") for n in (1, 2, 3, 4)]
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file(entries))
    staff_login(client, ventas)

    # when: the Ventas staff user syncs and then opens the run
    response = client.post(SYNC_URL)
    run = RegistrySyncRun.objects.get()
    page = client.get(f"/admin/wa_sessions/registrysyncrun/{run.pk}/change/").content.decode()
    listing = client.get("/admin/wa_sessions/registrysyncrun/").content.decode()

    # then: every line they read is about Ventas' numbers, and none about Marketing's
    shown = [text for _level, text in messages_of(response)]
    assert "Corrected id wsp-1 → 106540352200001 (Renamed 1)" in shown
    assert "Not in the registry: Ventas gone (555001)" in shown
    assert any(text.startswith("Updated Renamed 2") for text in shown)
    for text in (*shown, page, listing):
        assert "Marketing" not in text and "Renamed 3" not in text and "Renamed 4" not in text and "555003" not in text
    assert "Renamed 2" in page and "2 updated" in listing


def test_a_superuser_sees_every_line_and_a_link_to_the_run(admin_client, ventas, registry_file, settings):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1, client="ventas"), connection_entry(2)]))

    response = admin_client.post(SYNC_URL)

    run = RegistrySyncRun.objects.get()
    level, first = messages_of(response)[0]
    assert level == "success" and f'<a href="/admin/wa_sessions/registrysyncrun/{run.pk}/change/">' in first
    assert ("info", "Created Linea 2 (106540352200002)") in messages_of(response)
    assert admin_client.get(f"/admin/wa_sessions/registrysyncrun/{run.pk}/change/").status_code == 200


def test_the_preview_button_reports_and_changes_nothing(client, ventas, registry_file, settings):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1, client="ventas")]))
    staff_login(client, ventas)
    before = table_snapshot()

    response = client.post(SYNC_URL, {"dry_run": "1"})

    assert table_snapshot() == before
    assert messages_of(response)[0][1].startswith("dry run, your clients: 1 created")
    assert RegistrySyncRun.objects.get().dry_run


def test_errors_are_shown_to_superusers_and_summarised_for_limited_staff(
    client, admin_client, ventas, registry_file, settings
):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1, displayNumber="+51 1")]))

    response = admin_client.post(SYNC_URL)
    assert messages_of(response)[1] == (
        "error",
        "Entry 0 (id conn-1): `displayNumber` '+51 1' is not a possible phone number in international form (+CC …)",
    )

    staff_login(client, ventas)
    response = client.post(SYNC_URL)
    assert [level for level, _text in messages_of(response)] == ["error", "error"]
    assert messages_of(response)[0][1].startswith("failed: 1 error(s) in the registry file, nothing changed")
    assert messages_of(response)[1][1] == "The registry file has errors; a superuser can read them in the run."
    assert "+51 1" not in str(messages_of(response))
    assert not WhatsAppNumber.objects.exists()


def test_staff_without_the_sync_permission_get_no_button_and_403(client, ventas, settings, registry_file):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))
    user = staff_login(client, ventas, role=None)
    user.user_permissions.add(*Group.objects.get(name="Staff").permissions.filter(codename="view_whatsappnumber"))

    assert b'id="registry-sync"' not in client.get(CHANGELIST).content
    assert client.post(SYNC_URL).status_code == 403
    assert not RegistrySyncRun.objects.exists()


def test_the_sync_url_only_accepts_post(admin_client):
    assert admin_client.get(SYNC_URL).status_code == 405
    assert not RegistrySyncRun.objects.exists()


def test_run_history_is_read_only_and_hidden_from_users_without_the_role(client, ventas):
    staff_login(client, ventas, role=None)
    assert client.get("/admin/wa_sessions/registrysyncrun/").status_code == 403

    staff_login(client, ventas)
    assert client.get("/admin/wa_sessions/registrysyncrun/").status_code == 200
    assert client.get("/admin/wa_sessions/registrysyncrun/add/").status_code == 403


# --- Queue assignment -----------------------------------------------------------------------------------------


def test_queue_is_editable_in_the_list_and_routes_waiting_conversations(client, ventas):
    staff_login(client, ventas)
    queue = QueueFactory(client=ventas, name="Ventas")
    number = WhatsAppNumberFactory(client=ventas, alias="Ventas Lima")
    waiting = ConversationFactory(client=ventas, number=number, queue=None)
    resolved = ConversationFactory(client=ventas, number=number, queue=None, status=Conversation.Status.RESOLVED)
    url = f"{CHANGELIST}?q=Ventas+Lima"
    page = client.get(url)
    assert b'name="form-0-queue"' in page.content

    response = client.post(
        url,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(number.pk),
            "form-0-queue": str(queue.pk),
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    number.refresh_from_db()
    assert number.queue == queue
    assert Conversation.objects.get(pk=waiting.pk).queue == queue
    assert Conversation.objects.get(pk=resolved.pk).queue is None  # history stays as it was
    assert ("info", "1 waiting conversation(s) of Ventas Lima routed to Ventas.") in messages_of(response)


def test_a_queue_of_another_client_is_refused(admin_client, ventas, marketing):
    number = WhatsAppNumberFactory(client=ventas)
    other = QueueFactory(client=marketing)

    response = admin_client.post(f"{CHANGELIST}{number.pk}/change/", change_form(number, queue=other.pk))

    assert response.status_code == 200
    assert "The queue belongs to another client." in response.content.decode()
    number.refresh_from_db()
    assert number.queue is None


@pytest.mark.parametrize(
    "query, expected",
    [
        ("has_queue=no", {"No queue", "Inactive"}),
        ("has_queue=yes", {"Queued", "Web"}),
        ("status=inactive", {"Inactive"}),
        ("status=active", {"No queue", "Queued", "Web"}),
        ("engine=web", {"Web"}),
    ],
)
def test_numbers_list_filters(admin_client, ventas, query, expected):
    queue = QueueFactory(client=ventas)
    WhatsAppNumberFactory(client=ventas, alias="No queue")
    WhatsAppNumberFactory(client=ventas, alias="Inactive", is_active=False)
    WhatsAppNumberFactory(client=ventas, alias="Queued", queue=queue)
    WhatsAppNumberFactory(client=ventas, alias="Web", queue=queue, engine=Engine.WEB)

    response = admin_client.get(f"{CHANGELIST}?{query}")

    assert {number.alias for number in response.context["cl"].result_list} == expected


def test_the_admin_index_warns_about_active_numbers_without_a_queue(client, ventas, marketing):
    staff_login(client, ventas)
    WhatsAppNumberFactory(client=ventas, alias="Ventas Lima")
    WhatsAppNumberFactory(client=ventas, alias="Dormant", is_active=False)
    WhatsAppNumberFactory(client=marketing, alias="Marketing line")

    page = client.get("/admin/").content.decode()

    assert 'id="numbers-without-queue"' in page
    assert "Ventas Lima (Ventas)" in page
    assert "Dormant" not in page and "Marketing line" not in page
    assert f"{CHANGELIST}?has_queue=no&amp;status=active" in page


def test_no_warning_once_every_active_number_has_a_queue(client, ventas):
    staff_login(client, ventas)
    WhatsAppNumberFactory(client=ventas, queue=QueueFactory(client=ventas))

    assert 'id="numbers-without-queue"' not in client.get("/admin/").content.decode()


def test_queue_admin_shows_its_numbers_and_agents(admin_client, ventas):
    queue = QueueFactory(client=ventas, name="Soporte")
    WhatsAppNumberFactory(client=ventas, alias="Soporte Lima", queue=queue)
    WhatsAppNumberFactory(client=ventas, alias="Soporte Cusco", queue=queue)
    QueueMembershipFactory(queue=queue, user=UserFactory(username="agent-ana", is_superuser=True))

    listing = admin_client.get("/admin/queues/queue/")
    row = next(q for q in listing.context["cl"].result_list if q.pk == queue.pk)
    assert (row.numbers_count, row.agents_count) == (2, 1)

    page = admin_client.get(f"/admin/queues/queue/{queue.pk}/change/").content.decode()
    assert "numbers routed to this queue" in page.lower()
    assert "Soporte Lima" in page and "Soporte Cusco" in page and "agent-ana" in page


# --- Unrouted conversations -----------------------------------------------------------------------------------


def test_unrouted_conversations_are_listed_until_their_number_gets_a_queue(client, ventas, marketing):
    staff_login(client, ventas)
    number = WhatsAppNumberFactory(client=ventas, alias="Sin cola")
    unrouted = ConversationFactory(client=ventas, number=number, queue=None)
    ConversationFactory(client=ventas, queue=QueueFactory(client=ventas))  # routed: not listed
    ConversationFactory(client=marketing, queue=None)  # another client's: not visible
    listing = "/admin/conversations/unroutedconversation/"

    assert [c.pk for c in client.get(listing).context["cl"].result_list] == [unrouted.pk]

    queue = QueueFactory(client=ventas)
    response = client.post(f"{CHANGELIST}{number.pk}/change/", change_form(number, queue=queue.pk))

    assert response.status_code == 302
    assert Conversation.objects.get(pk=unrouted.pk).queue == queue
    assert list(client.get(listing).context["cl"].result_list) == []
