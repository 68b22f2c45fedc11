"""The sessions worker's bootstep: runs the connection supervisor inside a worker that consumes the `sessions`
queue (docs/sessions.md "Ownership"). Registered on the one Celery app in config/celery.py.

Run that worker with the threads pool (`-P threads`, as the Procfile and compose do): a send for a WhatsApp Web
or sandbox number must run in the process that holds the number's connection.
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps

from sessions.connections import NUMBER_QUEUE_PREFIX

logger = logging.getLogger(__name__)

SESSIONS_QUEUE = "sessions"


class SessionsSupervisorStep(bootsteps.StartStopStep):
    """Starts the supervisor once the consumer can take queues, and stops it (closing every connection and
    releasing its leases) on warm shutdown. The supervisor outlives consumer restarts (a lost broker
    connection).

    The number queues to consume are kept here as a set, and the consumer is brought in line with it by one
    idempotent operation (`_sync_queues`), scheduled on every change and run again on every consumer restart.
    Scheduling "add" and "cancel" themselves is not safe: without an event loop (the threads pool) Celery runs
    pending operations newest first, so a cancel issued while Redis was away and the add issued once the number
    reconnected ran add-then-cancel, and the number's sends waited forever (found by `make chaos`)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.supervisor = None
        self.consumer = None
        self._wanted: set[str] = set()  # number queues the supervisor's connections need consumed
        self._lock = threading.Lock()

    def start(self, c) -> None:
        if SESSIONS_QUEUE not in c.app.amqp.queues.consume_from:
            return
        self.consumer = c
        if self.supervisor is not None:  # a consumer restart: a new task consumer, built from Celery's own list
            self._sync_queues()
            return
        if c.pool is not None and "prefork" in type(c.pool).__module__:
            logger.error(
                "the sessions worker runs the prefork pool: sends would not reach the connections; use -P threads"
            )
        from sessions.supervisor import Supervisor

        self.supervisor = Supervisor(add_queue=self._add_queue, cancel_queue=self._cancel_queue)
        self.supervisor.start()
        logger.info("sessions supervisor %s started", self.supervisor.owner)

    def _add_queue(self, name: str) -> None:
        with self._lock:
            self._wanted.add(name)
        self.consumer.call_soon(self._sync_queues)

    def _cancel_queue(self, name: str) -> None:
        with self._lock:
            self._wanted.discard(name)
        self.consumer.call_soon(self._sync_queues)

    def _sync_queues(self) -> None:
        """In the consumer's thread: consume exactly the number queues wanted now."""
        c = self.consumer
        if c is None or c.task_consumer is None:
            return  # the consumer is (re)starting; start() syncs again
        with self._lock:
            wanted = set(self._wanted)
        consuming = {q.name for q in c.task_consumer.queues if q.name.startswith(NUMBER_QUEUE_PREFIX)}
        for name in sorted(wanted - consuming):
            c.add_task_queue(name)
        for name in sorted(consuming - wanted):
            c.cancel_task_queue(name)

    def shutdown(self, c) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
