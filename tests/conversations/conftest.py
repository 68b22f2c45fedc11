"""Fixtures of the conversation tests: a queue and a Cloud API number routed to it (modules may override)."""

from __future__ import annotations

import pytest

from tests.conversations import meta_payloads as meta
from tests.queues.factories import QueueFactory
from tests.sessions.factories import WhatsAppNumberFactory


@pytest.fixture
def queue(default_client):
    return QueueFactory(client=default_client, name="Ventas")


@pytest.fixture
def number(default_client, queue):
    return WhatsAppNumberFactory(client=default_client, phone_number_id=meta.PHONE_NUMBER_ID, queue=queue)
