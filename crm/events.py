"""Live events to browsers (docs/realtime.md). Services call `publish_on_commit`; nothing else sends.

An event leaves only after the transaction that caused it commits, so a browser never sees a change that was
rolled back. Consumers forward events of the groups they joined.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


class LiveEvent(TypedDict):
    type: str
    data: dict[str, Any]


def user_group(user_id: int) -> str:
    """Events for one user: conversations assigned to them, their own availability."""
    return f"user.{user_id}"


def queue_group(queue_id: int) -> str:
    """Events of one queue: new and waiting conversations, messages of its conversations, assignments."""
    return f"queue.{queue_id}"


def client_group(client_id: int) -> str:
    """Events staff of one client watch: unrouted conversations, numbers needing attention, session states."""
    return f"client.{client_id}"


def publish_now(group: str, event: LiveEvent) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "live.event", "event": event})
    except Exception:  # a browser missing one event catches up on reconnect; the write already committed
        logger.warning("live event %s to %s not delivered", event["type"], group, exc_info=True)


def publish_on_commit(group: str, event: LiveEvent) -> None:
    transaction.on_commit(lambda: publish_now(group, event))
