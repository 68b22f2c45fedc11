"""Staff in a real browser: the admin index warns about a number without a queue, they sync the registry, assign
the new number's queue in the numbers list, and the waiting conversation is routed."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from conversations.models import Conversation
from sessions.models import WhatsAppNumber
from tests.conversations.factories import ConversationFactory
from tests.crm.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.e2e.test_admin_client_scoping import log_in
from tests.queues.factories import QueueFactory
from tests.sessions.conftest import connection_entry
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_staff_sync_the_registry_and_route_a_number_from_the_numbers_list(page: Page, settings, tmp_path) -> None:
    # given: a Ventas staff user, a number still under its placeholder id with a waiting, unrouted conversation,
    # and a registry that knows it under Meta's id plus a new line
    ventas = ClientFactory(name="Ventas", slug="ventas")
    queue = QueueFactory(client=ventas, name="Soporte Ventas")
    placeholder = WhatsAppNumberFactory(
        client=ventas, alias="Ventas Lima", phone_number_id="wsp-ventas", display_number="+51 987 654 321"
    )
    waiting = ConversationFactory(client=ventas, number=placeholder, queue=None)
    registry = tmp_path / "connections.json"
    registry.write_text(
        json.dumps(
            [
                connection_entry(1, alias="Ventas Lima", phoneNumberId="106540352242922", displayNumber="+51987654321"),
                connection_entry(2, alias="Ventas Cusco", client="ventas"),
            ]
        )
    )
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry)
    staff = UserFactory(username="supervisora", is_staff=True)
    staff.groups.add(Group.objects.get(name="Staff"))
    ClientMembershipFactory(user=staff, client=ventas)

    # when: they log in, the index warns them, and they follow the warning's link
    log_in(page, "supervisora")
    warning = page.locator("#numbers-without-queue")
    expect(warning).to_contain_text("Ventas Lima (Ventas)")
    warning.get_by_role("link", name="Assign queues").click()
    expect(page.locator("#result_list")).to_contain_text("Ventas Lima")

    # when: they sync from the registry
    page.click("#registry-sync")

    # then: the report shows as messages, the id was corrected in place, the new line was created
    messages = page.locator(".messagelist")
    expect(messages).to_contain_text("1 created, 1 updated, 1 ids corrected")
    expect(messages).to_contain_text("Corrected id wsp-ventas → 106540352242922 (Ventas Lima)")
    expect(messages).to_contain_text("Created Ventas Cusco")
    number = WhatsAppNumber.objects.get(phone_number_id="106540352242922")
    assert number.pk == placeholder.pk and WhatsAppNumber.objects.count() == 2

    # when: they pick the queue for Ventas Lima in the list and save
    row = page.locator("#result_list tr", has_text="Ventas Lima")
    row.locator(".select2-selection").click()
    page.fill(".select2-container--open .select2-search__field", "Soporte")
    page.locator(".select2-results__option", has_text="Soporte Ventas").click()
    page.click("input[name=_save]")

    # then: the number is routed, its waiting conversation with it, and the index warns only about the new line
    expect(page.locator(".messagelist")).to_contain_text("1 waiting conversation(s) of Ventas Lima routed to Soporte")
    assert WhatsAppNumber.objects.get(pk=placeholder.pk).queue == queue
    assert Conversation.objects.get(pk=waiting.pk).queue == queue
    page.goto("/admin/")
    expect(page.locator("#numbers-without-queue")).to_contain_text("Ventas Cusco")
    expect(page.locator("#numbers-without-queue")).not_to_contain_text("Ventas Lima")
