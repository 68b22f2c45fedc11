"""Celery tasks of the campaigns app: ids in, one service call (they run on the `campaigns` queue)."""

from __future__ import annotations

from celery import shared_task

from campaigns.services import campaign_dispatch, campaigns_tick


@shared_task(acks_late=True)
def campaign_dispatch_task(campaign_id: int) -> dict:
    """Send the campaign for one time slice; queue the next slice while it still has work and may send."""
    report = campaign_dispatch(campaign_id=campaign_id)
    if report.stopped in ("deadline", "lease_lost"):
        campaign_dispatch_task.delay(campaign_id)
    return {"stopped": report.stopped, "sent": report.sent, "failed": report.failed, "unknown": report.unknown}


@shared_task(acks_late=True)
def campaigns_tick_task() -> dict:
    return campaigns_tick()
