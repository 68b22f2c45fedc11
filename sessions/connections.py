"""The live connections of this process, by number id (docs/sessions.md "Ownership").

Only the supervisor of a sessions worker registers connections, for the numbers whose lease it holds; a send task
for such a number runs in that worker (it consumes the number's own queue) and finds the connection here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sessions.engines.base import NOT_CONNECTED, Connection, OutboundContent, SendError, SendResult

if TYPE_CHECKING:
    from sessions.models import WhatsAppNumber

_connections: dict[int, Connection] = {}
_lock = threading.Lock()


def live_connection(number_id: int) -> Connection | None:
    """The number's connection if this process holds it and it is online."""
    with _lock:
        connection = _connections.get(number_id)
    if connection is None or not getattr(connection, "connected", False):
        return None
    return connection


def live_connection_send(number: WhatsAppNumber, content: OutboundContent) -> SendResult:
    """A connection engine's `send`: through the number's live connection in this process, or `not_connected`
    (retryable; nothing was handed to the provider)."""
    connection = live_connection(number.pk)
    if connection is None:
        raise SendError(NOT_CONNECTED, f"{number.alias} is not connected in this process.", retryable=True)
    return connection.send(content)


def connection_register(number_id: int, connection: Connection) -> None:
    with _lock:
        _connections[number_id] = connection


def connection_unregister(number_id: int, connection: Connection | None = None) -> None:
    with _lock:
        if connection is None or _connections.get(number_id) is connection:
            _connections.pop(number_id, None)


NUMBER_QUEUE_PREFIX = "sessions.number."


def number_queue(number_id: int) -> str:
    """The Celery queue of sends for a number whose connection one sessions worker owns."""
    return f"{NUMBER_QUEUE_PREFIX}{number_id}"
