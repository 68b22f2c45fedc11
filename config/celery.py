"""The one Celery app: queues, routing, and the beat scheduler (django-celery-beat, editable in admin)."""

from __future__ import annotations

import os
import sys

from celery import Celery
from kombu import Exchange, Queue

from config.env import load_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

if os.path.basename(sys.argv[0]) == "celery":
    load_settings()  # a bad setting stops `celery -A config ...` with one line, not a traceback

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")

# default: short tasks (inbound processing, AI replies, Cloud API sends); campaigns: campaign dispatch;
# sessions: work for the process that owns WhatsApp Web connections; webhooks: event webhook deliveries, in their
# own process so a slow or failing receiver never takes a slot from inbound processing or campaigns.
TASK_QUEUES = ("default", "campaigns", "sessions", "webhooks")
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in TASK_QUEUES]
app.conf.task_default_exchange = "default"
app.conf.task_default_routing_key = "default"
# Campaign tasks go to their queue; any other task names its queue (`@shared_task(queue=...)`) or runs on default.
app.conf.task_routes = {"campaigns.tasks.*": {"queue": "campaigns"}}
app.autodiscover_tasks()

# The sessions worker owns WhatsApp Web and sandbox connections (a no-op in workers without the sessions queue).
from sessions.bootsteps import SessionsSupervisorStep  # noqa: E402

app.steps["consumer"].add(SessionsSupervisorStep)


def retry_while_database_away(queue: str) -> dict:
    """Options of a task whose service is safe to run twice: acknowledged only after the run, and retried with
    backoff, indefinitely, while the database is away (`@shared_task(**retry_while_database_away("default"))`)."""
    from django.db import InterfaceError, OperationalError

    return {
        "queue": queue,
        "acks_late": True,
        "autoretry_for": (OperationalError, InterfaceError),
        "retry_backoff": True,
        "retry_backoff_max": 300,
        "max_retries": None,
    }
