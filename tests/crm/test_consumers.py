"""WebSocket: session-authenticated, origin-checked, and fed by events published after commit."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction

from config.asgi import application
from crm.consumers import CLOSE_UNAUTHENTICATED
from crm.events import publish_on_commit, user_group
from tests.crm.factories import UserFactory


def session_cookie_for(client, user) -> bytes:
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(*, cookie: bytes | None = None, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


@pytest.mark.django_db(transaction=True)
def test_connection_without_a_logged_in_user_is_refused():
    async def scenario():
        ws = communicator()
        connected, code = await ws.connect()
        await ws.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()

    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED


@pytest.mark.django_db(transaction=True)
def test_logged_in_user_is_accepted_and_greeted(client):
    user = UserFactory(username="agent-ana")
    cookie = session_cookie_for(client, user)

    async def scenario():
        ws = communicator(cookie=cookie)
        connected, _ = await ws.connect()
        hello = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return connected, hello

    connected, hello = async_to_sync(scenario)()

    assert connected is True
    assert hello == {"type": "hello", "data": {"user": "agent-ana"}}


@pytest.mark.django_db(transaction=True)
def test_connection_from_a_foreign_origin_is_refused_even_when_logged_in(client):
    cookie = session_cookie_for(client, UserFactory())

    async def scenario():
        ws = communicator(cookie=cookie, origin=b"https://evil.example")
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


@pytest.mark.django_db(transaction=True)
def test_events_reach_the_browser_only_after_commit(client):
    user = UserFactory()
    cookie = session_cookie_for(client, user)
    event = {"type": "conversation.assigned", "data": {"conversation": 42}}

    def rolled_back_change():
        try:
            with transaction.atomic():
                publish_on_commit(user_group(user.pk), {"type": "rolled.back", "data": {}})
                raise RuntimeError("rollback")
        except RuntimeError:
            pass

    async def scenario():
        ws = communicator(cookie=cookie)
        await ws.connect()
        await ws.receive_json_from(timeout=5)  # hello

        await sync_to_async(rolled_back_change)()
        nothing_after_rollback = await ws.receive_nothing(timeout=0.5)

        atomic = transaction.atomic()
        await sync_to_async(atomic.__enter__)()
        await sync_to_async(publish_on_commit)(user_group(user.pk), event)
        nothing_before_commit = await ws.receive_nothing(timeout=0.5)
        await sync_to_async(atomic.__exit__)(None, None, None)

        received = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return nothing_after_rollback, nothing_before_commit, received

    nothing_after_rollback, nothing_before_commit, received = async_to_sync(scenario)()

    assert nothing_after_rollback, "a rolled-back change must publish nothing"
    assert nothing_before_commit, "events wait for the commit"
    assert received == event


@pytest.mark.django_db(transaction=True)
def test_events_queued_together_reach_the_browser_one_by_one_in_order(client):
    user = UserFactory()
    cookie = session_cookie_for(client, user)
    events = [{"type": "message.status", "data": {"message": n}} for n in range(5)]

    async def scenario():
        ws = communicator(cookie=cookie)
        await ws.connect()
        await ws.receive_json_from(timeout=5)  # hello
        await get_channel_layer().group_send(user_group(user.pk), {"type": "live.events", "events": events})
        received = [await ws.receive_json_from(timeout=5) for _ in events]
        await ws.disconnect()
        return received

    assert async_to_sync(scenario)() == events
