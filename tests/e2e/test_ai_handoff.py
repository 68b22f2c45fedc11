"""The AI assistant answers first and an agent takes over, in the browser, with the real product running (daphne,
a sessions worker owning a paired sandbox number, a worker answering with the fake OpenAI-compatible API): the
customer's phone gets the assistant's answer, the agent sees it marked as AI, takes the conversation (the
assistant stops), answers herself, and hands it back to the assistant."""

from __future__ import annotations

import pytest

from conversations.models import AISettings, Conversation, Message
from crm.models import ClientMembership
from queues.models import AgentAvailability, QueueMembership
from tests.conftest import start_celery_worker, stop_processes
from tests.crm.factories import UserFactory
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_agent_inbox import _paired_sandbox_number, _wait_connected
from tests.queues.factories import QueueFactory

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = "+51 911 555 777"
AI_ANSWER = "¡Hola! Sí, tenemos pan integral a S/ 8. ¿Te separo uno?"


def test_the_assistant_answers_and_an_agent_takes_over_and_hands_back(browser, stack, default_client, openai_api):
    # given a sandbox number whose assistant is on, an agent of its queue (offline: nobody is assigned by policy)
    queue = QueueFactory(client=default_client, name="Ventas")
    number = _paired_sandbox_number(default_client, queue)
    AISettings.objects.create(number=number, language="Spanish", business_context="Pan integral: S/ 8.")
    openai_api.default_reply = AI_ANSWER
    agent = UserFactory(username="valeria", first_name="Valeria")
    agent.set_password("a-long-test-password")
    agent.save()
    ClientMembership.objects.create(user=agent, client=default_client)
    QueueMembership.objects.create(queue=queue, user=agent)
    AgentAvailability.objects.create(user=agent)
    _wait_connected(number)
    worker = start_celery_worker(
        {
            **stack.env,
            "AI_DEBOUNCE_SECONDS": "0.5",
            "TEST_OPENAI_BASE_URL": openai_api.url,
            "TEST_OPENAI_API_KEY": openai_api.api_key,
        },
        queues="default",
        name="e2e-ai",
    )
    context = browser.new_context(base_url=stack.url, locale="es-PE", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    phone_context = browser.new_context(base_url=stack.url, viewport={"width": 800, "height": 800})
    phone_context.set_default_timeout(20_000)
    phone = phone_context.new_page()  # the customer's own device: not the agent's session (nor its CSRF token)
    try:
        # when a customer asks something from the sandbox phone
        phone.goto(f"/sandbox/numbers/{number.pk}/phone/?phone={CUSTOMER.replace(' ', '%20').replace('+', '%2B')}")
        phone.fill("#name", "Carmen Vega")
        phone.fill("#body", "Hola, ¿tienen pan integral?")
        phone.click("#send")

        # then the assistant's answer reaches the phone
        phone.locator(".bubble.out", has_text="pan integral a S/ 8").wait_for()
        conversation = Conversation.objects.get(contact__name="Carmen Vega")
        assert conversation.status == Conversation.Status.AI and conversation.assigned_to is None

        # and the agent sees the conversation answered by the assistant, its answer marked as AI
        page.goto("/login/")
        page.fill("#id_username", "valeria")
        page.fill("#id_password", "a-long-test-password")
        page.click("button[type=submit]")
        page.wait_for_url("**/inbox/")
        page.goto(f"/conversations/{conversation.pk}/")
        page.wait_for_selector('[data-conversation-status="ai"]')
        assert "Responde la IA" in page.inner_text(".conv-head")
        ai_message = page.locator(".msg.out.origin-ai", has_text="pan integral a S/ 8")
        ai_message.wait_for()
        assert "IA" in ai_message.inner_text()

        # when she takes it and answers herself, the assistant stops
        page.click("form[action$='/take/'] button")
        page.wait_for_selector('[data-conversation-status="open"]')
        assert "IA detenida: Un agente tomó la conversación" in page.inner_text(".conv-head")
        page.fill("#reply-text", "Hola Carmen, soy Valeria: te lo separo ya.")
        page.click("[data-reply-form] button[type=submit]")
        phone.locator(".bubble.out", has_text="soy Valeria").wait_for()
        conversation.refresh_from_db()
        assert conversation.assigned_to == agent and conversation.ai_stop_reason == "agent_took"

        # and when she hands it back, the assistant has it again and answers the customer's next message
        page.click("#ai-resume")
        page.wait_for_selector('[data-conversation-status="ai"]')
        openai_api.reply_next("¡Listo! Te esperamos.")
        phone.fill("#body", "Gracias, paso a las 5")
        phone.click("#send")
        phone.locator(".bubble.out", has_text="Te esperamos").wait_for()
        conversation.refresh_from_db()
        assert conversation.status == Conversation.Status.AI and conversation.assigned_to is None
        bodies = list(conversation.messages.filter(direction=Message.Direction.OUTBOUND).values_list("origin", "body"))
        assert bodies == [
            ("ai", AI_ANSWER),
            ("agent", "Hola Carmen, soy Valeria: te lo separo ya."),
            ("ai", "¡Listo! Te esperamos."),
        ]
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ai_handoff.png"), full_page=True)
        phone.screenshot(path=str(ARTIFACTS / "ai_handoff_phone.png"), full_page=True)
        raise
    finally:
        context.close()
        phone_context.close()
        stop_processes([worker])
