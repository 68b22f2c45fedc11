"""A fake of Meta's Graph API messages and media endpoints: a real HTTP server on 127.0.0.1 in a background thread.

    with FakeGraphApi() as fake:            # or fake.start() / fake.stop(); or the `graph_api` fixture
        fake.tokens["106540352200001"] = "EAAG..."
        ...POST {fake.url}/v23.0/106540352200001/messages...
        fake.requests[-1].json["to"]

It answers `POST /{version}/{phone_number_id}/messages` like Meta:

- `fake.tokens: dict[phone_number_id, token]`. While it is empty every numeric phone-number id exists; once it
  has entries only those ids exist. An unknown id answers 400, code 100 ("Object with ID ... does not exist").
  A missing or different `Authorization: Bearer <token>` answers 401, code 190.
- The body is checked roughly like Meta does (messaging_product "whatsapp", `to`, type `text` with text.body or
  `template` with template.name and template.language.code); a problem answers 400, code 100, naming the field.
- Success answers 200 with `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}` and a
  fresh unique `wamid.` id.

Media (files customers sent): `fake.add_media(media_id, content, mime_type, *, phone_number_id=None,
file_size=None)` registers a file. Then, like Meta:

- `GET /{version}/{media_id}` answers 200 `{"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}`,
  `url` pointing back here (`{fake.url}/media-download/{media_id}?mid=...&hash=...`); `file_size` may be set to
  lie about the size. An unknown media id answers 404, code 100; a `?phone_number_id=` other than the one the
  file was registered with answers 400, code 100.
- `GET /media-download/{media_id}` answers the bytes with the file's Content-Type.
- Both want `Authorization: Bearer <token>`: the token of the file's `phone_number_id` when `fake.tokens` has it,
  else any token in `fake.tokens`, else any token at all; otherwise 401, code 190.

Recording: `fake.requests` is a snapshot list of `RecordedRequest(method, path, headers, json, status, at)`
(`at`: time.time() on arrival);
header names are lower-cased; `json` is None when the body was not JSON; `status` is the status answered.

Scripting (each queues replies for the next requests, in order, before normal behaviour resumes):

- `fake.fail_next(count=1, *, status=429, code=130429, message=..., subcode=None, details=None,
  retry_after=None)`: Meta-shaped error replies (`retry_after` sets a `Retry-After` header).
- `fake.reply_next(count=1, *, status=200, body="<html>…", content_type="text/html")`: raw replies.
- `fake.slow_next(count=1, *, seconds)`: answer normally, but only after `seconds`.
- `fake.drop_next(count=1)`: read the request, then close the connection without answering (recorded with
  status 0): Meta received the message but the answer never came back.
- `fake.delay = seconds`: answer every request that late (0 by default).

Thread-safe: requests are handled on their own threads; recording and scripting share one lock.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

__all__ = ["FakeGraphApi", "RecordedRequest", "meta_error"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int
    at: float = 0.0  # time.time() when the request arrived (rate measurements)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Media:
    content: bytes
    mime_type: str
    phone_number_id: str | None
    file_size: int
    signature: str  # the download URL's `hash`: like Meta's, a credential in a query string


@dataclass(frozen=True)
class _Script:
    reply: _Reply | None  # None: answer normally
    delay: float = 0.0
    drop: bool = False


def meta_error(
    code: int,
    message: str,
    *,
    type_: str = "OAuthException",
    subcode: int | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """An error body shaped like the Graph API's."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "A" + uuid.uuid4().hex[:22]
    return {"error": error}


def _json_reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


