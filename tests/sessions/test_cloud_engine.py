"""The Cloud API engine against a real HTTP server speaking the Graph API (tests/fakes/graph_api.py)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from crm.crypto import Secret
from sessions.engines import get_engine
from sessions.engines.base import OutboundTemplate, OutboundText, SendError
from sessions.engines.cloud import CloudEngine
from tests.sessions.factories import WhatsAppNumberFactory

# The fixture, until tests/conftest.py re-exports it for every test module.

TOKEN = "EAAG-cloud-engine-test-token-0001-abcdef"
CUSTOMER = "51987654321"

pytestmark = pytest.mark.django_db


@pytest.fixture
def number(graph_api):
    """A Cloud API number whose token, read back from the database, is the one the fake expects."""
    created = WhatsAppNumberFactory(access_token=TOKEN)
    created.refresh_from_db()
    assert isinstance(created.access_token, Secret)
    graph_api.tokens[created.phone_number_id] = TOKEN
    return created


def send_text(number, body="Hola, ¿en qué te ayudo?", **kwargs):
    return CloudEngine().send(number, OutboundText(to=CUSTOMER, body=body, **kwargs))


def send_failing(number) -> SendError:
    with pytest.raises(SendError) as excinfo:
        send_text(number)
    return excinfo.value


# Sending


def test_text_message_is_posted_as_meta_expects_and_its_id_returned(graph_api, number):
    # when
    result = get_engine("cloud").send(number, OutboundText(to=CUSTOMER, body="Hola", preview_url=True))

    # then
    [request] = graph_api.requests
    assert request.method == "POST"
    assert request.path == f"/v23.0/{number.phone_number_id}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "Hola", "preview_url": True},
    }
    assert request.status == 200
    assert result.provider_message_id.startswith("wamid.")
    assert result.attempts == 1


def test_each_send_gets_its_own_provider_id(graph_api, number):
    first = send_text(number)
    second = send_text(number)

    assert first.provider_message_id != second.provider_message_id


def test_graph_api_version_comes_from_settings(graph_api, number, settings):
    settings.WHATSAPP_GRAPH_API_VERSION = "v21.0"

    send_text(number)

    assert graph_api.requests[0].path == f"/v21.0/{number.phone_number_id}/messages"


def test_reply_quotes_the_original_message(graph_api, number):
    send_text(number, body="Claro", reply_to="wamid.ORIGINAL123")

    assert graph_api.requests[0].json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "context": {"message_id": "wamid.ORIGINAL123"},
        "type": "text",
        "text": {"body": "Claro", "preview_url": False},
    }


def test_template_is_sent_with_its_language_and_components(graph_api, number):
    # given
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "Ana"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "12345"}, {"type": "currency", "currency": {}}]},
    ]

    # when
    result = CloudEngine().send(
        number, OutboundTemplate(to=CUSTOMER, name="order_update", language="es_PE", components=components)
    )

    # then
    assert graph_api.requests[0].json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "es_PE"}, "components": components},
    }
    assert result.provider_message_id.startswith("wamid.")


def test_template_without_parameters_is_sent_without_components(graph_api, number):
    CloudEngine().send(number, OutboundTemplate(to=CUSTOMER, name="hello_world", language="en_US"))

    assert graph_api.requests[0].json["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    assert graph_api.requests[0].status == 200


# Failures that need staff


def test_wrong_token_needs_attention_and_is_not_retried(graph_api, number):
    # given: Meta knows the number under another token
    graph_api.tokens[number.phone_number_id] = "EAAG-some-other-token"

    # when
    error = send_failing(number)

    # then
    assert (error.code, error.http_status, error.retryable, error.attention) == ("190", 401, False, True)
    assert error.reason == "Access token expired or invalid: update the number's token"
    assert len(graph_api.requests) == 1


def test_restricted_account_needs_attention_and_is_not_retried(graph_api, number):
    graph_api.fail_next(status=400, code=368, message="Temporarily blocked for policies violations")

    error = send_failing(number)

    assert (error.code, error.retryable, error.attention) == ("368", False, True)
    assert "restricted" in error.reason
    assert len(graph_api.requests) == 1


def test_number_without_token_is_refused_without_calling_meta(graph_api):
    # given
    number = WhatsAppNumberFactory(access_token="")
    number.refresh_from_db()

    # when
    error = send_failing(number)

    # then
    assert (error.code, error.retryable, error.attention) == ("no_token", False, True)
    assert graph_api.requests == []


def test_unknown_phone_number_id_is_a_final_error(graph_api, number):
    del graph_api.tokens[number.phone_number_id]
    graph_api.tokens["999999999999999"] = "EAAG-someone-else"

    error = send_failing(number)

    assert (error.code, error.http_status, error.retryable, error.attention) == ("100", 400, False, False)
    assert len(graph_api.requests) == 1


# Transient failures


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, 130429), (400, 130429), (500, 131000), (400, 131000), (503, 131016), (500, 1), (503, 2), (429, 4)],
)
def test_transient_failure_is_retried_until_meta_accepts(graph_api, number, status, code):
    # given: Meta fails twice, then accepts
    graph_api.fail_next(2, status=status, code=code, message=f"(#{code}) try later")

    # when
    result = send_text(number)

    # then
    assert result.provider_message_id.startswith("wamid.")
    assert result.attempts == 3
    assert [request.status for request in graph_api.requests] == [status, status, 200]
    assert len({str(request.json) for request in graph_api.requests}) == 1  # the same message each time


def test_server_error_without_json_body_is_retried(graph_api, number):
    graph_api.reply_next(status=502, body="<html>Bad Gateway</html>")

    result = send_text(number)

    assert result.attempts == 2
    assert len(graph_api.requests) == 2


def test_retries_exhausted_leave_a_retryable_error(graph_api, number, settings):
    # given
    settings.WHATSAPP_SEND_RETRIES = 2
    graph_api.fail_next(10, status=429, code=130429, message="(#130429) Rate limit hit")

    # when
    error = send_failing(number)

    # then
    assert (error.code, error.http_status, error.retryable, error.attention) == ("130429", 429, True, False)
    assert error.attempts == 3
    assert error.reason.startswith("Rate limit hit")
    assert len(graph_api.requests) == 3


def test_timeout_is_not_retried_because_meta_may_have_sent_it(graph_api, number, settings):
    # given: Meta answers too late; the Graph API has no idempotency key, so a retry could send twice
    settings.WHATSAPP_SEND_TIMEOUT = 0.2
    graph_api.slow_next(seconds=2)

    # when
    error = send_failing(number)

    # then
    assert (error.code, error.retryable, error.ambiguous, error.attempts) == ("timeout", False, True, 1)
    assert "may or may not have been sent" in error.reason
    assert len(graph_api.requests) == 1


def test_connection_dropped_before_the_answer_is_ambiguous_and_not_retried(graph_api, number):
    graph_api.drop_next()

    error = send_failing(number)

    assert (error.code, error.retryable, error.ambiguous) == ("connection_lost", False, True)
    assert len(graph_api.requests) == 1


def test_unreachable_api_is_retried_then_reported(number, settings):
    # given: nothing listens on the configured address
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.WHATSAPP_GRAPH_API_URL = f"http://127.0.0.1:{port}"
    settings.WHATSAPP_SEND_RETRIES = 2

    error = send_failing(number)

    assert (error.code, error.retryable, error.ambiguous, error.attempts) == ("connection_error", True, False, 3)


def test_retry_after_is_honoured_but_capped(graph_api, number, settings):
    # given: Meta asks for an hour's pause; we wait at most 0.3 s
    settings.WHATSAPP_SEND_RETRY_AFTER_MAX = 0.3
    graph_api.fail_next(status=429, code=130429, retry_after=3600)

    # when
    started = time.monotonic()
    result = send_text(number)
    elapsed = time.monotonic() - started

    # then
    assert result.attempts == 2
    assert 0.3 <= elapsed < 5


# Final failures


@pytest.mark.parametrize(
    ("code", "reason_start"),
    [
        (131047, "More than 24 hours since the customer last wrote: only an approved template can be sent"),
        (131026, "Message undeliverable"),
        (131049, "Meta chose not to deliver"),
        (131050, "The customer has stopped marketing messages"),
        (100, "WhatsApp rejected a parameter"),
        (132000, "The template's parameters do not match"),
        (132001, "Template not found"),
        (132999, "(#132999) Template problem"),  # an unlisted template error: final, Meta's own words
        (131051, "(#131051) Unsupported message type"),  # anything unlisted: final
    ],
)
def test_final_error_is_sent_exactly_once_with_a_readable_reason(graph_api, number, code, reason_start):
    # given
    message = {132999: "(#132999) Template problem", 131051: "(#131051) Unsupported message type"}.get(code, "x")
    graph_api.fail_next(status=400, code=code, message=message)

    # when
    error = send_failing(number)

    # then
    assert (error.code, error.http_status, error.retryable, error.attention) == (str(code), 400, False, False)
    assert error.reason.startswith(reason_start)
    assert error.attempts == 1
    assert len(graph_api.requests) == 1


def test_final_code_is_not_retried_even_on_a_server_error_status(graph_api, number):
    graph_api.fail_next(status=500, code=131047, message="Re-engagement message")

    error = send_failing(number)

    assert (error.code, error.retryable) == ("131047", False)
    assert len(graph_api.requests) == 1


def test_meta_details_are_added_to_the_reason(graph_api, number):
    graph_api.fail_next(
        status=400,
        code=132000,
        message="(#132000) Number of parameters does not match the expected number of params",
        details="body: number of localizable_params (1) does not match the expected number of params (2)",
    )

    error = send_failing(number)

    assert error.reason == (
        "The template's parameters do not match the approved template (wrong number of parameters) "
        "(body: number of localizable_params (1) does not match the expected number of params (2))"
    )


def test_success_without_json_is_a_bad_response_not_retried(graph_api, number):
    graph_api.reply_next(status=200, body="<html>Welcome to the proxy</html>")

    error = send_failing(number)

    assert (error.code, error.http_status, error.retryable, error.ambiguous) == ("bad_response", 200, False, True)
    assert len(graph_api.requests) == 1


def test_success_without_message_id_is_a_bad_response(graph_api, number):
    graph_api.reply_next(status=200, body='{"messaging_product": "whatsapp"}', content_type="application/json")

    error = send_failing(number)

    assert (error.code, error.retryable) == ("bad_response", False)


# Logging


def test_logs_show_neither_token_nor_body_nor_recipient(graph_api, number, caplog):
    # given
    caplog.set_level(logging.DEBUG)
    graph_api.fail_next(status=429, code=130429)

    # when: one retried success and one failure
    send_text(number, body="secret order details")
    graph_api.fail_next(status=400, code=131047, message="Re-engagement message")
    with pytest.raises(SendError):
        send_text(number, body="secret order details")

    # then
    assert "sessions.engines.cloud" in {record.name for record in caplog.records}
    assert TOKEN not in caplog.text
    assert "secret order details" not in caplog.text
    assert CUSTOMER not in caplog.text
