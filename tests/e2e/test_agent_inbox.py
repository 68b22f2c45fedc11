"""An agent works a conversation end to end, in Spanish, with the real product running (daphne and a sessions
worker owning a paired sandbox number): she logs in, a customer writes from the sandbox phone page, the message
appears in her inbox without a reload, she answers, and the customer's phone shows the answer, whose ticks turn
blue on her page when the customer reads it.

With CRM_SCREENSHOTS=docs the test also refreshes docs/img/crm-inbox.png and docs/img/crm-conversation.png (the
README shows them); otherwise the screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, Message
from crm.models import ClientMembership
from queues.models import AgentAvailability, QueueMembership, QuickReply
from sessions.engines.sandbox import sandbox_customer_send
from sessions.models import NumberSession, SandboxAccount, SessionState
from tests.conftest import ROOT
from tests.conversations.factories import ContactFactory, ConversationFactory, MessageFactory
from tests.crm.factories import UserFactory
from tests.e2e.conftest import ARTIFACTS
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+51 911 222 333"
DOCS_IMG = ROOT / "docs" / "img"


def _paired_sandbox_number(client, queue):
    number = WhatsAppNumberFactory(
        client=client, engine="sandbox", alias="Tienda Miraflores", display_number="+51 900 400 002", queue=queue
    )
    jid = "51900400002.0:1@s.whatsapp.net"
    NumberSession.objects.filter(number=number).update(device_jid=jid, keep_connected=True)
    SandboxAccount.objects.update_or_create(number=number, defaults={"device_jid": jid})
    return number


def _history(client, number, queue, agent):
    """A few earlier conversations, so the inbox looks like a working day."""
    now = timezone.now()
    people = [
        ("Lucía Pérez", "¿Tienen la talla M en azul?", Conversation.Status.OPEN, agent, 2),
        ("Mario Díaz", "Gracias, ya me llegó el pedido", Conversation.Status.OPEN, agent, 0),
        ("Rosa Quispe", "Hola, ¿hacen envíos a Arequipa?", Conversation.Status.PENDING, None, 0),
        ("Jorge Ramos", "Quisiera cambiar mi dirección de entrega", Conversation.Status.PENDING, None, 0),
    ]
    for n, (name, body, status, assigned, unread) in enumerate(people):
        at = now - timedelta(minutes=7 * (n + 1))
        contact = ContactFactory(client=client, name=name)
        conversation = ConversationFactory(
            client=client,
            number=number,
            contact=contact,
            queue=queue,
            status=status,
            assigned_to=assigned,
            waiting_since=at if status == Conversation.Status.PENDING else None,
            last_message_at=at,
            last_inbound_at=at,
            unread_count=unread,
        )
        MessageFactory(conversation=conversation, body=body, provider_message_id=f"sandbox.in.hist{n}")
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=at)


def _shot(page, name: str) -> None:
    target = DOCS_IMG if os.environ.get("CRM_SCREENSHOTS") == "docs" else ARTIFACTS
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name), full_page=False)


def _wait_connected(number, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if NumberSession.objects.get(number=number).state == SessionState.CONNECTED:
            return
        time.sleep(0.2)
    raise AssertionError(f"the sandbox number never connected: {NumberSession.objects.get(number=number).state}")


def test_agent_sees_a_customer_message_live_answers_it_and_the_customer_reads_it(browser, stack, default_client):
    queue = QueueFactory(client=default_client, name="Atención al cliente")
    number = _paired_sandbox_number(default_client, queue)
    agent = UserFactory(username="valeria", first_name="Valeria", last_name="Torres")
    agent.set_password("a-long-test-password")
    agent.save()
    ClientMembership.objects.create(user=agent, client=default_client)
    QueueMembership.objects.create(queue=queue, user=agent)
    AgentAvailability.objects.create(user=agent)
    QuickReply.objects.create(queue=queue, shortcut="gracias", text="¡Gracias por escribirnos! ¿En qué más le ayudo?")
    _history(default_client, number, queue, agent)
    _wait_connected(number)

    context = browser.new_context(base_url=stack.url, locale="es-PE", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    phone = context.new_page()
    try:
        # she logs in (the page is in Spanish, the browser's language) and goes online
        page.goto("/inbox/")
        assert "/login/" in page.url
        page.fill("#id_username", "valeria")
        page.fill("#id_password", "a-long-test-password")
        page.click("button[type=submit]")
        page.wait_for_url("**/inbox/")
        page.click("button.avail-online")
        page.wait_for_selector('button.avail-online[aria-pressed="true"]')
        page.wait_for_selector("[data-live-state].on")
        assert AgentAvailability.objects.get(user=agent).status == AgentAvailability.Status.ONLINE

        # a customer writes from the sandbox phone; the inbox, never reloaded, shows it
        page.evaluate("window.__notReloaded = true")
        phone.goto(f"/sandbox/numbers/{number.pk}/phone/?phone={CUSTOMER.replace(' ', '%20').replace('+', '%2B')}")
        phone.fill("#name", "Carmen Vega")
        phone.fill("#body", "Hola, ¿mi pedido 4512 ya salió?")
        phone.click("#send")
        row = page.locator(".row", has_text="Carmen Vega")
        row.wait_for()
        assert page.evaluate("window.__notReloaded") is True
        assert "¿mi pedido 4512 ya salió?" in row.inner_text()
        conversation = Conversation.objects.get(contact__name="Carmen Vega")
        assert conversation.assigned_to_id == agent.pk  # she is online: the policy gave it to her
        _shot(page, "crm-inbox.png")

        # she opens it and answers with a quick reply plus her own words
        row.locator("a").click()
        page.wait_for_url(f"**/conversations/{conversation.pk}/")
        page.wait_for_selector("[data-live-state].on")
        page.type("#reply-text", "/gracias")
        page.keyboard.press("Tab")
        assert page.input_value("#reply-text").startswith("¡Gracias por escribirnos!")
        page.fill("#reply-text", "Sí, salió hoy por la mañana. Le llega mañana antes de las 6 pm.")
        page.click("[data-reply-form] button[type=submit]")
        mine = page.locator(".msg.out", has_text="Le llega mañana")
        mine.wait_for()

        # the customer's phone shows the answer; opening the chat reads it, and her page turns the ticks blue
        phone.locator(".bubble.out", has_text="Le llega mañana").wait_for()
        phone.bring_to_front()
        page.evaluate("window.__notReloaded = true")
        mine.locator(".ticks.read").wait_for()
        assert page.evaluate("window.__notReloaded") is True
        sent = Message.objects.get(conversation=conversation, direction=Message.Direction.OUTBOUND)
        assert sent.sent_by_id == agent.pk and sent.status == Message.Status.READ

        # a customer message while the conversation is open appears without a reload
        phone.fill("#body", "¡Perfecto, muchas gracias!")
        phone.click("#send")
        page.locator(".msg.in", has_text="¡Perfecto, muchas gracias!").wait_for()
        assert page.evaluate("window.__notReloaded") is True
        page.fill("#reply-text", "¡Con gusto, Carmen! Que tenga buen día.")
        _shot(page, "crm-conversation.png")

        # the web process restarts (a deploy); what arrives meanwhile shows up once the page reconnects by itself
        stack.stop_web()
        page.wait_for_selector("[data-live-state].off")
        # the phone's page needs the web process; the customer's phone itself only needs the sandbox network
        sandbox_customer_send(number=number, phone=CUSTOMER, body="¿Me avisan cuando llegue?", name="Carmen Vega")
        deadline = time.monotonic() + 15
        while not Message.objects.filter(conversation=conversation, body="¿Me avisan cuando llegue?").exists():
            assert time.monotonic() < deadline, "the sessions worker never stored the customer's message"
            time.sleep(0.2)
        stack.start_web()
        page.locator(".msg.in", has_text="¿Me avisan cuando llegue?").wait_for(timeout=40_000)
        page.wait_for_selector("[data-live-state].on")
        assert page.evaluate("window.__notReloaded") is True
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "agent_inbox.png"), full_page=True)
        phone.screenshot(path=str(ARTIFACTS / "agent_inbox_phone.png"), full_page=True)
        raise
    finally:
        context.close()
