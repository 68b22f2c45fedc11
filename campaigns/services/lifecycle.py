"""A campaign's life: create, start, pause, resume, cancel, complete, and the human decision on unknown
recipients."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, time
from typing import TYPE_CHECKING

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Recipient
from campaigns.services.progress import campaign_progress_publish
from crm.events import client_group, publish_on_commit

if TYPE_CHECKING:
    from conversations.models import MessageTemplate
    from crm.models import Client
    from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)

S = Campaign.Status
R = Recipient.Status


class CampaignError(Exception):
    """The campaign cannot do that now; nothing changed. `code` for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update(of=("self",)).select_related("number", "template").get(pk=campaign.pk)


def _enqueue_dispatch(campaign_id: int) -> None:
    from campaigns.tasks import campaign_dispatch_task

    try:
        campaign_dispatch_task.delay(campaign_id)
    except Exception:  # the broker is down: beat's tick starts the dispatcher once it is back
        logger.warning("campaign %s: dispatch not queued; the campaigns tick will start it", campaign_id)


def _refuse_unless(campaign: Campaign, allowed: tuple[str, ...], message: str) -> None:
    """`message` says what is allowed, with %(status)s for the campaign's status."""
    if campaign.status not in allowed:
        raise CampaignError("invalid_state", message % {"status": campaign.get_status_display().lower()})


def _check_recipients_render(campaign: Campaign) -> None:
    """The message may have changed since the import: every pending recipient must still have what it needs, or
    the campaign does not start (rather than failing them one by one while sending)."""
    from campaigns.rendering import MissingVariables, TemplateSyntaxProblem, campaign_render

    problems = []
    pending = campaign.recipients.filter(status=R.PENDING).order_by("pk").values_list("line", "phone", "variables")
    for line, phone, variables in pending.iterator(chunk_size=2000):
        try:
            campaign_render(campaign, variables or {})
        except (MissingVariables, TemplateSyntaxProblem) as exc:
            where = _("line %(n)s") % {"n": line} if line else phone
            problems.append(f"{where}: {exc}")
            if len(problems) == 5:
                break
    if problems:
        raise CampaignError(
            "missing_variables",
            _("Some recipients lack what the message now uses (import them again, or add a fallback): %(list)s")
            % {"list": "; ".join(problems)},
        )


def _run_or_schedule(campaign: Campaign) -> None:
    """Scheduled while its start time is ahead; running otherwise, its dispatcher queued after commit."""
    now = timezone.now()
    if campaign.start_at is not None and campaign.start_at > now:
        campaign.status = S.SCHEDULED
        return
    campaign.status = S.RUNNING
    campaign.started_at = campaign.started_at or now
    transaction.on_commit(lambda: _enqueue_dispatch(campaign.pk))


@transaction.atomic
def campaign_create(
    *,
    client: Client,
    number: WhatsAppNumber,
    name: str,
    message: str = "",
    template: MessageTemplate | None = None,
    template_parameters: list[str] | None = None,
    start_at: datetime | None = None,
    quiet_from: time | None = None,
    quiet_until: time | None = None,
    send_days: Iterable[int] | None = None,
    user: AbstractBaseUser | None = None,
) -> Campaign:
    """A new draft campaign of `client` from `number`, checked with the same rules as in admin (the model's
    validation: the number and template of the client, free text for WhatsApp Web and sandbox numbers, an approved
    template with one value per placeholder for Cloud API numbers, sane quiet hours). `send_days` (1 Monday … 7
    Sunday; duplicates ignored) defaults to every day. Recipients are imported next; nothing is sent until it starts.

    Raises django's `ValidationError` (nothing written) when the campaign breaks a rule."""
    campaign = Campaign(
        client=client,
        number=number,
        name=name,
        message=message,
        template=template,
        template_parameters=template_parameters if template_parameters is not None else [],
        start_at=start_at,
        quiet_from=quiet_from,
        quiet_until=quiet_until,
        created_by=user,
    )
    if send_days is not None:
        campaign.send_days = sorted({int(day) for day in send_days})
    campaign.full_clean()
    campaign.save()
    return campaign


@transaction.atomic
def campaign_start(*, campaign: Campaign, user: AbstractBaseUser | None = None) -> Campaign:
    """Start a draft: scheduled when its start time is ahead, running (dispatched at once) otherwise."""
    campaign = _locked(campaign)
    _refuse_unless(campaign, (S.DRAFT,), _("Only a draft campaign can be started; this one is %(status)s."))
    try:
        campaign.full_clean()
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
        raise CampaignError("invalid", _("Fix the campaign first: %(problems)s") % {"problems": problems}) from None
    if not campaign.number.is_active:
        raise CampaignError(
            "number_inactive", _("The number %(number)s is inactive.") % {"number": campaign.number.alias}
        )
    if not campaign.recipients.filter(status=R.PENDING).exists():
        raise CampaignError("no_recipients", _("The campaign has no recipients to send to: import some first."))
    _check_recipients_render(campaign)
    campaign.status_reason = ""
    _run_or_schedule(campaign)
    campaign.save(update_fields=["status", "status_reason", "started_at", "updated_at"])
    campaign_progress_publish(campaign)
    return campaign


