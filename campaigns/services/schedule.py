"""When a campaign may send: its start time, quiet hours and days, in its number's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import WEEKDAYS, Campaign


@dataclass(frozen=True)
class Window:
    open: bool
    reason: str = ""  # why not, for people
    opens_at: datetime | None = None  # when it opens next (None: open now)


def _allowed_at(campaign: Campaign, local: datetime) -> bool:
    days = campaign.send_days or [day for day, _label in WEEKDAYS]
    if local.isoweekday() not in days:
        return False
    if campaign.quiet_from is None or campaign.quiet_until is None:
        return True
    now, start, end = local.time(), campaign.quiet_from, campaign.quiet_until
    quiet = start <= now < end if start < end else (now >= start or now < end)  # may cross midnight
    return not quiet


def campaign_window(campaign: Campaign, now: datetime) -> Window:
    """Whether `campaign` may send at `now`, and if not, why and from when."""
    if campaign.start_at is not None and campaign.start_at > now:
        start = timezone.localtime(campaign.start_at, campaign.number.zone)
        return Window(False, _("Starts at %(at)s.") % {"at": f"{start:%Y-%m-%d %H:%M} ({start.tzinfo})"}, start)
    zone = campaign.number.zone
    local = timezone.localtime(now, zone)
    if _allowed_at(campaign, local):
        return Window(True)
    # Find the next allowed minute: candidates are the end of the quiet hours and the start of each next day.
    candidates = []
    for offset in range(0, 8):
        day = (local + timedelta(days=offset)).date()
        midnight = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        candidates.append(midnight)
        if campaign.quiet_until is not None:
            candidates.append(datetime.combine(day, campaign.quiet_until, tzinfo=zone))
    opens = next((c for c in sorted(candidates) if c > local and _allowed_at(campaign, c)), None)
    if opens is None:
        return Window(False, _("No day is allowed for sending."), None)
    return Window(
        False,
        _("Outside its sending hours; continues %(at)s (%(zone)s).")
        % {"at": opens.strftime("%a %Y-%m-%d %H:%M"), "zone": zone.key},
        opens,
    )
