"""Reads about campaigns for admin, live progress, exports and the REST API (docs/campaigns.md, docs/api.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, QuerySet
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.rendering import MissingVariables, Rendered, TemplateSyntaxProblem, campaign_render
from sessions.governor import number_rate

if TYPE_CHECKING:
    from crm.access import Access

R = Recipient.Status
OPEN = (R.PENDING, R.SENDING)
NUMBER_SECRETS = ("number__access_token", "number__verify_token")


def campaign_list_for_access(*, access: Access, filters: Mapping[str, Any] | None = None) -> QuerySet[Campaign]:
    """The campaigns of `access`'s clients, newest first, with their number and template; `filters` (each
    optional): `status`, `number` (an id). A number's secrets are never needed here: not decrypted, never shown."""
    filters = filters or {}
    queryset = Campaign.objects.select_related("number", "template").defer(*NUMBER_SECRETS)
    if access.client_ids is not None:
        queryset = queryset.filter(client_id__in=access.client_ids)
    if "status" in filters:
        queryset = queryset.filter(status=filters["status"])
    if "number" in filters:
        queryset = queryset.filter(number_id=filters["number"])
    return queryset.order_by("-created_at", "-id")


def recipient_counts_by_campaign(*, campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """For each campaign of `campaign_ids`, its recipients by status, every status present (0 when none): one
    grouped query however many campaigns (a page of the list)."""
    counts: dict[int, dict[str, int]] = {pk: dict.fromkeys(R.values, 0) for pk in campaign_ids}
    for campaign_id, recipient_status, n in (
        Recipient.objects.filter(campaign_id__in=list(counts))
        .order_by()
        .values_list("campaign_id", "status")
        .annotate(n=Count("id"))
    ):
        counts[campaign_id][recipient_status] = n
    return counts


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    """Recipients by status, every status present (0 when none)."""
    found = dict(Recipient.objects.filter(campaign=campaign).order_by().values_list("status").annotate(n=Count("id")))
    return {status: found.get(status, 0) for status in R.values}


def campaign_progress(campaign: Campaign, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """What the progress bar shows: counts by status, share done, the pace and the time left at that pace."""
    counts = counts if counts is not None else campaign_counts(campaign)
    total = sum(counts.values())
    left = sum(counts[s] for s in OPEN)
    done = total - left
    rate = number_rate(campaign.number)
    active = campaign.status in (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED, Campaign.Status.PAUSED)
    eta_seconds = math.ceil(left / rate) if active and left and rate else None
    if eta_seconds is not None and campaign.status == Campaign.Status.SCHEDULED and campaign.start_at:
        eta_seconds += max(int((campaign.start_at - timezone.now()).total_seconds()), 0)
    return {
        "campaign": campaign.pk,
        "status": campaign.status,
        "status_display": str(campaign.get_status_display()),
        "status_reason": campaign.status_reason,
        "total": total,
        "done": done,
        "left": left,
        "percent": round(100 * done / total, 1) if total else 0.0,
        "counts": counts,
        "rate": round(rate, 3),
        "eta_seconds": eta_seconds,
        "eta_at": (timezone.now() + timedelta(seconds=eta_seconds)).isoformat() if eta_seconds else None,
    }


def campaign_preview(campaign: Campaign, *, limit: int = 5) -> list[dict[str, Any]]:
    """The first recipients' messages exactly as they will be sent (or why one cannot be)."""
    rows = []
    for recipient in campaign.recipients.select_related("contact").order_by("pk")[:limit]:
        try:
            rendered: Rendered = campaign_render(campaign, recipient.variables)
            text, problem = rendered.preview, ""
        except (MissingVariables, TemplateSyntaxProblem) as exc:
            text, problem = "", str(exc)
        rows.append({"recipient": recipient, "text": text, "problem": problem})
    return rows


EXPORT_COLUMNS = [
    "line",
    "phone",
    "name",
    "status",
    "error_code",
    "reason",
    "sent_at",
    "status_at",
    "message_status",
    "provider_message_id",
]


def campaign_export_rows(campaign: Campaign) -> Iterator[list[Any]]:
    """Every recipient with its outcome, in import order, for the CSV export (header first)."""
    variables: list[str] = []
    for values in campaign.recipients.order_by().values_list("variables", flat=True).iterator(chunk_size=2000):
        for key in values or {}:
            if key not in variables:
                variables.append(key)
    yield EXPORT_COLUMNS + [f"var:{key}" for key in variables]
    queryset = (
        campaign.recipients.select_related("contact", "message")
        .order_by("pk")
        .only(
            "line",
            "phone",
            "status",
            "error_code",
            "error_reason",
            "sent_at",
            "status_at",
            "variables",
            "contact__name",
            "message__status",
            "message__provider_message_id",
        )
    )
    for r in queryset.iterator(chunk_size=2000):
        yield [
            r.line or "",
            r.phone,
            r.contact.name,
            r.status,
            r.error_code,
            r.error_reason,
            r.sent_at.isoformat() if r.sent_at else "",
            r.status_at.isoformat() if r.status_at else "",
            r.message.status if r.message else "",
            (r.message.provider_message_id or "") if r.message else "",
        ] + [(r.variables or {}).get(key, "") for key in variables]
