"""The lean path for webhook deliveries: `POST /webhooks/whatsapp/` straight from daphne (docs/inbound.md).

Meta posts every message and status to one URL, so this is the busiest request the product serves. Django's
ASGI handler runs its whole (sync) middleware chain and the view in one shared thread per request, which caps a
web process near 50 requests a second. Here the body is read on the event loop, checked and stored by the same
`webhook_post` the Django view uses, in a thread of a small pool (several deliveries at once), and answered as
soon as the event is committed. Stored events are handed to workers in batches (one task per
WEBHOOK_ENQUEUE_BATCH events or per few milliseconds) after the answer has gone out.

Nothing here weakens the promises of the view: 200 only after the commit, nothing stored for a rejected body.
An event whose batch never reached the broker (the process died, Redis was away) is still pending in the
database, and the requeue sweep hands it out (WEBHOOK_REQUEUE_AFTER). Everything else, including the GET
handshake, goes through Django.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from conversations.services import webhook_events_enqueue
from conversations.webhooks import SIGNATURE_HEADER, WebhookReply, webhook_post

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp/"
ENQUEUE_DELAY = 0.05  # seconds to gather a batch; a busy line fills one sooner

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _store(raw: bytes, signature: str) -> WebhookReply:
    """One delivery in a pool thread. Its connection goes back to the web process's pool afterwards (without a
    pool, it is closed: a thread of this pool never holds one between deliveries)."""
    try:
        return webhook_post(raw, signature, enqueue=False)
    finally:
        connection.close()


class _Batcher:
    """Collects stored event ids and enqueues them a batch at a time, off the event loop."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._ids: list[int] = []
        self._flush_scheduled = False

    def add(self, event_id: int) -> None:
        self._ids.append(event_id)
        loop = asyncio.get_running_loop()
        if len(self._ids) >= settings.WEBHOOK_ENQUEUE_BATCH:
            self._flush(loop)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_later(ENQUEUE_DELAY, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        ids, self._ids = self._ids, []
        if ids:
            loop.run_in_executor(self._executor, webhook_events_enqueue, ids)


class WebhookApp:
    """ASGI app: webhook POSTs on the lean path, everything else to `inner` (Django)."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self._store_pool = ThreadPoolExecutor(settings.WEBHOOK_THREADS, thread_name_prefix="webhook")
        self._enqueue_pool = ThreadPoolExecutor(1, thread_name_prefix="webhook-enqueue")
        self._batcher = _Batcher(self._enqueue_pool)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH:
            await self._post(scope, receive, send)
        else:
            await self.inner(scope, receive, send)

    async def _post(self, scope: dict, receive: Any, send: Any) -> None:
        raw = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if raw is None:
            reply = WebhookReply(413, b'{"error": {"code": 413, "message": "the body is too large"}}')
        else:
            signature = _header(scope, SIGNATURE_HEADER)
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(self._store_pool, _store, raw, signature)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", reply.content_type.encode()),
                    (b"content-length", str(len(reply.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
        if reply.event_id is not None:
            self._batcher.add(reply.event_id)


def _header(scope: dict, name: str) -> str:
    wanted = name.lower().encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return ""


async def _read_body(receive: Any, limit: int | None) -> bytes | None:
    """The whole request body, or None when it is larger than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
