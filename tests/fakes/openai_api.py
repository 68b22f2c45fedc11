"""A fake of an OpenAI-compatible chat completions API: a real HTTP server on 127.0.0.1 in a background thread.

    with FakeOpenAI() as fake:              # or fake.start() / fake.stop(); or the `openai_api` fixture
        client = openai.OpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hola"}])
        fake.completions[-1]["messages"]

`fake.url` is the base URL including `/v1` (what the `openai` client takes as `base_url`). It answers like OpenAI:

- Every request wants `Authorization: Bearer <fake.api_key>` (default "sk-fake-openai-key"); otherwise 401,
  code "invalid_api_key".
- `POST /v1/chat/completions`: the body is checked roughly like OpenAI does (`model` a non-empty string;
  `messages` a non-empty array of objects with `role` in system/developer/user/assistant/tool and `content` a
  string or an array of content parts; `temperature` a number in [0, 2]; `max_tokens` / `max_completion_tokens`
  positive integers; `stream: true` is refused, the fake does not stream). A problem answers 400, type
  "invalid_request_error", `param` naming the field. Success answers 200 with a `chat.completion` object: one
  choice, the assistant's reply, finish_reason "stop", and usage counted as whitespace-separated words (at least 1)
  of every message's text (prompt) and of the reply (completion).
- The reply is `fake.default_reply`, or `fake.responder(body)` when a callable is set (called with the request's
  JSON dict, outside the lock, so it may read `fake.requests`; if it raises, the answer is a 500 naming the
  exception).
- `GET /v1/models` lists "fake-model" and every model a completion request named; `GET /v1/models/{id}` answers
  one of them or 404, code "model_not_found". Any other path or method answers 404 "Invalid URL (...)".

Error bodies have OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`. Every answer carries an
`x-request-id` header.

Recording: `fake.requests` is a snapshot list of `RecordedRequest(method, path, headers, json, status, at)`
(`at`: time.time() on arrival); header names are lower-cased; `json` is None when the body was not JSON; `status`
is the status answered. `fake.completions` is the JSON bodies of every `POST /v1/chat/completions`, whatever was
answered.

Scripting (each queues behaviour for the next requests, whatever their path, in order, before normal behaviour
resumes):

- `fake.reply_next(text, count=1, *, prompt_tokens=None, completion_tokens=None)`: answer with this text (and
  these usage figures when given). The request is still checked: a bad key or body answers the error, and the
  scripted text is spent.
- `fake.fail_next(count=1, *, status=500, message=..., type="server_error", code=None, retry_after=None)`:
  OpenAI-shaped error replies, without looking at the request (`retry_after` sets a `Retry-After` header).
- `fake.slow_next(count=1, *, seconds)`: answer normally, but only after `seconds` (only that request's thread
  waits; the server keeps serving others).
- `fake.drop_next(count=1)`: read the request, then close the connection without answering (recorded with
  status 0).
- `fake.delay = seconds`: answer every request that late (0 by default).

Thread-safe: requests are handled on their own threads; recording and scripting share one lock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.http_fake import (
    FakeHandler,
    HttpFake,
    RecordedRequest,
    Reply,
    Script,
    bearer_token,
    json_reply,
    retry_after_header,
)

__all__ = ["FakeOpenAI", "RecordedRequest"]

ROLES = ("system", "developer", "user", "assistant", "tool")
COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class _Script(Script):
    """`reply` is fail_next's answer, whatever was asked; the rest is reply_next's."""

    text: str | None = None  # reply_next: the assistant's reply
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Invalid(Exception):
    """A request OpenAI would refuse: `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _error(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    """An error body shaped like OpenAI's."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, body, {"x-request-id": "req_" + uuid.uuid4().hex, **(headers or {})})


class _Handler(FakeHandler):
    server_version = "FakeOpenAI/1.0"

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        self._respond("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._respond("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._respond("DELETE")


class FakeOpenAI(HttpFake[_Script]):
    thread_name = "fake-openai"
    handler_class = _Handler
    base_path = "/v1"
    script_class = _Script

    def __init__(self, api_key: str = "sk-fake-openai-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.default_reply: str = "Hola, ¿en qué puedo ayudarte?"
        self.responder: Callable[[dict[str, Any]], str] | None = None
        self._models: list[str] = ["fake-model"]

    # recording and scripting (slow_next and drop_next come with HttpFake)

    @property
    def completions(self) -> list[Any]:
        """The JSON bodies of every `POST /v1/chat/completions`, whatever was answered."""
        return [
            request.json
            for request in self.requests
            if request.method == "POST" and request.path.split("?", 1)[0] == COMPLETIONS_PATH
        ]

    def reply_next(
        self, text: str, count: int = 1, *, prompt_tokens: int | None = None, completion_tokens: int | None = None
    ) -> None:
        for _ in range(count):
            self._queue(_Script(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        message: str = "The server had an error while processing your request.",
        type: str = "server_error",  # noqa: A002 - OpenAI's field name
        code: str | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        headers = retry_after_header(retry_after)
        for _ in range(count):
            self._queue(_Script(reply=_json_reply(status, _error(message, type_=type, code=code), headers)))

    # request handling (called on the server's threads)

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any) -> Reply | None:
        """The answer to a request (under the lock), or None for a valid completion request: its text may come from
        the responder, so `_answer_unlocked` answers it."""
        key = bearer_token(headers).strip()
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return _json_reply(401, _error(message, code="invalid_api_key"))
        if key != self.api_key:
            shown = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 7 else "*" * len(key)
            message = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            return _json_reply(401, _error(message, code="invalid_api_key"))

        route = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and route == COMPLETIONS_PATH:
            if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
                if body["model"] not in self._models:
                    self._models.append(body["model"])
            try:
                _check_completion(raw, body)
            except _Invalid as invalid:
                return _json_reply(400, _error(invalid.message, param=invalid.param))
            return None
        if method == "GET" and route == "/v1/models":
            return _json_reply(200, {"object": "list", "data": [_model(model_id) for model_id in self._models]})
        if method == "GET" and route.startswith("/v1/models/"):
            model_id = route[len("/v1/models/") :]
            if model_id in self._models:
                return _json_reply(200, _model(model_id))
            message = f"The model '{model_id}' does not exist or you do not have access to it."
            return _json_reply(404, _error(message, param="model", code="model_not_found"))
        return _json_reply(404, _error(f"Invalid URL ({method} {route})"))

    def _answer_unlocked(self, body: dict[str, Any], script: _Script) -> Reply:
        if script.text is not None:
            text = script.text
        elif self.responder is not None:
            try:
                text = str(self.responder(body))
            except Exception as exc:  # a broken responder shows up as the fake's 500, not a silent default
                message = f"The fake's responder raised {type(exc).__name__}: {exc}"
                return _json_reply(500, _error(message, type_="server_error"))
        else:
            text = self.default_reply
        prompt_tokens = script.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = max(1, sum(_words(message.get("content")) for message in body["messages"]))
        completion_tokens = script.completion_tokens
        if completion_tokens is None:
            completion_tokens = max(1, _words(text))
        return _json_reply(
            200,
            {
                "id": "chatcmpl-" + uuid.uuid4().hex,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "fake"}


def _words(content: Any) -> int:
    """Whitespace-separated words of a message's content (a string, or the text parts of an array)."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(len(part["text"].split()) for part in content if isinstance(part.get("text"), str))
    return 0


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_completion(raw: bytes, body: Any) -> None:
    """Raise _Invalid for a chat completion request OpenAI would refuse."""
    if not isinstance(body, dict):
        if raw and body is None:
            raise _Invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
                "JSON.)"
            )
        raise _Invalid(f"Invalid type for request body: expected an object, but got {_json_type(body)} instead.")

    model = body.get("model")
    if model is None:
        raise _Invalid("Missing required parameter: 'model'.", "model")
    if not isinstance(model, str) or not model:
        raise _Invalid(f"Invalid 'model': expected a non-empty string, but got {_json_type(model)} instead.", "model")

    messages = body.get("messages")
    if messages is None:
        raise _Invalid("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise _Invalid(
            f"Invalid type for 'messages': expected an array, but got {_json_type(messages)} instead.", "messages"
        )
    if not messages:
        raise _Invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
        )
    for index, message in enumerate(messages):
        _check_message(index, message)

    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature):
            raise _Invalid(
                f"Invalid type for 'temperature': expected a decimal, but got {_json_type(temperature)} instead.",
                "temperature",
            )
        if not 0 <= temperature <= 2:
            if temperature < 0:
                bound = "below minimum value. Expected a value >= 0"
            else:
                bound = "above maximum value. Expected a value <= 2"
            raise _Invalid(f"Invalid 'temperature': decimal {bound}, but got {temperature} instead.", "temperature")

    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(
                f"Invalid type for '{name}': expected an integer, but got {_json_type(value)} instead.", name
            )
        if value < 1:
            raise _Invalid(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
                name,
            )

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _Invalid(
            f"Invalid type for 'stream': expected a boolean, but got {_json_type(stream)} instead.", "stream"
        )
    if stream:
        raise _Invalid("Streaming (stream=true) is not supported by the fake OpenAI API.", "stream")


def _check_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _Invalid(f"Invalid type for '{where}': expected an object, but got {_json_type(message)} instead.", where)
    role = message.get("role")
    if role is None:
        raise _Invalid(f"Missing required parameter: '{where}.role'.", f"{where}.role")
    if role not in ROLES:
        supported = ", ".join(f"'{name}'" for name in ROLES[:-1]) + f", and '{ROLES[-1]}'"
        raise _Invalid(f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role")
    content = message.get("content")
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return  # an assistant turn that only called tools
        raise _Invalid(f"Missing required parameter: '{where}.content'.", f"{where}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _Invalid(
            f"Invalid type for '{where}.content': expected one of a string or array of objects, but got "
            f"{_json_type(content)} instead.",
            f"{where}.content",
        )
    if not content:
        raise _Invalid(
            f"Invalid '{where}.content': empty array. Expected an array with minimum length 1, but got an empty "
            "array instead.",
            f"{where}.content",
        )
    for part_index, part in enumerate(content):
        part_where = f"{where}.content[{part_index}]"
        if not isinstance(part, dict):
            raise _Invalid(
                f"Invalid type for '{part_where}': expected an object, but got {_json_type(part)} instead.", part_where
            )
        if not isinstance(part.get("type"), str):
            raise _Invalid(f"Missing required parameter: '{part_where}.type'.", f"{part_where}.type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _Invalid(f"Missing required parameter: '{part_where}.text'.", f"{part_where}.text")
