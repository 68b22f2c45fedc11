"""`/ws/sessions/`: live session states for staff pages (docs/sessions.md "Live state"). Authenticates, joins the
groups of the clients the user may see, sends the current snapshot, then forwards changes. Never writes."""

from __future__ import annotations

from channels.db import database_sync_to_async

from crm.consumers import CLOSE_UNAUTHENTICATED, GroupForwardingConsumer
from crm.events import sessions_group
from crm.selectors import client_ids_visible_to
from sessions.selectors import session_snapshot_for_user

CLOSE_FORBIDDEN = 4403


class SessionsConsumer(GroupForwardingConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not (user.is_active and user.is_staff):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        visible = await database_sync_to_async(client_ids_visible_to)(user)
        # Join first, then read: a change committed meanwhile arrives after the snapshot, never lost before it.
        await self.join([sessions_group(None)] if visible is None else [sessions_group(c) for c in visible])
        await self.accept()
        snapshot = await database_sync_to_async(session_snapshot_for_user)(user=user)
        await self.send_json({"type": "sessions.snapshot", "data": {"sessions": snapshot}})
