"""Staff operating the AI assistant in admin: settings per number or queue with clear errors, Try it against the
fake OpenAI-compatible API, the usage page per number and queue, and the activity list, each client's own only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from conversations.models import AIActivity, AISettings, Conversation
from tests.conversations.factories import ConversationFactory
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory
from tests.sessions.test_numbers_admin import staff_login

pytestmark = pytest.mark.django_db

SETTINGS = "/admin/conversations/aisettings/"


def settings_form(**fields) -> dict:
    form = {
        "number": "",
        "queue": "",
        "enabled": "on",
        "model": "",
        "system_prompt": "Eres el asistente de la tienda.",
        "business_context": "Abrimos de 9 a 18.",
        "language": "",
        "temperature": "0.3",
        "max_history": "20",
        "max_replies": "10",
        "hours": "always",
        "business_days": ["1", "2", "3", "4", "5"],
        "opens_at": "09:00",
        "closes_at": "18:00",
        "handoff_keywords": "",
        "handoff_message": "",
    }
    form.update(fields)
    return form


def test_staff_create_settings_for_a_number_of_their_client(client, ventas):
    staff_login(client, ventas)
    number = WhatsAppNumberFactory(client=ventas)

    response = client.post(f"{SETTINGS}add/", settings_form(number=number.pk, hours="outside"))

    assert response.status_code == 302, response.content.decode()[:2000]
    row = AISettings.objects.get()
    assert row.number == number and row.client == ventas and row.hours == AISettings.Hours.OUTSIDE
    assert row.business_days == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "Choose either a number or a queue."),
        ({"both": True}, "Choose either a number or a queue."),
        ({"hours": "inside", "business_days": []}, "Choose the days with business hours."),
        ({"hours": "inside", "closes_at": "09:00"}, "must not start and end at the same time"),
        ({"temperature": "3"}, "less than or equal to 2"),
    ],
    ids=["neither", "both", "no business days", "empty hours", "temperature"],
)
def test_settings_that_cannot_work_are_refused_with_a_clear_error(client, ventas, fields, error):
    staff_login(client, ventas)
    number = WhatsAppNumberFactory(client=ventas)
    queue = QueueFactory(client=ventas)
    form = settings_form(number=number.pk)
    if fields.pop("both", False):
        form["queue"] = queue.pk
    elif not fields:
        form["number"] = ""
    form.update(fields)

    response = client.post(f"{SETTINGS}add/", form)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not AISettings.objects.exists()


def test_staff_cannot_pick_another_clients_number_or_see_its_settings(client, ventas, marketing):
    staff_login(client, ventas)
    foreign = WhatsAppNumberFactory(client=marketing)
    AISettings.objects.create(number=foreign)

    response = client.post(f"{SETTINGS}add/", settings_form(number=foreign.pk))

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert list(client.get(SETTINGS).context["cl"].result_list) == []


def test_try_it_shows_the_answer_and_the_prompt(client, ventas, openai_api):
    staff_login(client, ventas)
    row = AISettings.objects.create(number=WhatsAppNumberFactory(client=ventas), business_context="Pan: S/ 2")
    openai_api.reply_next("Abrimos a las 9.", prompt_tokens=40, completion_tokens=5)

    page = client.post(f"{SETTINGS}{row.pk}/try/", {"question": "¿a qué hora abren?"}).content.decode()

    assert 'id="ai-try-answer"' in page and "Abrimos a las 9." in page
    assert "40 tokens in, 5 out" in page and "Pan: S/ 2" in page
    assert openai_api.completions[0]["messages"][-1] == {"role": "user", "content": "¿a qué hora abren?"}


def test_try_it_says_why_there_is_no_answer(client, ventas, openai_api):
    staff_login(client, ventas)
    row = AISettings.objects.create(number=WhatsAppNumberFactory(client=ventas))
    openai_api.api_key = "sk-another-key"  # the configured key is refused

    page = client.post(f"{SETTINGS}{row.pk}/try/", {"question": "Hola"}).content.decode()

    assert 'id="ai-try-error"' in page and "refused OPENAI_API_KEY (401)" in page


def test_the_usage_page_counts_per_number_and_queue_for_the_staffs_clients(client, ventas, marketing):
    staff_login(client, ventas)
    queue = QueueFactory(client=ventas, name="Ventas Lima")
    number = WhatsAppNumberFactory(client=ventas, alias="Linea Ventas", queue=queue)
    conversation = ConversationFactory(client=ventas, number=number, queue=queue)
    for kind, reason, tokens in [
        ("reply", "", 100),
        ("reply", "", 50),
        ("handoff", Conversation.AIStopReason.KEYWORD, 0),
    ]:
        AIActivity.objects.create(
            client=ventas,
            conversation=conversation,
            number=number,
            queue=queue,
            kind=kind,
            reason=reason,
            prompt_tokens=tokens,
            completion_tokens=tokens // 10,
        )
    foreign_number = WhatsAppNumberFactory(client=marketing, alias="Linea Ajena")
    AIActivity.objects.create(
        client=marketing,
        conversation=ConversationFactory(client=marketing, number=foreign_number),
        number=foreign_number,
        kind="reply",
    )

    response = client.get(f"{SETTINGS}usage/", {"days": "7"})

    page = response.content.decode()
    assert response.status_code == 200 and "The last 7 days." in page
    numbers = response.context["usage"]["numbers"]
    assert [(r.scope.alias, r.replies, r.handoffs_total, r.prompt_tokens, r.completion_tokens) for r in numbers] == [
        ("Linea Ventas", 2, 1, 150, 15)
    ]
    assert "The customer asked for a person: 1" in page and "Linea Ajena" not in page
    assert [r.scope.name for r in response.context["usage"]["queues"]] == ["Ventas Lima"]


def test_activity_is_read_only(admin_client, ventas):
    number = WhatsAppNumberFactory(client=ventas)
    activity = AIActivity.objects.create(
        client=ventas, conversation=ConversationFactory(client=ventas, number=number), number=number, kind="reply"
    )
    assert admin_client.get("/admin/conversations/aiactivity/").status_code == 200
    assert admin_client.get("/admin/conversations/aiactivity/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/conversations/aiactivity/{activity.pk}/delete/", {"post": "yes"}).status_code == 403
    )


def test_try_it_is_for_staff_who_may_change_the_settings_of_their_own_clients(client, ventas, marketing, openai_api):
    # another client's settings do not exist for this staff member
    staff_login(client, ventas)
    foreign = AISettings.objects.create(number=WhatsAppNumberFactory(client=marketing))
    assert client.post(f"{SETTINGS}{foreign.pk}/try/", {"question": "Hola"}).status_code == 404

    # and someone who may only look at settings cannot spend the business's tokens
    viewer = staff_login(client, ventas, role=None)
    viewer.user_permissions.add(Permission.objects.get(codename="view_aisettings"))
    own = AISettings.objects.create(number=WhatsAppNumberFactory(client=ventas))
    assert client.get(f"{SETTINGS}{own.pk}/change/").status_code == 200
    assert client.post(f"{SETTINGS}{own.pk}/try/", {"question": "Hola"}).status_code == 403
    assert not openai_api.completions