@transaction.atomic
def campaign_pause(
    *, campaign: Campaign, reason: str = "", automatic: bool = False, user: AbstractBaseUser | None = None
) -> Campaign:
    """Stop sending until resumed. Messages already handed to a provider finish; nothing else is sent.

    `automatic`: the campaign paused itself (failure spike, number deactivated); staff of its client are told."""
    campaign = _locked(campaign)
    if automatic and campaign.status != S.RUNNING:
        return campaign  # already stopped by someone else: nothing to say
    _refuse_unless(
        campaign,
        (S.RUNNING, S.SCHEDULED),
        _("Only a running or scheduled campaign can be paused; this one is %(status)s."),
    )
    campaign.status, campaign.paused_at = S.PAUSED, timezone.now()
    campaign.status_reason = reason[:500] or (_("Paused by %(user)s.") % {"user": user} if user else "")
    campaign.save(update_fields=["status", "status_reason", "paused_at", "updated_at"])
    if automatic:
        logger.warning("campaign %s paused itself: %s", campaign.pk, reason)
        publish_on_commit(
            client_group(campaign.client_id),
            {
                "type": "campaign.paused",
                "data": {"campaign": campaign.pk, "name": campaign.name, "reason": campaign.status_reason},
            },
        )
    campaign_progress_publish(campaign)
    return campaign


@transaction.atomic
def campaign_resume(*, campaign: Campaign, user: AbstractBaseUser | None = None) -> Campaign:
    """Continue a paused campaign where it stopped (scheduled again when its start time is still ahead)."""
    campaign = _locked(campaign)
    _refuse_unless(campaign, (S.PAUSED,), _("Only a paused campaign can be resumed; this one is %(status)s."))
    if not campaign.number.is_active:
        raise CampaignError(
            "number_inactive", _("The number %(number)s is inactive.") % {"number": campaign.number.alias}
        )
    campaign.paused_at, campaign.status_reason = None, ""
    _run_or_schedule(campaign)
    campaign.save(update_fields=["status", "status_reason", "paused_at", "started_at", "updated_at"])
    campaign_progress_publish(campaign)
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, user: AbstractBaseUser | None = None) -> Campaign:
    """Stop for good: recipients not yet sent are skipped ("cancelled"); sent ones keep their outcome."""
    campaign = _locked(campaign)
    _refuse_unless(
        campaign,
        (S.DRAFT, S.SCHEDULED, S.RUNNING, S.PAUSED),
        _("This campaign is %(status)s: there is nothing left to cancel."),
    )
    now = timezone.now()
    campaign.status, campaign.finished_at = S.CANCELLED, now
    campaign.status_reason = _("Cancelled by %(user)s.") % {"user": user} if user else _("Cancelled.")
    campaign.save(update_fields=["status", "status_reason", "finished_at", "updated_at"])
    # Claimed recipients whose message was not written yet are skipped too: the dispatcher re-checks the
    # campaign's status under the recipient's lock before writing one.
    campaign.recipients.filter(status__in=(R.PENDING, R.SENDING), message__isnull=True, sent_at__isnull=True).update(
        status=R.SKIPPED, error_code="cancelled", error_reason=_("The campaign was cancelled."), status_at=now
    )
    campaign_progress_publish(campaign)
    return campaign


@transaction.atomic
def campaign_complete_if_done(*, campaign: Campaign) -> bool:
    """Mark a running campaign completed once no recipient is pending or being sent. True when it completed."""
    campaign = _locked(campaign)
    if campaign.status != S.RUNNING:
        return False
    if campaign.recipients.filter(status__in=(R.PENDING, R.SENDING)).exists():
        return False
    campaign.status, campaign.finished_at, campaign.status_reason = S.COMPLETED, timezone.now(), ""
    campaign.save(update_fields=["status", "finished_at", "status_reason", "updated_at"])
    campaign_progress_publish(campaign)
    return True


@transaction.atomic
def campaign_recipients_retry_unknown(
    *, campaign: Campaign, recipient_ids: list[int] | None = None, user: AbstractBaseUser | None = None
) -> int:
    """A person decided: send again to recipients whose message is unknown (interrupted mid-send; it may or may
    not have arrived). They go back to pending with a new message; a completed campaign runs again. Returns how
    many."""
    campaign = _locked(campaign)
    _refuse_unless(
        campaign,
        (S.RUNNING, S.PAUSED, S.COMPLETED),
        _("Unknown recipients are retried in a running, paused or completed campaign; this one is %(status)s."),
    )
    recipients = campaign.recipients.filter(status=R.UNKNOWN)
    if recipient_ids is not None:
        recipients = recipients.filter(pk__in=recipient_ids)
    count = recipients.update(
        status=R.PENDING,
        message=None,
        claimed_at=None,
        sent_at=None,
        error_code="",
        error_reason="",
        status_at=timezone.now(),
    )
    if count and campaign.status == S.COMPLETED:
        campaign.status, campaign.finished_at = S.RUNNING, None
        campaign.status_reason = _("Sending again to %(n)s recipient(s) whose outcome was unknown.") % {"n": count}
        campaign.save(update_fields=["status", "finished_at", "status_reason", "updated_at"])
    if count and campaign.status == S.RUNNING:
        transaction.on_commit(lambda: _enqueue_dispatch(campaign.pk))
    campaign_progress_publish(campaign)
    return count
