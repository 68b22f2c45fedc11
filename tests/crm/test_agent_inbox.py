"""The agent-facing pages (docs/crm.md): login, the inbox tabs and filters, a conversation's page, the reply
window, the dashboard and media links, each seen by the role that uses it (tests/crm/conftest.py's `world`)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone

from conversations.models import Conversation, Message, MessageTemplate
from sessions.models import SessionState
from tests.conversations.factories import MessageFactory
from tests.crm.conftest import conversation, outbound

PASSWORD = "pass-word-123"


# -- helpers ------------------------------------------------------------------------------------------------


def html(response) -> str:
    return response.content.decode()


def row_ids(text: str) -> list[int]:
    """The conversations listed in an inbox page (or its rows fragment), in the order shown."""
    return [int(pk) for pk in re.findall(r'data-conversation="(\d+)"', text)]


def row(text: str, pk: int) -> str:
    match = re.search(rf'<li class="row[^"]*" data-conversation="{pk}">(.*?)</li>', text, re.S)
    assert match, f"conversation {pk} is not listed"
    return match.group(0)


def message_ids(text: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li id="m(\d+)"', text)]


def message_li(text: str, pk: int) -> str:
    match = re.search(rf'<li id="m{pk}".*?</li>', text, re.S)
    assert match, f"message {pk} is not shown"
    return match.group(0)


def inbox(client, user, **params) -> str:
    client.force_login(user)
    response = client.get("/inbox/", params)
    assert response.status_code == 200
    return html(response)


@pytest.fixture
def order_template(world) -> MessageTemplate:
    return MessageTemplate.objects.create(
        client=world.client, name="pedido_listo", language="es", body="Hola {{1}}, su pedido {{2}}"
    )


# -- signing in and out -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["inbox", "conversation"])
def test_anonymous_visitor_is_sent_to_the_login_page(client, world, page):
    # given nobody is signed in
    path = "/inbox/" if page == "inbox" else f"/conversations/{world.ana_open.pk}/"

    # when they open a CRM page
    response = client.get(path)

    # then they land on the login page, which brings them back afterwards
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={quote(path)}"


def test_login_page_signs_the_agent_in_and_opens_the_inbox(client, world):
    # given the login page
    page = client.get("/login/")
    assert page.status_code == 200
    assert 'name="username"' in html(page) and 'name="password"' in html(page)

    # when ana signs in with her password
    response = client.post("/login/", {"username": "ana", "password": PASSWORD})

    # then she is signed in and sent to her inbox, which greets her by name
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    assert int(client.session["_auth_user_id"]) == world.ana.pk
    assert "Log out ana" in html(client.get("/inbox/"))


def test_login_returns_to_the_page_asked_for(client, world):
    target = f"/conversations/{world.ana_open.pk}/"

    response = client.post("/login/", {"username": "ana", "password": PASSWORD, "next": target})

    assert response.status_code == 302
    assert response["Location"] == target


def test_wrong_password_is_refused_and_signs_nobody_in(client, world):
    response = client.post("/login/", {"username": "ana", "password": "not-her-password"})

    assert response.status_code == 200
    assert "didn&#x27;t match" in html(response) or "didn't match" in html(response)
    assert "_auth_user_id" not in client.session


def test_logout_signs_the_agent_out(client, world):
    # given ana is signed in
    client.force_login(world.ana)

    # when she logs out
    response = client.post("/logout/")

    # then she is on the login page and the inbox is closed to her again
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    assert client.get("/inbox/").status_code == 302


# -- tabs per role ------------------------------------------------------------------------------------------


def test_mine_tab_lists_only_the_agents_own_open_conversation(client, world):
    page = inbox(client, world.ana)

    assert row_ids(page) == [world.ana_open.pk]
    assert "Lucía Pérez" in page
    assert 'data-count="mine">1<' in page


def test_queue_tab_lists_waiting_conversations_of_her_queues_oldest_first(client, world):
    # given a second customer waiting in Soporte, who arrived after Rosa
    later = conversation(world.client, world.cloud, world.soporte, status="pending", name="Tomás Vega", minutes_ago=12)

    # when ana opens the Queue tab
    page = inbox(client, world.ana, tab="queue")

    # then she sees Soporte's waiting customers, oldest first, with their place in line and their wait;
    # never Ventas' nor the other business's
    assert row_ids(page) == [world.waiting.pk, later.pk]
    first, second = row(page, world.waiting.pk), row(page, later.pk)
    assert "#1<" in first and "⏱ 30 minutes" in first
    assert "#2<" in second and "⏱ 12 minutes" in second
    assert world.ventas_waiting.pk not in row_ids(page)
    assert world.foreign.pk not in row_ids(page)
    assert 'data-count="queue">2<' in page


def test_agents_have_no_all_tab_and_asking_for_it_shows_mine(client, world):
    page = inbox(client, world.ana, tab="all")

    assert 'href="?tab=all"' not in page
    assert 'href="?tab=mine" aria-current="page"' in page
    assert row_ids(page) == [world.ana_open.pk]


def test_supervisor_sees_all_conversations_of_her_queue(client, world):
    page = inbox(client, world.supervisor, tab="all")

    assert 'href="?tab=all" aria-current="page"' in page
    assert sorted(row_ids(page)) == sorted([world.ana_open.pk, world.beto_open.pk, world.waiting.pk])


def test_staff_all_tab_spans_every_queue_but_never_another_business(client, world):
    active = inbox(client, world.staff, tab="all")
    everything = inbox(client, world.staff, tab="all", status="all")

    assert 'href="?tab=all" aria-current="page"' in active
    assert sorted(row_ids(active)) == sorted(
        [world.ana_open.pk, world.beto_open.pk, world.waiting.pk, world.ventas_waiting.pk]
    )
    assert world.resolved.pk in row_ids(everything)
    assert world.foreign.pk not in row_ids(everything)
    assert "Ajeno" not in everything


# -- search and filters -------------------------------------------------------------------------------------


def test_search_by_contact_name(client, world):
    page = inbox(client, world.staff, tab="all", q="rosa")

    assert row_ids(page) == [world.waiting.pk]


def test_search_by_phone_digits_typed_with_spaces(client, world):
    # given Rosa's phone, typed the way people read it out: "987 000 123"
    digits = world.waiting.contact.phone[3:]  # without +51
    typed = " ".join(digits[i : i + 3] for i in range(0, len(digits), 3))

    page = inbox(client, world.staff, tab="all", q=typed)

    assert row_ids(page) == [world.waiting.pk]


def test_search_by_a_word_of_a_message(client, world):
    # given Mario wrote about his order
    MessageFactory(conversation=world.beto_open, body="Quiero cambiar mi pedido de zapatillas")

    page = inbox(client, world.staff, tab="all", q="zapatillas")

    assert row_ids(page) == [world.beto_open.pk]


def test_search_by_a_common_word_finds_the_same_conversations_newest_first(client, world, monkeypatch):
    # given a word in more messages than the search reads at once (the cap, lowered here to 2)
    monkeypatch.setattr("crm.inbox.TEXT_MATCH_CAP", 2)
    for conv in (world.ana_open, world.beto_open, world.waiting):
        MessageFactory(conversation=conv, body="¿Tienen delivery a Surco?")

    page = inbox(client, world.staff, tab="all", q="delivery")

    # newest activity first (Lucía and Mario 10 minutes ago, Rosa 30), as without a search
    assert sorted(row_ids(page)[:2]) == sorted([world.ana_open.pk, world.beto_open.pk])
    assert row_ids(page)[2:] == [world.waiting.pk]


def test_search_by_a_common_name_lists_the_matches_newest_first(client, world, monkeypatch):
    # given more contacts match than the search reads at once (the cap, lowered here to 2)
    monkeypatch.setattr("crm.inbox.CONTACT_MATCH_CAP", 2)

    page = inbox(client, world.staff, tab="all", q="o")  # Mario, Rosa, Pedro (and Elena, resolved)

    assert row_ids(page) == [world.ventas_waiting.pk, world.beto_open.pk, world.waiting.pk]


def test_search_of_fewer_than_three_characters_does_not_read_messages(client, world):
    MessageFactory(conversation=world.beto_open, body="código qz")

    page = inbox(client, world.staff, tab="all", q="qz")

    assert row_ids(page) == []
    assert "No conversation matches your search." in page


def test_filter_by_queue(client, world):
    page = inbox(client, world.staff, tab="all", queue=world.ventas.pk)

    assert row_ids(page) == [world.ventas_waiting.pk]


def test_filter_by_number(client, world):
    sandbox = inbox(client, world.staff, tab="all", number=world.sandbox.pk)
    cloud = inbox(client, world.staff, tab="all", number=world.cloud.pk)

    assert row_ids(sandbox) == [world.ventas_waiting.pk]
    assert sorted(row_ids(cloud)) == sorted([world.ana_open.pk, world.beto_open.pk, world.waiting.pk])


def test_filter_by_status(client, world):
    resolved = inbox(client, world.staff, tab="all", status="resolved")
    pending = inbox(client, world.staff, tab="all", status="pending")
    ana_resolved = inbox(client, world.ana, status="resolved")

    assert row_ids(resolved) == [world.resolved.pk]
    assert "Elena Soto" in resolved
    assert sorted(row_ids(pending)) == sorted([world.waiting.pk, world.ventas_waiting.pk])
    assert row_ids(ana_resolved) == [world.resolved.pk]


def test_snoozed_conversation_leaves_mine_until_its_time(client, world):
    # given ana snoozed her conversation for an hour
    Conversation.objects.filter(pk=world.ana_open.pk).update(snoozed_until=timezone.now() + timedelta(hours=1))

    # then it is gone from Mine (and from its count) but listed under "snoozed"
    mine = inbox(client, world.ana)
    snoozed = inbox(client, world.ana, status="snoozed")
    assert row_ids(mine) == []
    assert 'data-count="mine">0<' in mine
    assert row_ids(snoozed) == [world.ana_open.pk]
    assert "💤" in row(snoozed, world.ana_open.pk)

    # when its time has come
    Conversation.objects.filter(pk=world.ana_open.pk).update(snoozed_until=timezone.now() - timedelta(minutes=1))

    # then it is back in Mine
    assert row_ids(inbox(client, world.ana)) == [world.ana_open.pk]


def test_unread_badge_shows_the_conversations_unread_count(client, world):
    page = inbox(client, world.ana)

    assert '<span class="badge unread" aria-label="2 unread messages">2</span>' in row(page, world.ana_open.pk)
    assert 'data-count="unread"' in page


def test_rows_fragment_is_json_with_rows_and_counts(client, world):
    client.force_login(world.ana)

    response = client.get("/inbox/", {"tab": "queue", "fragment": "rows"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert row_ids(data["rows"]) == [world.waiting.pk]
    assert "<html" not in data["rows"]
    assert data["counts"] == {"mine": 1, "unread": 2, "queue": 1}


@pytest.mark.parametrize(
    "params",
    [
        {"page": "abc"},
        {"page": "-3"},
        {"queue": "9" * 25},
        {"number": "x"},
        {"status": "everything"},
        {"tab": "nowhere"},
        pytest.param({"page": "9" * 25}, id="page-past-bigint"),
        pytest.param({"q": "Rosa\x00"}, id="nul-in-search"),
    ],
)
def test_filters_that_do_not_parse_fall_back_instead_of_failing(client, world, params):
    client.force_login(world.ana)
    client.raise_request_exception = False

    response = client.get("/inbox/", params)

    assert response.status_code == 200


# -- one conversation ---------------------------------------------------------------------------------------


def test_conversation_page_shows_the_history_in_order_with_delivery_ticks(client, world):
    # given ana's conversation with answers in every state, a photo, a quoted reply and a note
    conv = world.ana_open
    first = conv.messages.get()
    sent = outbound(conv, "Recibido", status=Message.Status.SENT, sent_by=world.ana)
    delivered = outbound(conv, "Lo reviso", status=Message.Status.DELIVERED, sent_by=world.ana)
    read = outbound(conv, "Listo", status=Message.Status.READ, sent_by=world.ana)
    failed = outbound(
        conv, "¿Sigue ahí?", status=Message.Status.FAILED, error_code="131026", error_reason="Recipient not on WhatsApp"
    )
    photo = MessageFactory(conversation=conv, kind=Message.Kind.IMAGE, body="", media_id="media-123")
    quoted = outbound(conv, "Sobre su pregunta", quoted=first, sent_by=world.ana)
    note = MessageFactory(
        conversation=conv,
        direction=Message.Direction.INTERNAL,
        kind=Message.Kind.NOTE,
        origin=Message.Origin.AGENT,
        body="Cliente frecuente",
        sent_by=world.beto,
    )
    client.force_login(world.ana)

    # when ana opens it
    response = client.get(f"/conversations/{conv.pk}/")

    # then the history is in order, each message marked by its direction
    assert response.status_code == 200
    page = html(response)
    assert message_ids(page) == [first.pk, sent.pk, delivered.pk, read.pk, failed.pk, photo.pk, quoted.pk, note.pk]
    assert 'class="msg in kind-text' in message_li(page, first.pk)
    assert 'class="msg out kind-text origin-agent' in message_li(page, sent.pk)
    # outbound messages carry their ticks
    assert re.search(r'class="ticks sent" title="Sent".*✓</span>', message_li(page, sent.pk))
    assert re.search(r'class="ticks delivered" title="Delivered".*✓✓</span>', message_li(page, delivered.pk))
    assert 'class="ticks read"' in message_li(page, read.pk)
    assert 'class="ticks failed" title="Failed: Recipient not on WhatsApp"' in message_li(page, failed.pk)
    assert "ticks" not in message_li(page, first.pk)
    # a photo links to its file, a quoted reply shows what it answers, a note shows its author
    assert f'href="/conversations/{conv.pk}/media/{photo.pk}/"' in message_li(page, photo.pk)
    quote_html = f'<blockquote class="quoted"><a href="#m{first.pk}">Hola, soy Lucía Pérez</a></blockquote>'
    assert quote_html in message_li(page, quoted.pk)
    assert "Note · beto" in message_li(page, note.pk)
    assert "Cliente frecuente" in message_li(page, note.pk)


def test_opening_her_conversation_clears_its_unread_count(client, world):
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/")

    assert response.status_code == 200
    world.ana_open.refresh_from_db()
    assert world.ana_open.unread_count == 0
    assert 'data-count="unread"' not in inbox(client, world.ana)


def test_a_supervisor_reading_it_leaves_it_unread_for_the_agent(client, world):
    client.force_login(world.supervisor)

    response = client.get(f"/conversations/{world.ana_open.pk}/")

    assert response.status_code == 200
    world.ana_open.refresh_from_db()
    assert world.ana_open.unread_count == 2


def test_messages_fragment_returns_what_changed_since_a_time(client, world):
    # given a history last touched an hour ago
    conv = world.ana_open
    an_hour_ago = timezone.now() - timedelta(hours=1)
    old_answer = outbound(conv, "Ya lo enviamos", status=Message.Status.SENT)
    Message.objects.filter(conversation=conv).update(created_at=an_hour_ago, updated_at=an_hour_ago)
    since = timezone.now() - timedelta(minutes=1)
    # and since then the old answer was delivered and the customer wrote again
    Message.objects.filter(pk=old_answer.pk).update(status=Message.Status.DELIVERED, updated_at=timezone.now())
    new = MessageFactory(conversation=conv, body="¿Cuándo llega?")
    client.force_login(world.ana)

    # when the page asks what it missed
    response = client.get(f"/conversations/{conv.pk}/", {"fragment": "messages", "since": since.isoformat()})

    # then it gets exactly those two, rendered, and a new cursor
    assert response.status_code == 200
    data = response.json()
    assert [item["id"] for item in data["items"]] == [old_answer.pk, new.pk]
    assert 'class="ticks delivered"' in data["items"][0]["html"]
    assert "¿Cuándo llega?" in data["items"][1]["html"]
    assert data["cursor"] > since.isoformat()[:19]


@pytest.mark.parametrize("since", ["", "yesterday", "2024-01-01T10:00:00"], ids=["missing", "words", "no-offset"])
def test_messages_fragment_refuses_a_bad_since(client, world, since):
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/", {"fragment": "messages", "since": since})

    assert response.status_code == 400
    assert "since" in response.json()["error"]


def test_messages_fragment_refuses_an_impossible_date(client, world):
    client.force_login(world.ana)
    client.raise_request_exception = False

    response = client.get(
        f"/conversations/{world.ana_open.pk}/", {"fragment": "messages", "since": "2024-13-45T10:00:00+00:00"}
    )

    assert response.status_code == 400
    assert "since" in response.json()["error"]


def test_header_fragment_is_json_with_the_header_and_the_composer(client, world):
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/", {"fragment": "header"})

    assert response.status_code == 200
    data = response.json()
    assert 'data-conversation-status="open"' in data["header"]
    assert "assigned to ana" in data["header"]
    assert 'name="text"' in data["composer"]


def test_what_customers_write_is_shown_as_text_never_as_markup(client, world):
    # given a customer whose name and message carry HTML
    Conversation.objects.filter(pk=world.ana_open.pk).update(last_message_at=timezone.now())
    world.ana_open.contact.name = "<b>Lucía</b>"
    world.ana_open.contact.save()
    MessageFactory(conversation=world.ana_open, body='<script>alert("x")</script>')
    client.force_login(world.ana)

    # when ana reads her inbox, the conversation, and its live catch-up
    listed = inbox(client, world.ana)
    opened = html(client.get(f"/conversations/{world.ana_open.pk}/"))
    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    caught_up = client.get(f"/conversations/{world.ana_open.pk}/", {"fragment": "messages", "since": since}).json()

    # then she sees the characters, and no page runs them
    for text in (listed, opened, *[item["html"] for item in caught_up["items"]]):
        assert "<script>alert" not in text
        assert "<b>Lucía</b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in opened
    assert "&lt;b&gt;Lucía&lt;/b&gt;" in listed


# -- the 24-hour window -------------------------------------------------------------------------------------


def test_cloud_conversation_past_the_window_offers_only_templates(client, world, order_template):
    # given Lucía last wrote 25 hours ago on the Cloud API number
    Conversation.objects.filter(pk=world.ana_open.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))
    client.force_login(world.ana)

    # when ana opens the conversation
    page = html(client.get(f"/conversations/{world.ana_open.pk}/"))

    # then she can pick an approved template and fill its values, but there is no free-text box
    assert "data-template-form" in page
    assert "WhatsApp only allows an approved template" in page
    assert f'<option value="{order_template.pk}">pedido_listo (es)</option>' in page
    assert "Hola {{1}}, su pedido {{2}}" in page  # the body the form fills in, with its two values
    assert 'name="text"' not in page
    assert "data-reply-form" not in page


def test_cloud_conversation_inside_the_window_offers_free_text(client, world, order_template):
    client.force_login(world.ana)

    page = html(client.get(f"/conversations/{world.ana_open.pk}/"))

    assert 'name="text"' in page
    assert "The 24-hour window closes at" in page
    assert "data-template-form" not in page


def test_sandbox_conversation_always_offers_free_text(client, world):
    # given a sandbox customer who last wrote 25 hours ago
    Conversation.objects.filter(pk=world.ventas_waiting.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))
    client.force_login(world.carla)

    page = html(client.get(f"/conversations/{world.ventas_waiting.pk}/"))

    assert 'name="text"' in page
    assert "data-reply-form" in page
    assert "data-template-form" not in page
    assert "window closes" not in page


# -- dashboard ----------------------------------------------------------------------------------------------


def test_dashboard_is_closed_to_agents(client, world):
    client.force_login(world.ana)

    assert client.get("/dashboard/").status_code == 403
    assert 'href="/dashboard/"' not in inbox(client, world.ana)


def test_staff_dashboard_shows_numbers_queues_and_agents(client, world):
    client.force_login(world.staff)

    response = client.get("/dashboard/")

    assert response.status_code == 200
    page = html(response)
    numbers = dict(re.findall(r'<tr data-number="(\d+)">(.*?)</tr>', page, re.S))
    assert set(numbers) == {str(world.cloud.pk), str(world.sandbox.pk)}
    assert "Linea Cloud" in numbers[str(world.cloud.pk)] and "Cloud API (webhooks)" in numbers[str(world.cloud.pk)]
    assert "Linea Sandbox" in numbers[str(world.sandbox.pk)]
    assert f'data-state="{SessionState.DISCONNECTED}"' in numbers[str(world.sandbox.pk)]
    assert "Ajena" not in page
    queues = dict(re.findall(r'<tr data-queue="(\d+)">(.*?)</tr>', page, re.S))
    assert set(queues) == {str(world.soporte.pk), str(world.ventas.pk)}
    assert "<td>1</td><td>30 minutes</td><td>2</td>" in queues[str(world.soporte.pk)]
    assert "<td>1</td><td>5 minutes</td><td>0</td>" in queues[str(world.ventas.pk)]
    agents = dict(re.findall(r'<tr data-agent="(\d+)">(.*?)</tr>', page, re.S))
    assert set(agents) == {str(u.pk) for u in (world.ana, world.beto, world.carla, world.supervisor)}
    assert "<td>1 / 5</td>" in agents[str(world.ana.pk)]
    assert "<td>0 / 5</td>" in agents[str(world.carla.pk)]
    assert "Offline" in agents[str(world.ana.pk)]


def test_supervisor_dashboard_shows_only_her_queue_and_its_agents(client, world):
    client.force_login(world.supervisor)

    response = client.get("/dashboard/")

    assert response.status_code == 200
    page = html(response)
    assert re.findall(r'<tr data-number="(\d+)">', page) == [str(world.cloud.pk)]
    assert re.findall(r'<tr data-queue="(\d+)">', page) == [str(world.soporte.pk)]
    assert sorted(re.findall(r'<tr data-agent="(\d+)">', page)) == sorted(
        str(u.pk) for u in (world.ana, world.beto, world.supervisor)
    )
    assert "carla" not in page and "Ventas" not in page


# -- media --------------------------------------------------------------------------------------------------


def test_sandbox_media_answers_with_a_page_saying_it_is_not_available(client, world):
    # given a photo received on the sandbox number
    photo = MessageFactory(conversation=world.ventas_waiting, kind=Message.Kind.IMAGE, body="", media_id="sbx-1")
    client.force_login(world.carla)

    # when carla opens it
    response = client.get(f"/conversations/{world.ventas_waiting.pk}/media/{photo.pk}/")

    # then she reads why, and how to get back
    assert response.status_code == 409
    page = html(response)
    assert "Media not available" in page
    assert "The sandbox network carries no media." in page
    assert f'href="/conversations/{world.ventas_waiting.pk}/"' in page


@pytest.fixture
def cloud_media(world, graph_api):
    """The Cloud API number talks to the fake Graph API, which holds one PDF a customer sent to ana."""
    world.cloud.refresh_from_db()  # the token as stored: encrypted, read back as a Secret
    graph_api.tokens[world.cloud.phone_number_id] = world.cloud.access_token.reveal()
    graph_api.add_media("media-pdf-1", PDF, "application/pdf", phone_number_id=world.cloud.phone_number_id)
    return graph_api


PDF = b"%PDF-1.4 factura\n%%EOF"


def test_cloud_media_is_fetched_for_an_agent_who_may_see_it(client, world, cloud_media):
    # given Lucía sent an invoice
    doc = MessageFactory(
        conversation=world.ana_open,
        kind=Message.Kind.DOCUMENT,
        body="factura.pdf",
        media_id="media-pdf-1",
        media_mime_type="application/pdf",
        media_filename="factura.pdf",
    )
    client.force_login(world.ana)

    # when ana opens it from the conversation
    response = client.get(f"/conversations/{world.ana_open.pk}/media/{doc.pk}/")

    # then her browser gets the file itself, as a download (a document is never shown as a page of ours),
    # private, never sniffed as something else
    assert response.status_code == 200
    assert response.content == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="factura.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, max-age=300"


def test_cloud_media_with_a_line_break_in_its_name_still_opens(client, world, cloud_media):
    doc = MessageFactory(
        conversation=world.ana_open,
        kind=Message.Kind.DOCUMENT,
        media_id="media-pdf-1",
        media_mime_type="application/pdf",
        media_filename="factura\r\nSet-Cookie: x=1.pdf",
    )
    client.force_login(world.ana)
    client.raise_request_exception = False

    response = client.get(f"/conversations/{world.ana_open.pk}/media/{doc.pk}/")

    assert response.status_code == 200
    assert response.content == PDF
    assert response["Content-Disposition"] == 'attachment; filename="facturaSet-Cookie: x=1.pdf"'
    assert "Set-Cookie" not in response.headers


def test_media_of_a_conversation_she_cannot_see_is_not_found(client, world):
    photo = MessageFactory(conversation=world.ventas_waiting, kind=Message.Kind.IMAGE, body="", media_id="sbx-1")
    foreign = MessageFactory(conversation=world.foreign, kind=Message.Kind.IMAGE, body="", media_id="wa-1")
    client.force_login(world.ana)

    assert client.get(f"/conversations/{world.ventas_waiting.pk}/media/{photo.pk}/").status_code == 404
    assert client.get(f"/conversations/{world.foreign.pk}/media/{foreign.pk}/").status_code == 404
    # nor through a conversation she may see
    assert client.get(f"/conversations/{world.ana_open.pk}/media/{photo.pk}/").status_code == 404


def test_conversation_of_another_queue_or_business_is_not_found(client, world):
    client.force_login(world.ana)

    assert client.get(f"/conversations/{world.ventas_waiting.pk}/").status_code == 404
    assert client.get(f"/conversations/{world.foreign.pk}/").status_code == 404
