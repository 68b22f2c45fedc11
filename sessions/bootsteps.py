"""The sessions worker's bootstep: runs the connection supervisor inside a worker that consumes the `sessions`
queue (docs/sessions.md "Ownership"). Registered on the one Celery app in config/celery.py.

Run that worker with the threads pool (`-P threads`, as the Procfile and compose do): a send for a WhatsApp Web
or sandbox number must run in the process that holds the number's connection.
"""

from __future__ import annotations

import logging

from celery import bootsteps

logger = logging.getLogger(__name__)

SESSIONS_QUEUE = "sessions"


class SessionsSupervisorStep(bootsteps.StartStopStep):
    """Starts the supervisor once the consumer can take queues, and stops it (closing every connection and
    releasing its leases) on warm shutdown. The supervisor outlives consumer restarts (a lost broker
    connection): the queues it added stay in the consumer's list and are consumed again."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.supervisor = None
        self.consumer = None

    def start(self, c) -> None:
        if SESSIONS_QUEUE not in c.app.amqp.queues.consume_from:
            return
        self.consumer = c
        if self.supervisor is not None:
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
        c = self.consumer
        c.call_soon(c.add_task_queue, name)

    def _cancel_queue(self, name: str) -> None:
        c = self.consumer
        c.call_soon(c.cancel_task_queue, name)

    def shutdown(self, c) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
