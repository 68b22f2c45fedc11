"""`/ws/campaigns/`: live campaign progress for staff pages (docs/campaigns.md "Operating a campaign"). Joins the
groups of the clients the user may see and forwards progress events; pages read `progress.json` on (re)connect.
Never writes."""

from __future__ import annotations

from crm.consumers import StaffClientsConsumer
from crm.events import campaigns_group


class CampaignsConsumer(StaffClientsConsumer):
    group = staticmethod(campaigns_group)
