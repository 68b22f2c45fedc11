"""The AI assistant end to end with real processes: a customer's messages stored by the inbound service, a real
Celery worker answering after the debounce through the fake OpenAI-compatible API, and the answer delivered to
the fake Graph API, once for the whole burst."""

from __future__ import annotations

import time
import uuid

import pytest

from conversations.inbound import parse_webhook
from conversations.models import AISettings, Conversation, Message
from conversations.services.receive import inbound_messages_receive
from tests.conftest import project_env, start_celery_worker, stop_processes
from tests.conversations import meta_payloads as meta
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "EAAG-ai-worker-test-token-00001"
CUSTOMER = "51987004321"


def receive(number, *texts: str) -> None:
    now = str(int(time.time()))
    payload = meta.webhook(
        meta.messages_change(
            number.phone_number_id,
            messages=[meta.text_message(f"wamid.w{uuid.uuid4().hex}", CUSTOMER, t, timestamp=now) for t in texts],
            contacts=[meta.contact(CUSTOMER, "Rosa")],
        )
    )
    inbound_messages_receive(number=number, messages=parse_webhook(payload).messages)


def test_a_burst_of_customer_messages_gets_one_ai_answer_delivered_by_a_worker(
    default_client, graph_api, openai_api, settings
):
    # given a Cloud API number whose assistant is on, and a real worker pointed at both fakes
    settings.AI_DEBOUNCE_SECONDS = 1.0
    queue = QueueFactory(client=default_client, name="Ventas")
    number = WhatsAppNumberFactory(client=default_client, queue=queue, access_token=TOKEN)
    graph_api.tokens[number.phone_number_id] = TOKEN
    AISettings.objects.create(number=number, business_context="Pan integral: S/ 8.")
    openai_api.reply_next("El pan integral cuesta S/ 8. ¿Te separo uno?", prompt_tokens=50, completion_tokens=12)
    env = project_env(
        APP_COMPONENT="worker",
        TEST_GRAPH_API_URL=graph_api.url,
        TEST_OPENAI_BASE_URL=openai_api.url,
        TEST_OPENAI_API_KEY=openai_api.api_key,
        LOG_LEVEL="WARNING",
    )
    worker = start_celery_worker(env, queues="default", name="ai")
    try:
        # when the customer writes three messages within the debounce
        receive(number, "Hola")
        receive(number, "¿cuánto cuesta")
        receive(number, "el pan integral?")

        # then, once the worker is done, the fake Graph API got exactly one text: the model's answer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            texts = [r for r in graph_api.requests if r.method == "POST" and (r.json or {}).get("type") == "text"]
            if texts:
                break
            time.sleep(0.2)
        time.sleep(2.0)  # anything sent twice would arrive now
    finally:
        stop_processes([worker])

    texts = [r.json for r in graph_api.requests if r.method == "POST" and (r.json or {}).get("type") == "text"]
    assert [t["text"]["body"] for t in texts] == ["El pan integral cuesta S/ 8. ¿Te separo uno?"]
    assert texts[0]["to"] == CUSTOMER
    assert len(openai_api.completions) == 1
    users = [m["content"] for m in openai_api.completions[0]["messages"] if m["role"] == "user"]
    assert users == ["Hola", "¿cuánto cuesta", "el pan integral?"]
    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.AI and conversation.ai_replies == 1
    reply = conversation.messages.get(origin=Message.Origin.AI)
    assert reply.status == Message.Status.ACCEPTED and reply.provider_message_id
