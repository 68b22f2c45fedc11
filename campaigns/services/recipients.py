"""Recipients' states outside a single send: claiming, giving back, following their messages, the sweeper, and
what a number may still send today (docs/campaigns.md "At most once")."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Recipient
from conversations.models import Message
from conversations.services.outbound import UNKNOWN_REASON
from sessions.models import WhatsAppNumber

R = Recipient.Status


def recipients_claim(*, campaign_id: int, limit: int) -> tuple[list[int], datetime]:
    """Claim up to `limit` pending recipients of the campaign, oldest first: marked `sending` with one claim time
    (the claim's token). Rows another dispatcher holds are skipped, never waited for or taken twice."""
    now = timezone.now()
    if limit <= 0:
        return [], now
    with transaction.atomic():
        ids = list(
            Recipient.objects.select_for_update(skip_locked=True)
            .filter(campaign_id=campaign_id, status=R.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Recipient.objects.filter(pk__in=ids).update(status=R.SENDING, claimed_at=now, status_at=now)
    return ids, now


def _untouched(queryset):
    """Claimed rows nothing was handed over for: no send started (`sent_at`), no message written."""
    return queryset.filter(status=R.SENDING, sent_at__isnull=True, message__isnull=True)


def recipients_release(*, ids: list[int], claimed_at: datetime) -> int:
    """Give back claimed recipients nothing was sent for (their claim still this one)."""
    if not ids:
        return 0
    return _untouched(Recipient.objects.filter(pk__in=ids, claimed_at=claimed_at)).update(
        status=R.PENDING, claimed_at=None, status_at=timezone.now()
    )


def recipients_release_orphans(*, campaign_id: int) -> int:
    """Give back every claim of the campaign nothing was sent for. Only for the dispatcher holding the campaign's
    lease: the others' claims are orphans of a dead one (and one still alive re-checks its claim before sending)."""
    return _untouched(Recipient.objects.filter(campaign_id=campaign_id)).update(
        status=R.PENDING, claimed_at=None, status_at=timezone.now()
    )


def recipients_mark_handed_over(*, claims: list[tuple[int, datetime]], campaign_id: int) -> set[int]:
    """The durable mark made just before recipients' messages go to the provider, committed on its own: only for
    (recipient id, claim time) pairs whose claim is still that one, and only while the campaign runs. Returns the
    ids marked; the others must not be sent."""
    if not claims:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_recipient r SET sent_at = now(), status_at = now(), updated_at = now()
              FROM unnest(%s::bigint[], %s::timestamptz[]) AS c(id, claimed_at)
             WHERE r.id = c.id AND r.claimed_at = c.claimed_at AND r.status = 'sending' AND r.sent_at IS NULL
               AND r.message_id IS NULL
               AND EXISTS (SELECT 1 FROM campaigns_campaign WHERE id = %s AND status = 'running')
         RETURNING r.id
            """,
            [[pk for pk, _at in sorted(claims)], [at for _pk, at in sorted(claims)], campaign_id],
        )
        return {row[0] for row in cursor.fetchall()}


def recipients_record(recipients: list[Recipient], *, at: datetime) -> None:
    """Write the outcome of sent recipients (status, message, error) in one statement, in id order."""
    recipients = sorted(recipients, key=lambda r: r.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_recipient r
               SET message_id = v.message_id, status_at = %s, updated_at = %s,
                   -- a reply that came first (replied) stays; a sweep that gave up on it (unknown) is corrected
                   status = CASE WHEN r.status IN ('sending', 'unknown') THEN v.status ELSE r.status END,
                   error_code = CASE WHEN r.status IN ('sending', 'unknown') THEN v.code ELSE r.error_code END,
                   error_reason = CASE WHEN r.status IN ('sending', 'unknown') THEN v.reason ELSE r.error_reason END
              FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[])
                   AS v(id, message_id, status, code, reason)
             WHERE r.id = v.id
            """,
            [
                at,
                at,
                [r.pk for r in recipients],
                [r.message_id for r in recipients],
                [r.status for r in recipients],
                [r.error_code for r in recipients],
                [r.error_reason for r in recipients],
            ],
        )


def recipients_sweep() -> dict[str, int]:
    """Claims of dead dispatchers: back to pending when nothing was sent for them (after
    CAMPAIGN_CLAIM_STALE_AFTER), unknown when their message was handed over but never recorded (after
    OUTBOUND_SENDING_STALE_AFTER): a person decides, nothing is re-sent blindly. Rows being written elsewhere are
    left for the next sweep."""
    now = timezone.now()
    with transaction.atomic():
        stale_claims = list(
            _untouched(
                Recipient.objects.filter(claimed_at__lt=now - timedelta(seconds=settings.CAMPAIGN_CLAIM_STALE_AFTER))
            )
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:5000]
        )
        released = Recipient.objects.filter(pk__in=stale_claims).update(
            status=R.PENDING, claimed_at=None, status_at=now
        )
    with transaction.atomic():
        interrupted = list(
            Recipient.objects.filter(
                status=R.SENDING,
                message__isnull=True,
                sent_at__lt=now - timedelta(seconds=settings.OUTBOUND_SENDING_STALE_AFTER),
            )
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:5000]
        )
        unknown = Recipient.objects.filter(pk__in=interrupted).update(
            status=R.UNKNOWN, status_at=now, error_code="interrupted", error_reason=UNKNOWN_REASON[:500]
        )
    return {"released": released, "unknown": unknown}


