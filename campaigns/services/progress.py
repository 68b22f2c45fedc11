"""Live progress of campaigns to staff pages (docs/campaigns.md "Progress"), published after commit."""

from __future__ import annotations

from campaigns.models import Campaign
from campaigns.selectors import campaign_progress
from crm.events import campaigns_group, publish_on_commit


def campaign_progress_publish(campaign: Campaign, counts: dict[str, int] | None = None) -> dict:
    """Send the campaign's current progress to staff of its client; returns it."""
    progress = campaign_progress(campaign, counts)
    event = {"type": "campaign.progress", "data": progress}
    publish_on_commit(campaigns_group(campaign.client_id), event)
    publish_on_commit(campaigns_group(None), event)
    return progress
