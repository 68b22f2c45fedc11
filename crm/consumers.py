"""WebSocket consumers: authenticate, join groups, forward events (docs/realtime.md). They write nothing but the
user's presence in Redis (crm/presence.py)."""

from __future__ import annotations

import asyncio
import random
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from crm.events import client_group, live_events_of, queue_group, sessions_group, user_group

CLOSE_UNAUTHENTICATED = 4401
REGROUP_SECONDS = 60  # how often an open page's groups are worked out again (at its next ping), with jitter


class GroupForwardingConsumer(AsyncJsonWebsocketConsumer):
    """Forwards the live events of the groups in `groups_joined` (set by `connect`) and leaves them on close."""

    groups_joined: list[str]

    async def join(self, groups: list[str]) -> None:
        self.groups_joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def live_event(self, message: dict) -> None:
        await self.send_json(message["event"])

    async def live_events(self, message: dict) -> None:
        for event in live_events_of(message):
            await self.send_json(event)


CLOSE_FORBIDDEN = 4403


class StaffClientsConsumer(GroupForwardingConsumer):
    """For staff pages: authenticates, refuses non-staff, joins `group(client_id)` for each client the user may
    see (`group(None)` for those who see every client), then `after_join`. Never writes."""

    @staticmethod
    def group(client_id: int | None) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        from crm.selectors import client_ids_visible_to

        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not (user.is_active and user.is_staff):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        visible = await database_sync_to_async(client_ids_visible_to)(user)
        # Join first, then read: a change committed meanwhile arrives after the snapshot, never lost before it.
        await self.join([self.group(None)] if visible is None else [self.group(c) for c in visible])
        await self.accept()
        await self.after_join(user)

    async def after_join(self, user) -> None:
        """What to send once joined (a snapshot); nothing by default."""


def live_groups_for(user) -> list[str]:
    """The groups a user's CRM page listens to, by the same rules as the pages (crm/access.py): their own events,
    their queues' (every queue of their clients for staff), and, for staff, their clients' unrouted
    conversations and numbers' connection states (the dashboard)."""
    from crm.access import access_for
    from crm.models import Client

    access = access_for(user)
    groups = [user_group(user.pk)]
    groups += [queue_group(pk) for pk in access.queues().order_by("pk").values_list("pk", flat=True)]
    if access.is_staff:
        clients = Client.objects.all() if access.client_ids is None else Client.objects.filter(pk__in=access.client_ids)
        client_ids = list(clients.order_by("pk").values_list("pk", flat=True))
        groups += [client_group(pk) for pk in client_ids]
        groups += [sessions_group(None)] if access.client_ids is None else [sessions_group(pk) for pk in client_ids]
    return groups


def _fresh_user(user_id: int):
    """The user as the database has them now; None once deactivated or deleted."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


class LiveConsumer(GroupForwardingConsumer):
    """`/ws/live/`: the logged-in user's live events. Anonymous connections are refused. The page sends
    `{"type": "ping"}` every 20 s, which keeps the agent present (auto-away, docs/crm.md) and, about once a
    minute, has the groups worked out again."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.regroup_at = time.monotonic() + REGROUP_SECONDS * random.uniform(0.8, 1.2)
        await self.join(await database_sync_to_async(live_groups_for)(user))
        await self.accept()
        await self._presence("touch")
        await self.send_json({"type": "hello", "data": {"user": user.get_username()}})

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._presence("touch")
            if time.monotonic() >= self.regroup_at:
                self.regroup_at = time.monotonic() + REGROUP_SECONDS * random.uniform(0.8, 1.2)
                # In the background: events keep flowing to this page while the database is asked.
                self.regrouping = asyncio.ensure_future(self._regroup())

    async def _regroup(self) -> None:
        """Follow membership changes while the page stays open: a user taken off a queue, or deactivated,
        stops receiving its events within about a minute; one added to a queue starts."""
        user = await database_sync_to_async(_fresh_user)(self.user_id)
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        wanted = await database_sync_to_async(live_groups_for)(user)
        for group in set(self.groups_joined) - set(wanted):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(wanted) - set(self.groups_joined):
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = wanted

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if getattr(self, "user_id", None) is not None:
            await self._presence("leave")

    async def _presence(self, what: str) -> None:
        from crm import presence

        action = presence.presence_touch if what == "touch" else presence.presence_leave
        try:
            await sync_to_async(action, thread_sensitive=False)(user_id=self.user_id, channel=self.channel_name)
        except Exception:  # presence is a convenience: a Redis hiccup must not drop the socket
            import logging

            logging.getLogger(__name__).warning("presence %s for user %s failed", what, self.user_id, exc_info=True)