# --- Following messages ----------------------------------------------------------------------------------------

MESSAGE_TO_RECIPIENT = {
    Message.Status.PENDING: R.SENDING,
    Message.Status.SENDING: R.SENDING,
    Message.Status.ACCEPTED: R.SENT,
    Message.Status.SENT: R.SENT,
    Message.Status.DELIVERED: R.DELIVERED,
    Message.Status.READ: R.READ,
    Message.Status.PLAYED: R.READ,
    Message.Status.FAILED: R.FAILED,
    Message.Status.UNKNOWN: R.UNKNOWN,
}
_MAPPED = "CASE m.status " + " ".join(f"WHEN '{m}' THEN '{r}'" for m, r in MESSAGE_TO_RECIPIENT.items()) + " END"
# Statuses a message may still move a recipient from (read only moves to replied, which inbound messages do).
TRACKED = (R.SENDING, R.SENT, R.DELIVERED)


def recipients_refresh(*, campaign_ids: list[int]) -> set[int]:
    """Bring recipients up to date with their messages (delivered, read, failed later, unknown). Rows another
    transaction is writing are skipped (the next refresh gets them), and the rest are locked in id order, so a
    refresh never deadlocks with a dispatcher recording its answers. Returns the campaigns whose recipients
    changed."""
    if not campaign_ids:
        return set()
    with connection.cursor() as cursor:
        # _MAPPED is built from the status choices above, never from input.
        cursor.execute(
            f"""
            WITH todo AS (
                SELECT r.id, {_MAPPED} AS status, m.status_at, m.error_code, m.error_reason
                  FROM campaigns_recipient r JOIN conversations_message m ON m.id = r.message_id
                 WHERE r.campaign_id = ANY(%s) AND r.status = ANY(%s)
                   AND ({_MAPPED}) IS NOT NULL AND ({_MAPPED}) <> r.status
                 ORDER BY r.id
                   FOR UPDATE OF r SKIP LOCKED
            )
            UPDATE campaigns_recipient r
               SET status = todo.status, status_at = todo.status_at, error_code = todo.error_code,
                   error_reason = todo.error_reason, updated_at = now()
              FROM todo
             WHERE r.id = todo.id
         RETURNING r.campaign_id
            """,  # noqa: S608
            [campaign_ids, list(TRACKED)],
        )
        return {row[0] for row in cursor.fetchall()}


