"""`/ws/sessions/`: live session states for staff pages (docs/sessions.md "Live state"). Authenticates, joins the
groups of the clients the user may see, sends the current snapshot, then forwards changes. Never writes."""

from __future__ import annotations

from channels.db import database_sync_to_async

from crm.consumers import CLOSE_FORBIDDEN, StaffClientsConsumer
from crm.events import sessions_group
from sessions.selectors import session_snapshot_for_user

__all__ = ["CLOSE_FORBIDDEN", "SessionsConsumer"]


class SessionsConsumer(StaffClientsConsumer):
    group = staticmethod(sessions_group)

    async def after_join(self, user) -> None:
        snapshot = await database_sync_to_async(session_snapshot_for_user)(user=user)
        await self.send_json({"type": "sessions.snapshot", "data": {"sessions": snapshot}})
