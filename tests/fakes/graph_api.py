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
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

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

__all__ = ["FakeGraphApi", "RecordedRequest", "meta_error"]


@dataclass(frozen=True)
class _Media:
    content: bytes
    mime_type: str
    phone_number_id: str | None
    file_size: int
    signature: str  # the download URL's `hash`: like Meta's, a credential in a query string


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


class _Handler(FakeHandler):
    server_version = "FakeGraphApi/1.0"


class FakeGraphApi(HttpFake[Script]):
    thread_name = "fake-graph-api"
    handler_class = _Handler
    script_class = Script

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.media: dict[str, _Media] = {}

    # scripting (slow_next and drop_next come with HttpFake)

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
        headers = retry_after_header(retry_after)
        for _ in range(count):
            body = meta_error(code, message, subcode=subcode, details=details)
            self._queue(Script(json_reply(status, body, headers)))

    def reply_next(
        self, count: int = 1, *, status: int = 200, body: str | bytes = "<html>Oops</html>", content_type="text/html"
    ) -> None:
        raw = body.encode() if isinstance(body, str) else body
        for _ in range(count):
            self._queue(Script(Reply(status, raw, {"Content-Type": content_type})))

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

    # request handling (called on the server's threads, under the lock)

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method == "GET" and len(parts) == 2 and parts[0] == "media-download":
            return self._media_download(parts[1], headers)
        if method == "GET" and len(parts) == 2 and parts[0].startswith("v"):
            return self._media_info(parts[1], path, headers)
        if len(parts) != 3 or parts[2] != "messages" or not parts[0].startswith("v"):
            return json_reply(400, meta_error(100, f"Unknown path components: {path}"))
        phone_number_id = parts[1]
        if method != "POST":
            return json_reply(400, meta_error(100, f"Unsupported {method.lower()} request."))

        known = phone_number_id in self.tokens if self.tokens else phone_number_id.isdigit()
        if not known:
            message = (
                f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded "
                "due to missing permissions, or does not support this operation."
            )
            return json_reply(400, meta_error(100, message, type_="GraphMethodException", subcode=33))
        token = bearer_token(headers)
        expected = self.tokens.get(phone_number_id)
        if not token or (expected is not None and token != expected):
            message = "Error validating access token: Session has expired or the token is invalid."
            return json_reply(401, meta_error(190, message, subcode=463))

        problem = _payload_problem(body)
        if problem:
            return json_reply(400, meta_error(100, f"(#100) {problem}"))
        to = str(body.get("to") or body["recipient"])
        wamid = "wamid." + uuid.uuid4().hex.upper()
        return json_reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": "".join(ch for ch in to if ch.isdigit())}],
                "messages": [{"id": wamid}],
            },
        )

    def _media_info(self, media_id: str, path: str, headers: dict[str, str]) -> Reply:
        media = self.media.get(media_id)
        if media is None:
            message = f"Unsupported get request. Object with ID '{media_id}' does not exist."
            return json_reply(404, meta_error(100, message, type_="GraphMethodException", subcode=33))
        refused = self._media_auth_problem(media, headers)
        if refused:
            return refused
        asked_for = parse_qs(path.split("?", 1)[1]).get("phone_number_id", [None])[0] if "?" in path else None
        if asked_for is not None and media.phone_number_id is not None and asked_for != media.phone_number_id:
            return json_reply(400, meta_error(100, "(#100) Param phone_number_id does not match the media's"))
        return json_reply(
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

    def _media_download(self, media_id: str, headers: dict[str, str]) -> Reply:
        media = self.media.get(media_id)
        if media is None:
            return Reply(404, b"", {"Content-Type": "text/plain"})
        refused = self._media_auth_problem(media, headers)
        if refused:
            return refused
        return Reply(200, media.content, {"Content-Type": media.mime_type})

    def _media_auth_problem(self, media: _Media, headers: dict[str, str]) -> Reply | None:
        token = bearer_token(headers)
        if media.phone_number_id is not None and media.phone_number_id in self.tokens:
            accepted = {self.tokens[media.phone_number_id]}
        else:
            accepted = set(self.tokens.values())
        if not token or (accepted and token not in accepted):
            message = "Error validating access token: Session has expired or the token is invalid."
            return json_reply(401, meta_error(190, message, subcode=463))
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