def recipients_mark_replied(*, number_id: int, contact_ids: list[int], at: datetime) -> int:
    """Customers who wrote to `number_id` (the inbound pipeline calls this): their recipients of the number's
    campaigns sent before `at` (within CAMPAIGN_TRACK_DAYS) become replied. Returns how many."""
    if not contact_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH todo AS (
                SELECT r.id FROM campaigns_recipient r JOIN campaigns_campaign k ON k.id = r.campaign_id
                 WHERE r.contact_id = ANY(%s) AND k.number_id = %s AND r.sent_at < %s AND r.sent_at > %s
                   AND r.status IN ('sending', 'sent', 'delivered', 'read')
                 ORDER BY r.id
                   FOR UPDATE OF r
            )
            UPDATE campaigns_recipient r SET status = 'replied', status_at = %s, updated_at = now()
              FROM todo WHERE r.id = todo.id
            """,
            [contact_ids, number_id, at, at - timedelta(days=settings.CAMPAIGN_TRACK_DAYS), at],
        )
        return cursor.rowcount


# --- Daily cap and warm-up --------------------------------------------------------------------------------------


def number_daily_cap(*, number: WhatsAppNumber, today: date) -> int | None:
    """Campaign messages `number` may send on `today` (its own time zone): its daily cap, lowered during its
    warm-up (GOVERNOR_WARMUP_FIRST_DAY on day one, doubling each day). None: no limit."""
    cap = number.daily_cap
    if number.warmup_days:
        first = number.warmup_started_on or timezone.localtime(number.created_at, number.zone).date()
        day = (today - first).days
        if 0 <= day < number.warmup_days:
            ramp = settings.GOVERNOR_WARMUP_FIRST_DAY * 2**day
            cap = ramp if cap is None else min(cap, ramp)
    return cap


def number_campaign_sends_today(*, number: WhatsAppNumber, now: datetime | None = None) -> int:
    """Campaign messages of `number` handed over since midnight in its time zone, or claimed to be, every campaign
    together (a claim counts at once, so two campaigns of one number cannot both spend the same room)."""
    local = timezone.localtime(now or timezone.now(), number.zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        Recipient.objects.filter(campaign__number=number)
        .filter(Q(sent_at__gte=midnight) | Q(status=R.SENDING, sent_at__isnull=True))
        .count()
    )


def number_daily_room(*, number: WhatsAppNumber, now: datetime | None = None) -> int | None:
    """How many more campaign messages `number` may send today (None: no limit)."""
    now = now or timezone.now()
    cap = number_daily_cap(number=number, today=timezone.localtime(now, number.zone).date())
    if cap is None:
        return None
    return max(cap - number_campaign_sends_today(number=number, now=now), 0)


# --- Failure spikes ---------------------------------------------------------------------------------------------


def campaign_failure_spike(*, campaign: Campaign) -> str | None:
    """Why the campaign should stop now, from its last CAMPAIGN_SPIKE_WINDOW messages (None: healthy). Reads the
    recipients: refresh them first so failures reported later by webhooks count."""
    recent = list(
        Recipient.objects.filter(campaign=campaign, sent_at__isnull=False)
        .exclude(status__in=(R.SENDING, R.SKIPPED))  # outcomes only: a send still under way has none yet
        .order_by("-sent_at", "-pk")
        .values_list("status", "error_code", "error_reason")[: settings.CAMPAIGN_SPIKE_WINDOW]
    )
    pause_codes = set(settings.CAMPAIGN_PAUSE_CODES)
    for status, code, reason in recent:
        if status == R.FAILED and code in pause_codes:
            return _("WhatsApp answered error %(code)s (%(reason)s): paused to protect the number.") % {
                "code": code,
                "reason": reason or _("no detail"),
            }
    failed = sum(1 for status, _code, _reason in recent if status == R.FAILED)
    if len(recent) >= settings.CAMPAIGN_SPIKE_MIN and failed / len(recent) > settings.CAMPAIGN_SPIKE_RATIO:
        return _("%(failed)s of the last %(n)s messages failed: paused to protect the number.") % {
            "failed": failed,
            "n": len(recent),
        }
    return None