class FakeGraphApi:
    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.media: dict[str, _Media] = {}
        self.delay: float = 0.0
        self.url: str = ""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: deque[_Script] = deque()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeGraphApi:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._stopping.clear()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-graph-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that are waiting out a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeGraphApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # recording and scripting

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        code: int = 130429,
        message: str = "(#130429) Rate limit hit",
        subcode: int | None = None,
        details: str | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        for _ in range(count):
            body = meta_error(code, message, subcode=subcode, details=details)
            self._queue(_Script(_json_reply(status, body, headers)))

    def reply_next(
        self, count: int = 1, *, status: int = 200, body: str | bytes = "<html>Oops</html>", content_type="text/html"
    ) -> None:
        raw = body.encode() if isinstance(body, str) else body
        for _ in range(count):
            self._queue(_Script(_Reply(status, raw, {"Content-Type": content_type})))

    def slow_next(self, count: int = 1, *, seconds: float) -> None:
        for _ in range(count):
            self._queue(_Script(None, delay=seconds))

    def drop_next(self, count: int = 1) -> None:
        for _ in range(count):
            self._queue(_Script(None, drop=True))

    def add_media(
        self,
        media_id: str,
        content: bytes,
        mime_type: str = "image/jpeg",
        *,
        phone_number_id: str | None = None,
        file_size: int | None = None,
    ) -> None:
        """A file a customer sent, kept until the fake stops; `file_size` overrides the size Meta reports."""
        size = len(content) if file_size is None else file_size
        with self._lock:
            self.media[media_id] = _Media(content, mime_type, phone_number_id, size, secrets.token_hex(16))

    def _queue(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    # request handling (called on the server's threads)

    def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[_Reply | None, float]:
        arrived = time.time()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            script = self._scripts.popleft() if self._scripts else _Script(None)
            if script.drop:
                self._requests.append(RecordedRequest(method, path, headers, body, 0, arrived))
                return None, 0.0
            reply = script.reply or self._answer(method, path, headers, body)
            self._requests.append(RecordedRequest(method, path, headers, body, reply.status, arrived))
        return reply, self.delay + script.delay

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> _Reply:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method == "GET" and len(parts) == 2 and parts[0] == "media-download":
            return self._media_download(parts[1], headers)
        if method == "GET" and len(parts) == 2 and parts[0].startswith("v"):
            return self._media_info(parts[1], path, headers)
        if len(parts) != 3 or parts[2] != "messages" or not parts[0].startswith("v"):
            return _json_reply(400, meta_error(100, f"Unknown path components: {path}"))
        phone_number_id = parts[1]
        if method != "POST":
            return _json_reply(400, meta_error(100, f"Unsupported {method.lower()} request."))

        known = phone_number_id in self.tokens if self.tokens else phone_number_id.isdigit()
        if not known:
            message = (
                f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded "
                "due to missing permissions, or does not support this operation."
            )
            return _json_reply(400, meta_error(100, message, type_="GraphMethodException", subcode=33))
        authorization = headers.get("authorization", "")
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        expected = self.tokens.get(phone_number_id)
        if not token or (expected is not None and token != expected):
            message = "Error validating access token: Session has expired or the token is invalid."
            return _json_reply(401, meta_error(190, message, subcode=463))

        problem = _payload_problem(body)
        if problem:
            return _json_reply(400, meta_error(100, f"(#100) {problem}"))
        to = str(body.get("to") or body["recipient"])
        wamid = "wamid." + uuid.uuid4().hex.upper()
        return _json_reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": "".join(ch for ch in to if ch.isdigit())}],
                "messages": [{"id": wamid}],
            },
        )

    def _media_info(self, media_id: str, path: str, headers: dict[str, str]) -> _Reply:
        media = self.media.get(media_id)
        if media is None:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist."
            return _json_reply(404, meta_error(100, message, type_="GraphMethodException", subcode=33))
        refused = self._media_auth_problem(media, headers)
        if refused:
            return refused
        asked_for = parse_qs(path.split("?", 1)[1]).get("phone_number_id", [None])[0] if "?" in path else None
        if asked_for is not None and media.phone_number_id is not None and asked_for != media.phone_number_id:
            return _json_reply(400, meta_error(100, "(#100) Param phone_number_id does not match the media's"))
        return _json_reply(
            200,
            {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/media-download/{media_id}?mid={media_id}&hash={media.signature}",
                "mime_type": media.mime_type,
                "sha256": hashlib.sha256(media.content).hexdigest(),
                "file_size": media.file_size,
                "id": media_id,
            },
        )

    def _media_download(self, media_id: str, headers: dict[str, str]) -> _Reply:
        media = self.media.get(media_id)
        if media is None:
            return _Reply(404, b"", {"Content-Type": "text/plain"})
        refused = self._media_auth_problem(media, headers)
        if refused:
            return refused
        return _Reply(200, media.content, {"Content-Type": media.mime_type})

    def _media_auth_problem(self, media: _Media, headers: dict[str, str]) -> _Reply | None:
        authorization = headers.get("authorization", "")
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        if media.phone_number_id is not None and media.phone_number_id in self.tokens:
            accepted = {self.tokens[media.phone_number_id]}
        else:
            accepted = set(self.tokens.values())
        if not token or (accepted and token not in accepted):
            message = "Error validating access token: Session has expired or the token is invalid."
            return _json_reply(401, meta_error(190, message, subcode=463))
        return None


def _payload_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    if not body.get("to") and not body.get("recipient"):
        return "The parameter to is required."
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not text.get("body"):
            return "The parameter text['body'] is required."
    elif kind == "template":
        template = body.get("template")
        if not isinstance(template, dict) or not template.get("name"):
            return "The parameter template['name'] is required."
        language = template.get("language")
        if not isinstance(language, dict) or not language.get("code"):
            return "The parameter template['language']['code'] is required."
        if "components" in template and not isinstance(template["components"], list):
            return "The parameter template['components'] must be an array."
    else:
        return f"Param type must be one of {{text, template}}, got '{kind}'."
    return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many senders connecting at once (socketserver's default backlog is 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed worker, a timeout test) is expected; anything else is
        printed as usual."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY the client's delayed ACK holds each answer ~40 ms.
    disable_nagle_algorithm = True
    server_version = "FakeGraphApi/1.0"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._respond("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._respond("GET")

    def _respond(self, method: str) -> None:
        fake: FakeGraphApi = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply, delay = fake._handle(method, self.path, headers, raw)
        if reply is None:  # drop_next: no answer at all
            self.close_connection = True
            return
        if delay and fake._stopping.wait(delay):
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass
