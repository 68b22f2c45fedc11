"""The fake OpenAI-compatible API (tests/fakes/openai_api.py) against the real `openai` client: what the AI
auto-reply tests rely on it to do."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.fakes.openai_api import FakeOpenAI

MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hola"}]


def client_for(fake: FakeOpenAI, *, api_key: str | None = None, timeout: float = 2.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key=api_key or fake.api_key, max_retries=0, timeout=timeout)


def ask(fake: FakeOpenAI, messages=HELLO, **kwargs) -> str:
    completion = client_for(fake).chat.completions.create(model=MODEL, messages=messages, **kwargs)
    return completion.choices[0].message.content


def test_fixture_points_the_settings_at_the_running_fake(openai_api, settings):
    # then
    assert settings.OPENAI_BASE_URL == openai_api.url
    assert openai_api.url.startswith("http://127.0.0.1:") and openai_api.url.endswith("/v1")
    assert settings.OPENAI_API_KEY == openai_api.api_key == "sk-fake-openai-key"


def test_completion_round_trip(openai_api):
    # given
    messages = [
        {"role": "system", "content": "Eres el asistente de ventas de la tienda."},
        {"role": "user", "content": "¿Tienen envíos a Arequipa?"},
    ]

    # when
    completion = client_for(openai_api).chat.completions.create(
        model=MODEL, messages=messages, temperature=0.2, max_tokens=200
    )

    # then: OpenAI's chat.completion, with the default reply and word-count usage
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hola, ¿en qué puedo ayudarte?"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8 + 4, 5)
    assert completion.usage.total_tokens == 17
    # and the request was recorded as sent
    [request] = openai_api.requests
    assert (request.method, request.path, request.status) == ("POST", "/v1/chat/completions", 200)
    assert request.headers["authorization"] == "Bearer sk-fake-openai-key"
    assert request.json["messages"] == messages
    assert request.json["temperature"] == 0.2
    assert openai_api.completions == [request.json]


def test_wrong_key_is_refused(openai_api):
    # when
    with pytest.raises(openai.AuthenticationError) as excinfo:
        client_for(openai_api, api_key="sk-not-the-right-key").chat.completions.create(model=MODEL, messages=HELLO)

    # then
    error = excinfo.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert error.body["message"].startswith("Incorrect API key provided: sk-")
    assert "sk-not-the-right-key" not in error.body["message"]
    assert [request.status for request in openai_api.requests] == [401]


def test_server_error_then_recovery(openai_api):
    # given
    openai_api.fail_next(status=500)

    # when / then
    with pytest.raises(openai.InternalServerError) as excinfo:
        ask(openai_api)
    assert excinfo.value.type == "server_error"
    assert ask(openai_api) == openai_api.default_reply
    assert [request.status for request in openai_api.requests] == [500, 200]


def test_rate_limit_with_retry_after(openai_api):
    # given
    openai_api.fail_next(
        status=429,
        retry_after=1,
        type="requests",
        code="rate_limit_exceeded",
        message="Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
    )

    # when
    with pytest.raises(openai.RateLimitError) as excinfo:
        ask(openai_api)

    # then
    error = excinfo.value
    assert (error.status_code, error.code) == (429, "rate_limit_exceeded")
    assert error.response.headers["retry-after"] == "1"


def test_slow_answer_times_out_while_others_are_served(openai_api):
    # given
    openai_api.slow_next(seconds=2)
    started = time.monotonic()

    # when
    with pytest.raises(openai.APITimeoutError):
        client_for(openai_api, timeout=0.5).chat.completions.create(model=MODEL, messages=HELLO)

    # then: the client gave up after its timeout, and the fake answers the next request at once
    assert time.monotonic() - started < 1.5
    assert ask(openai_api) == openai_api.default_reply
    assert time.monotonic() - started < 1.5


def test_delay_holds_every_answer(openai_api):
    # given
    openai_api.delay = 0.3
    started = time.monotonic()

    # when
    ask(openai_api)

    # then
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": []}, "messages"),
        ({"messages": HELLO}, "model"),
        ({"model": "", "messages": HELLO}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": ["Hola"]}, "messages[0]"),
        ({"model": MODEL, "messages": [{"role": "bot", "content": "Hola"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"model": MODEL, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": MODEL, "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "temperature": "warm"}, "temperature"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": HELLO, "max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"model": MODEL, "messages": HELLO, "stream": True}, "stream"),
    ],
)
def test_invalid_body_is_refused_naming_the_field(openai_api, body, param):
    # when
    response = httpx.post(
        f"{openai_api.url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {openai_api.api_key}"},
        timeout=2,
    )

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]
    assert openai_api.completions == [body]
    assert openai_api.requests[0].status == 400


def test_content_parts_are_accepted(openai_api):
    # given
    messages = [{"role": "user", "content": [{"type": "text", "text": "Quiero el catálogo"}]}]

    # when
    completion = client_for(openai_api).chat.completions.create(model=MODEL, messages=messages)

    # then
    assert completion.usage.prompt_tokens == 3


def test_scripted_replies_come_in_order_before_the_default(openai_api):
    # given
    openai_api.reply_next("Primera")
    openai_api.fail_next(status=503)
    openai_api.reply_next("Segunda respuesta", prompt_tokens=7, completion_tokens=3)

    # when
    first = ask(openai_api)
    with pytest.raises(openai.InternalServerError):
        ask(openai_api)
    second = client_for(openai_api).chat.completions.create(model=MODEL, messages=HELLO)
    third = ask(openai_api)

    # then
    assert first == "Primera"
    assert second.choices[0].message.content == "Segunda respuesta"
    assert (second.usage.prompt_tokens, second.usage.completion_tokens, second.usage.total_tokens) == (7, 3, 10)
    assert third == openai_api.default_reply


def test_responder_answers_what_is_not_scripted(openai_api):
    # given
    openai_api.responder = lambda body: f"Eco: {body['messages'][-1]['content']}"
    openai_api.reply_next("Guionizada")

    # when
    scripted = ask(openai_api, messages=[{"role": "user", "content": "uno"}])
    echoed = ask(openai_api, messages=[{"role": "user", "content": "dos"}])

    # then
    assert (scripted, echoed) == ("Guionizada", "Eco: dos")


def test_dropped_connection_is_a_connection_error(openai_api):
    # given
    openai_api.drop_next()

    # when
    with pytest.raises(openai.APIConnectionError) as excinfo:
        ask(openai_api)

    # then: not a timeout; the request arrived (status 0) and the next one is answered
    assert not isinstance(excinfo.value, openai.APITimeoutError)
    assert ask(openai_api) == openai_api.default_reply
    assert [request.status for request in openai_api.requests] == [0, 200]


def test_models_lists_the_fake_model_and_the_ones_asked_for(openai_api):
    # given
    ask(openai_api)

    # when
    models = client_for(openai_api).models.list()

    # then
    assert [model.id for model in models.data] == ["fake-model", MODEL]
    assert models.data[0].owned_by == "fake"
    assert client_for(openai_api).models.retrieve(MODEL).id == MODEL


def test_unknown_path_answers_openai_shaped_404(openai_api):
    # when
    response = httpx.get(
        f"{openai_api.url}/assistants", headers={"Authorization": f"Bearer {openai_api.api_key}"}, timeout=2
    )

    # then
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_requests_are_all_answered_and_recorded():
    # given
    with FakeOpenAI(api_key="sk-other") as fake:
        fake.responder = lambda body: body["messages"][0]["content"].upper()
        replies: list[str] = []

        def worker(number: int) -> None:
            replies.append(ask(fake, messages=[{"role": "user", "content": f"mensaje {number}"}]))

        threads = [threading.Thread(target=worker, args=(number,)) for number in range(10)]

        # when
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)

        # then
        assert sorted(replies) == sorted(f"MENSAJE {number}" for number in range(10))
        assert len(fake.completions) == 10
        assert {request.status for request in fake.requests} == {200}
