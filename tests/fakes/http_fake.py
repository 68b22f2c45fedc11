"""What the HTTP fakes share: a real HTTP server on 127.0.0.1 in a background thread, request recording and a FIFO of
scripted behaviour (a canned reply, a delay, a dropped connection) for the next requests.

A fake subclasses `HttpFake`, names its thread (`thread_name`), handler (`handler_class`, a `FakeHandler` with its
`server_version`) and script type (`script_class`, a `Script` or a subclass), and answers requests in `_answer`
(under the lock) or, when that returns None, in `_answer_unlocked` (for answers that call user code).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Self, TypeVar

__all__ = [
    "FakeHandler",
    "HttpFake",
    "RecordedRequest",
    "Reply",
    "Script",
    "bearer_token",
    "json_reply",
    "retry_after_header",
]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int
    at: float = 0.0  # time.time() when the request arrived (rate measurements)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Script:
    reply: Reply | None = None  # None: answer normally
    delay: float = 0.0
    drop: bool = False


ScriptT = TypeVar("ScriptT", bound=Script)


def json_reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def retry_after_header(retry_after: float | str | None) -> dict[str, str]:
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


def bearer_token(headers: dict[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header, or "" without one."""
    authorization = headers.get("authorization", "")
    return authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""


class HttpFake(Generic[ScriptT]):
    thread_name: ClassVar[str] = "http-fake"
    handler_class: ClassVar[type[FakeHandler]]
    base_path: ClassVar[str] = ""  # appended to `url` (e.g. "/v1")
    script_class: type[ScriptT]

    def __init__(self) -> None:
        self.delay: float = 0.0
        self.url: str = ""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: deque[ScriptT] = deque()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), self.handler_class)
        server.daemon_threads = True
        server.fake = self
        self._server = server
        self._stopping.clear()
        self.url = f"http://127.0.0.1:{server.server_address[1]}{self.base_path}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # recording and scripting

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def slow_next(self, count: int = 1, *, seconds: float) -> None:
        for _ in range(count):
            self._queue(self.script_class(delay=seconds))

    def drop_next(self, count: int = 1) -> None:
        for _ in range(count):
            self._queue(self.script_class(drop=True))

    def _queue(self, script: ScriptT) -> None:
        with self._lock:
            self._scripts.append(script)

    # request handling (called on the server's threads)

    def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[Reply | None, float]:
        """Record the request and pick its answer: (None, 0) to drop the connection, else the reply and how long to
        wait before sending it."""
        arrived = time.time()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            script = self._scripts.popleft() if self._scripts else self.script_class()
            if script.drop:
                self._requests.append(RecordedRequest(method, path, headers, body, 0, arrived))
                return None, 0.0
            reply = script.reply or self._answer(method, path, headers, raw, body)
            if reply is not None:
                self._requests.append(RecordedRequest(method, path, headers, body, reply.status, arrived))
        if reply is None:  # the answer calls user code: unlocked, so that code may read `requests`
            reply = self._answer_unlocked(body, script)
            with self._lock:
                self._requests.append(RecordedRequest(method, path, headers, body, reply.status, arrived))
        return reply, self.delay + script.delay

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any) -> Reply | None:
        """The protocol's answer, called under the lock; None leaves it to `_answer_unlocked`."""
        raise NotImplementedError

    def _answer_unlocked(self, body: Any, script: ScriptT) -> Reply:
        """The answer to a request `_answer` passed on, called outside the lock."""
        raise NotImplementedError


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many senders or workers connecting at once (socketserver's default backlog is 5)
    fake: HttpFake[Any]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed worker, a timeout test) is expected; anything else is
        printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHandler(BaseHTTPRequestHandler):
    """Answers GET and POST; a fake that takes other methods adds their `do_*` in a subclass, which also sets
    `server_version`."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY the client's delayed ACK holds each answer ~40 ms.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._respond("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._respond("GET")

    def _respond(self, method: str) -> None:
        fake: HttpFake[Any] = self.server.fake  # type: ignore[attr-defined]
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
