"""Celery tasks of the queues app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from queues.services import agents_presence_sweep


@shared_task(acks_late=True)
def agents_presence_sweep_task() -> list[int]:
    return agents_presence_sweep()
