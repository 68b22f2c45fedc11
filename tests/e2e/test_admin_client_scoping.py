"""A staff user limited to one client works in the admin through a real browser: they see, open, pick and change
only that client's WhatsApp numbers and queues, and provider tokens never reach the page in full."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from sessions.models import WhatsAppNumber
from tests.crm.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory

PASSWORD = "pass-word-123"  # UserFactory's password
VENTAS_TOKEN = "EAAG-secret-token-ventas-123456789"
MARKETING_TOKEN = "EAAG-secret-token-marketing-987654321"
CHANGELIST = "/admin/wa_sessions/whatsappnumber/"

# live_server serves from another thread, so the data must be committed: transactional tests. They flush the
# database afterwards; serialized_rollback restores what the migrations created (the default client, the
# "Staff" group) for the tests that run after this one.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@dataclass
class TwoClients:
    ventas_number: WhatsAppNumber
    marketing_number: WhatsAppNumber
    username: str


@pytest.fixture
def two_clients() -> TwoClients:
    ventas = ClientFactory(name="Ventas", slug="ventas")
    marketing = ClientFactory(name="Marketing", slug="marketing")
    ventas_queue = QueueFactory(client=ventas, name="Soporte Ventas")
    marketing_queue = QueueFactory(client=marketing, name="Soporte Marketing")
    ventas_number = WhatsAppNumberFactory(
        client=ventas, queue=ventas_queue, alias="Línea Ventas", access_token=VENTAS_TOKEN
    )
    marketing_number = WhatsAppNumberFactory(
        client=marketing, queue=marketing_queue, alias="Línea Marketing", access_token=MARKETING_TOKEN
    )
    staff = UserFactory(username="vendedora", is_staff=True, is_superuser=False)
    staff.groups.add(Group.objects.get(name="Staff"))  # created by the crm data migration
    ClientMembershipFactory(user=staff, client=ventas)
    return TwoClients(ventas_number=ventas_number, marketing_number=marketing_number, username=staff.username)


def log_in(page: Page, username: str) -> None:
    """Through the real admin login form."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def change_url(number: WhatsAppNumber) -> str:
    return f"{CHANGELIST}{number.pk}/change/"


def assert_no_token_in_full(page: Page) -> None:
    html = page.content()
    assert VENTAS_TOKEN not in html
    assert MARKETING_TOKEN not in html


def test_staff_user_sees_opens_and_picks_only_their_clients_numbers(page: Page, two_clients: TwoClients) -> None:
    # given: a staff user who is a member of "Ventas" only, logged in through the admin login form
    ventas, marketing = two_clients.ventas_number, two_clients.marketing_number
    log_in(page, two_clients.username)

    # when: they open the WhatsApp numbers list
    page.goto(CHANGELIST)

    # then: they see the Ventas number, with its token masked to the last 4 characters, and not Marketing's
    results = page.locator("#result_list")
    expect(results).to_contain_text("Línea Ventas")
    expect(results).to_contain_text("••••6789")
    assert "Línea Marketing" not in page.content()
    assert "••••4321" not in page.content()
    assert_no_token_in_full(page)

    # when: they open the Ventas number
    page.click("#result_list a:text('Línea Ventas')")

    # then: the token box is empty and only a masked hint of the stored token is shown
    expect(page).to_have_url(re.compile(re.escape(change_url(ventas)) + "$"))
    expect(page.locator("input[name=access_token]")).to_have_value("")
    expect(page.locator(".field-access_token .secret-hint")).to_contain_text("Stored: ••••6789")
    assert_no_token_in_full(page)

    # then: the queue autocomplete offers only Ventas queues
    page.click(".field-queue .select2-selection")
    page.fill(".select2-container--open .select2-search__field", "Soporte")
    options = page.locator(".select2-results__option")
    expect(options).to_have_text(["Soporte Ventas"])
    page.keyboard.press("Escape")
    # ... and so does the endpoint behind it, whatever the widget shows
    response = page.request.get(
        "/admin/autocomplete/",
        params={"app_label": "wa_sessions", "model_name": "whatsappnumber", "field_name": "queue", "term": ""},
    )
    assert response.ok
    assert [r["text"] for r in response.json()["results"]] == ["Soporte Ventas"]

    # when: they type the Marketing number's change URL by hand
    page.goto(change_url(marketing))

    # then: the admin treats it as missing and redirects away, without showing it
    expect(page.locator(".messagelist")).to_contain_text(re.compile(r"doesn.t exist"))
    assert not page.url.endswith(change_url(marketing))
    assert "Línea Marketing" not in page.content()
    assert_no_token_in_full(page)


def test_saving_with_the_token_left_blank_keeps_the_stored_token(page: Page, two_clients: TwoClients) -> None:
    # given: the Ventas staff user on the Ventas number's change form
    ventas = two_clients.ventas_number
    log_in(page, two_clients.username)
    page.goto(change_url(ventas))
    expect(page.locator("input[name=access_token]")).to_have_value("")

    # when: they change the alias and save, leaving the (empty) token box alone
    page.fill("input[name=alias]", "Ventas Lima")
    page.click("input[name=_save]")

    # then: the change is saved ...
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(page.locator("#result_list")).to_contain_text("Ventas Lima")
    assert_no_token_in_full(page)
    # ... and blank kept the stored secrets instead of erasing them
    saved = WhatsAppNumber.objects.get(pk=ventas.pk)
    assert saved.alias == "Ventas Lima"
    assert saved.access_token.reveal() == VENTAS_TOKEN
    assert saved.verify_token.reveal() == ventas.verify_token  # the factory's plain string


def test_changelist_filters_offer_only_their_clients_and_queues(page: Page, two_clients: TwoClients) -> None:
    # given: the Ventas staff user, logged in
    log_in(page, two_clients.username)

    # when: they open the WhatsApp numbers list
    page.goto(CHANGELIST)

    # then: the sidebar filters name only what they may see: their client and its queues
    sidebar = page.locator("#changelist-filter")
    expect(sidebar).to_contain_text("Ventas")
    expect(sidebar).to_contain_text("Soporte Ventas")
    shown = sidebar.inner_text()
    assert "Marketing" not in shown  # neither the other client nor its queue
    assert "Default" not in shown  # nor the default client, of which they are not a member either
