"""Writes of the campaigns app (docs/campaigns.md), one module per subject:

- `lifecycle`: create, start, pause, resume, cancel, complete, retry unknown;
- `imports`: recipients from a CSV/XLSX file or from contacts;
- `dispatch`: the dispatcher sending at the number's pace, and beat's campaigns tick;
- `recipients`: claiming, giving back, the sweeper, following messages, daily caps, failure spikes;
- `schedule`: when a campaign may send;
- `progress`: live progress to staff pages.
"""

from campaigns.services.dispatch import (
    DispatchReport,
    campaign_dispatch,
    campaign_dispatching,
    campaigns_tick,
    number_online,
    recipient_queue,
)
from campaigns.services.imports import ImportRefused, recipients_add_from_contacts, recipients_import
from campaigns.services.lifecycle import (
    CampaignError,
    campaign_cancel,
    campaign_complete_if_done,
    campaign_create,
    campaign_pause,
    campaign_recipients_retry_unknown,
    campaign_resume,
    campaign_start,
)
from campaigns.services.progress import campaign_progress_publish
from campaigns.services.recipients import (
    campaign_failure_spike,
    number_campaign_sends_today,
    number_daily_cap,
    number_daily_room,
    recipients_claim,
    recipients_mark_handed_over,
    recipients_refresh,
    recipients_release,
    recipients_release_orphans,
    recipients_sweep,
)
from campaigns.services.schedule import Window, campaign_window

__all__ = [
    "CampaignError",
    "DispatchReport",
    "ImportRefused",
    "Window",
    "campaign_cancel",
    "campaign_complete_if_done",
    "campaign_create",
    "campaign_dispatch",
    "campaign_dispatching",
    "campaign_failure_spike",
    "campaign_pause",
    "campaign_progress_publish",
    "campaign_recipients_retry_unknown",
    "campaign_resume",
    "campaign_start",
    "campaign_window",
    "campaigns_tick",
    "number_campaign_sends_today",
    "number_daily_cap",
    "number_daily_room",
    "number_online",
    "recipient_queue",
    "recipients_add_from_contacts",
    "recipients_claim",
    "recipients_import",
    "recipients_mark_handed_over",
    "recipients_refresh",
    "recipients_release",
    "recipients_release_orphans",
    "recipients_sweep",
]
