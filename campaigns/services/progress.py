"""Live progress of campaigns to staff pages (docs/campaigns.md "Progress"), published after commit, and to
event webhooks (docs/webhooks.md) at most every EVENT_WEBHOOK_PROGRESS_EVERY seconds per campaign."""

from __future__ import annotations

from django.conf import settings

from campaigns.models import Campaign
from campaigns.selectors import campaign_progress
from crm.events import campaigns_group, publish_on_commit
from crm.models import WebhookEventType
from crm.webhooks import webhook_event_throttle, webhook_event_wanted, webhook_events_emit

WEBHOOK_FIELDS = ("status", "status_reason", "total", "done", "left", "percent", "counts", "eta_seconds")


def campaign_progress_publish(campaign: Campaign, counts: dict[str, int] | None = None) -> dict:
    """Send the campaign's current progress to staff of its client; returns it."""
    progress = campaign_progress(campaign, counts)
    event = {"type": "campaign.progress", "data": progress}
    publish_on_commit(campaigns_group(campaign.client_id), event)
    publish_on_commit(campaigns_group(None), event)
    _progress_webhook(campaign, progress)
    return progress


def _progress_webhook(campaign: Campaign, progress: dict) -> None:
    """`campaign.progress` to the client's endpoints: always when the status changed since the last one sent,
    otherwise at most once every EVENT_WEBHOOK_PROGRESS_EVERY seconds (a running campaign reports every few seconds)."""
    kind = WebhookEventType.CAMPAIGN_PROGRESS
    if not webhook_event_wanted(client_id=campaign.client_id, type=kind):
        return
    if not webhook_event_throttle(
        key=f"campaign:{campaign.pk}", state=campaign.status, seconds=settings.EVENT_WEBHOOK_PROGRESS_EVERY
    ):
        return
    data = {"campaign": campaign.pk, "name": campaign.name, "number": campaign.number_id}
    data.update({name: progress[name] for name in WEBHOOK_FIELDS})
    webhook_events_emit(client_id=campaign.client_id, type=kind, data=data)
