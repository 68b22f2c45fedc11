"""The sessions worker's bootstep keeps the consumer on exactly the number queues its connections need, whatever
order Celery runs the scheduled operations in and across consumer restarts (a lost broker connection)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sessions.bootsteps import SessionsSupervisorStep
from sessions.connections import number_queue


class App:
    class amqp:  # noqa: N801
        class queues:  # noqa: N801
            consume_from = {"sessions": object()}


@dataclass
class Queue:
    name: str


@dataclass
class TaskConsumer:
    queues: list[Queue] = field(default_factory=list)


class Consumer:
    """What the bootstep uses of Celery's consumer. Without an event loop (the threads pool), Celery keeps
    operations scheduled with call_soon in a list and runs them newest first (`list.pop()`): so does this."""

    def __init__(self, consuming: list[str]) -> None:
        self.app = App()
        self.task_consumer = TaskConsumer([Queue(name) for name in consuming])
        self.pending: list = []

    def call_soon(self, fn, *args) -> None:
        self.pending.append(lambda: fn(*args))

    def perform_pending_operations(self) -> None:
        while self.pending:
            self.pending.pop()()

    def add_task_queue(self, name: str) -> None:
        if name not in self.consuming():
            self.task_consumer.queues.append(Queue(name))

    def cancel_task_queue(self, name: str) -> None:
        self.task_consumer.queues = [q for q in self.task_consumer.queues if q.name != name]

    def consuming(self) -> list[str]:
        return [q.name for q in self.task_consumer.queues]


def step_with(consumer: Consumer) -> SessionsSupervisorStep:
    step = SessionsSupervisorStep.__new__(SessionsSupervisorStep)  # without a worker blueprint around it
    SessionsSupervisorStep.__init__(step, parent=None)
    step.consumer = consumer
    return step


def test_a_cancel_then_an_add_of_the_same_queue_leaves_it_consumed_though_celery_runs_them_newest_first():
    # given a number's queue consumed, whose connection drops while Redis is away and comes back after
    consumer = Consumer(["sessions", number_queue(7)])
    step = step_with(consumer)
    step._add_queue(number_queue(7))
    consumer.perform_pending_operations()

    step._cancel_queue(number_queue(7))  # the lease could not be renewed: connection closed
    step._add_queue(number_queue(7))  # reconnected: its sends must be consumed again
    consumer.perform_pending_operations()  # newest first: the add's operation runs before the cancel's

    assert consumer.consuming() == ["sessions", number_queue(7)]


def test_a_consumer_restart_consumes_what_is_wanted_now_and_nothing_dropped_meanwhile():
    consumer = Consumer(["sessions"])
    step = step_with(consumer)
    for number in (1, 2, 3):
        step._add_queue(number_queue(number))
    consumer.perform_pending_operations()
    step._cancel_queue(number_queue(2))  # dropped while the broker was away: never run on the old consumer

    # the restarted consumer comes back with Celery's own list of queues, and the step starts again
    restarted = Consumer(["sessions", number_queue(1), number_queue(2), number_queue(3)])
    step.supervisor = object()  # the supervisor outlives the restart
    step.start(restarted)

    assert sorted(restarted.consuming()) == ["sessions", number_queue(1), number_queue(3)]
