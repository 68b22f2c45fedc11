"""Live events to browsers (docs/realtime.md). Services call `publish_on_commit`; nothing else sends.

An event leaves only after the transaction that caused it commits, so a browser never sees a change that was
rolled back. Consumers forward events of the groups they joined.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from typing import Any, TypedDict

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


def sessions_group(client_id: int | None) -> str:
    """Session states of one client's numbers (`None`: of every client), for staff pages (docs/sessions.md)."""
    return "sessions.all" if client_id is None else f"sessions.client.{client_id}"


def campaigns_group(client_id: int | None) -> str:
    """Progress of one client's campaigns (`None`: of every client), for staff pages (docs/campaigns.md)."""
    return "campaigns.all" if client_id is None else f"campaigns.client.{client_id}"


MAX_EVENTS_PER_MESSAGE = 100


class _Publisher:
    """Sends live events from one background thread with its own event loop, in the order they were published.

    A publishing thread (a web request, a worker task) only enqueues: it never waits for Redis, and the channel
    layer keeps one connection pool on one long-lived loop instead of a new loop per event. What was queued
    together goes out as one message per group (`live.events`), so a busy worker sends a few Redis commands
    per batch instead of one per event per group. Events queued when a
    process exits are lost, as any live event may be: pages catch up on reconnect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[tuple[str, LiveEvent]] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0

    def submit(self, group: str, event: LiveEvent) -> None:
        self._ensure_thread()
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((group, event))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event submitted so far has been handed to the channel layer. True when it has."""
        return self._idle.wait(timeout)

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # A forked child (Celery prefork) inherits the parent's state but not its thread: start afresh.
            self._queue, self._pending = queue.SimpleQueue(), 0
            self._idle.set()
            threading.Thread(target=self._run, name="live-events", daemon=True).start()
            self._pid = pid

    def _run(self) -> None:
        # A daemon thread with its own loop and a blocking get: nothing here is joined at interpreter exit
        # (an executor thread would be, and would hang every process that ever published).
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        events = self._queue
        while True:
            batch = [events.get()]
            while True:  # drain what else is queued in one loop entry
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            loop.run_until_complete(self._send_all(batch))

    async def _send_all(self, batch: list[tuple[str, LiveEvent]]) -> None:
        """One channel-layer message per group for what was queued together, each group's events in order."""
        by_group: dict[str, list[LiveEvent]] = {}
        for group, event in batch:
            by_group.setdefault(group, []).append(event)
        for group, events in by_group.items():
            for start in range(0, len(events), MAX_EVENTS_PER_MESSAGE):
                await self._send(group, events[start : start + MAX_EVENTS_PER_MESSAGE])

    async def _send(self, group: str, events: list[LiveEvent]) -> None:
        try:
            layer = get_channel_layer()
            if layer is not None:
                if len(events) == 1:
                    await layer.group_send(group, {"type": "live.event", "event": events[0]})
                else:
                    await layer.group_send(group, {"type": "live.events", "events": events})
        except Exception:  # a browser missing an event catches up on reconnect; the write already committed
            logger.warning("%s live event(s) to %s not delivered", len(events), group, exc_info=True)
        finally:
            with self._lock:
                self._pending -= len(events)
                if self._pending <= 0:
                    self._pending = 0
                    self._idle.set()


def live_events_of(message: dict) -> list[LiveEvent]:
    """The events a channel-layer message carries: one (`live.event`) or several queued together
    (`live.events`)."""
    return list(message["events"]) if message.get("type") == "live.events" else [message["event"]]


_publisher = _Publisher()


def publish_now(group: str, event: LiveEvent) -> None:
    """Hand `event` to the background publisher; returns at once."""
    _publisher.submit(group, event)


def publish_flush(timeout: float = 5.0) -> bool:
    """Wait for queued live events to reach the channel layer (tests, and processes about to exit)."""
    return _publisher.flush(timeout)


def publish_on_commit(group: str, event: LiveEvent) -> None:
    transaction.on_commit(lambda: publish_now(group, event))
