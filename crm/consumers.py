"""WebSocket consumers: authenticate, join groups, forward events. They never write."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from crm.events import live_events_of, user_group

CLOSE_UNAUTHENTICATED = 4401


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


class LiveConsumer(GroupForwardingConsumer):
    """`/ws/live/`: the logged-in user's live events. Anonymous connections are refused."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.join([user_group(user.pk)])
        await self.accept()
        await self.send_json({"type": "hello", "data": {"user": user.get_username()}})
