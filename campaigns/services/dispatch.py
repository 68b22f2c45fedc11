"""Sending a running campaign at its number's pace, at most once per recipient (docs/campaigns.md "Dispatch").

One dispatcher per campaign at a time (a Redis lease) claims due recipients in batches with
`SELECT … FOR UPDATE SKIP LOCKED` (marked `sending`), renders and checks each batch at once, and hands the
recipients to a few sender threads. A sender reserves the number's next slot from the governor, then:

- Cloud API (a stateless engine, sent from here): marks the recipient handed over (`sent_at`, committed, only if
  the claim is still its own and the campaign still runs), calls the provider, and leaves the answer to the
  dispatcher, which records a batch of answers (messages and recipients) in one transaction;
- WhatsApp Web and sandbox (sent only by the sessions worker holding the connection): writes the message and
  queues it to that worker, the slot already taken; the recipient follows its message.

What a crash leaves behind, and what becomes of it (recipients_sweep):
- a recipient claimed with nothing handed over: back to pending (nothing was sent for it);
- a recipient handed over whose answer was never recorded: the provider may have it. It becomes unknown and a
  person decides ("retry unknown" in admin); nothing is re-sent blindly.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Recipient
from campaigns.rendering import MissingVariables, TemplateSyntaxProblem, campaign_render
from campaigns.selectors import campaign_counts
from campaigns.services.lifecycle import campaign_complete_if_done, campaign_pause
from campaigns.services.progress import campaign_progress_publish
from campaigns.services.recipients import (
    campaign_failure_spike,
    number_daily_room,
    recipients_claim,
    recipients_mark_handed_over,
    recipients_record,
    recipients_refresh,
    recipients_release,
    recipients_release_orphans,
    recipients_sweep,
)
from campaigns.services.schedule import campaign_window
from conversations.models import Message
from conversations.services.outbound import OutboundRefused, conversation_for_outbound, message_send
from conversations.services.outbound_bulk import BulkResult, BulkSend, outbound_bulk_prepare, outbound_bulk_record
from sessions.engines import EngineUnavailable, connection_engine_names
from sessions.engines.base import SendError
from sessions.governor import Slot, governor_reserve_many, governor_wait, number_interval, number_rate
from sessions.leases import redis_connection
from sessions.models import NumberSession, SessionState, WhatsAppNumber
from sessions.services import number_send

logger = logging.getLogger(__name__)

C = Campaign.Status
R = Recipient.Status
LEASE_PREFIX = "campaign-dispatch:"
PROGRESS_EVERY = 1.0  # seconds between live progress events of a running campaign
RECORD_EVERY = 0.05  # seconds answers wait at most to be recorded (a crash makes those unrecorded unknown)
CHECK_EVERY = 0.2  # seconds between looks at the campaign (paused? window? more to claim?)
CATCH_UP_GAP = 0.5  # of the interval: how close a late sender may follow the previous departure
ARM_AT_ONCE = 8  # most sends the feeder reserves slots for and marks in one go
HEALTH_EVERY = 5.0  # seconds between refreshing recipients from their messages (late failures) and a spike check
# Seconds a stopping dispatcher keeps trying to record the provider's answers while the database is away. Those
# answers are the only record of what the provider was given: lost, their recipients become `unknown`, and a
# "retry unknown" would send them twice.
FINAL_RECORD_WAIT = 60.0

# Refusals that say something is wrong with the campaign or its number, not with one recipient: pause.
PAUSING_REFUSALS = {"number_inactive", "engine_unavailable", "templates_unsupported"}
# Refusals about one recipient: skipped (not sent, nothing failed at the provider).
SKIPPING_REFUSALS = {"opted_out", "no_address"}


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    queued: int = 0
    released: int = 0
    stopped: str = ""  # why the run ended: "deadline", "done", "paused", "window", "daily_cap", "busy", ...
    outcomes: dict[str, int] = field(default_factory=dict)


def _refusal_status(code: str) -> str:
    return R.SKIPPED if code in SKIPPING_REFUSALS else R.FAILED


def recipient_queue(*, recipient_id: int, claimed_at: datetime, campaign: Campaign) -> str:
    """WhatsApp Web and sandbox numbers: write one claimed recipient's message and queue it to the sessions worker
    holding the number's connection (the governor's slot already taken). Returns "queued", the recipient's new
    status when it cannot be sent, "released" when the claim is no longer ours or the campaign stopped, or
    "pause:<reason>" when the campaign must pause (the recipient is back to pending)."""
    with transaction.atomic():
        recipient = (
            Recipient.objects.select_for_update(of=("self",))
            .select_related("contact")
            .filter(pk=recipient_id, status=R.SENDING, claimed_at=claimed_at, sent_at__isnull=True)
            .filter(message__isnull=True)
            .first()
        )
        if recipient is None:
            return "released"  # the sweeper or a cancel took it back
        if not Campaign.objects.filter(pk=campaign.pk, status=C.RUNNING).exists():
            recipient.status, recipient.claimed_at = R.PENDING, None
            recipient.save(update_fields=["status", "claimed_at", "updated_at"])
            return "released"
        now = timezone.now()
        try:
            rendered = campaign_render(campaign, recipient.variables)
            message = message_send(
                conversation=conversation_for_outbound(number=campaign.number, contact=recipient.contact),
                text=rendered.text,
                template=rendered.template,
                origin=Message.Origin.CAMPAIGN,
                slot_taken=True,
            )
        except (MissingVariables, TemplateSyntaxProblem) as exc:
            return _record(recipient, R.FAILED, now, "variables", str(exc))
        except OutboundRefused as exc:
            if exc.code in PAUSING_REFUSALS:
                recipient.status, recipient.claimed_at = R.PENDING, None
                recipient.save(update_fields=["status", "claimed_at", "updated_at"])
                return f"pause:{exc.message}"
            return _record(recipient, _refusal_status(exc.code), now, exc.code, exc.message)
        recipient.message, recipient.sent_at, recipient.status_at = message, now, now
        recipient.save(update_fields=["message", "sent_at", "status_at", "updated_at"])
    return "queued"


def _record(recipient: Recipient, status: str, now: datetime, code: str, reason: str) -> str:
    recipient.status, recipient.status_at = status, now
    recipient.error_code, recipient.error_reason = code[:32], reason[:500]
    recipient.save(update_fields=["status", "status_at", "error_code", "error_reason", "updated_at"])
    return status


# --- The dispatcher -----------------------------------------------------------------------------------------


def number_online(*, number: WhatsAppNumber) -> bool:
    """Whether `number` can send now: always for a stateless engine (Cloud API); for WhatsApp Web and sandbox,
    while its session is connected (otherwise campaign messages would pile up for the moment it reconnects)."""
    if number.engine not in connection_engine_names():
        return True
    return NumberSession.objects.filter(number=number, state=SessionState.CONNECTED).exists()


_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class _Lease:
    """One dispatcher per campaign: a Redis key holding this dispatcher's token, renewed while it runs."""

    def __init__(self, campaign_id: int) -> None:
        self.key = f"{LEASE_PREFIX}{campaign_id}"
        self.token = uuid.uuid4().hex
        self.redis = redis_connection()
        self.ttl_ms = int(settings.CAMPAIGN_DISPATCH_LEASE_SECONDS * 1000)

    def acquire(self) -> bool:
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return bool(self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        self.redis.eval(_RELEASE, 1, self.key, self.token)


def campaign_dispatching(*, campaign_id: int) -> bool:
    """Whether a dispatcher holds the campaign now."""
    return bool(redis_connection().exists(f"{LEASE_PREFIX}{campaign_id}"))


def campaign_dispatch(*, campaign_id: int, seconds: float | None = None) -> DispatchReport:
    """Send the campaign's due recipients for up to `seconds` (CAMPAIGN_DISPATCH_SECONDS), then return; the task
    queues the next run while work remains. Only one dispatcher per campaign runs at a time."""
    lease = _Lease(campaign_id)
    if not lease.acquire():
        return DispatchReport(stopped="busy")
    # Senders sleep until their slot and must wake on time: hand the interpreter lock around more often than the
    # default 5 ms, or a sender waiting for it sends late and the slots it misses are lost.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, 0.0005))
    try:
        return _Dispatcher(campaign_id, lease, seconds or settings.CAMPAIGN_DISPATCH_SECONDS).run()
    finally:
        sys.setswitchinterval(switch_interval)
        lease.release()


class _Dispatcher:
    """One campaign's run. Three kinds of threads:

    - the main thread claims batches, renders and checks them (`work`), records the provider's answers in
      batches, and watches the campaign (status, window, daily cap, failure spikes, progress);
    - the feeder reserves the number's slots from the governor and, for the few it holds, marks their recipients
      handed over in one statement; they go to `armed`. (WhatsApp Web and sandbox: it queues each message to the
      sessions worker instead, when its slot comes.)
    - senders (Cloud API) take armed recipients, wait for their slot and then for the process's departure window
      (the governor's pace over any second; a late sender catches up), and call the provider. No database work:
      every slot is used on time.
    """

    def __init__(self, campaign_id: int, lease: _Lease, seconds: float) -> None:
        self.campaign_id = campaign_id
        self.lease = lease
        self.deadline = time.monotonic() + seconds
        self.report = DispatchReport()
        self.work: queue.Queue[tuple[BulkSend | int, datetime]] = queue.Queue()
        self.armed: queue.Queue[tuple[BulkSend, Slot]] = queue.Queue()
        self.stop = threading.Event()  # no more claims and reservations; armed recipients still go
        self.lock = threading.Lock()
        self.in_flight = 0  # taken from `work` and not yet answered (or given back)
        self.answers: list[BulkResult] = []
        self.pause_reason: str | None = None
        self.spike_watch = 0
        self.departures: _DepartureWindow | None = None
        self.feeder_done = threading.Event()

    def _campaign(self) -> Campaign:
        return Campaign.objects.select_related("number", "template").get(pk=self.campaign_id)

    def _count(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.report.outcomes[outcome] = self.report.outcomes.get(outcome, 0) + n
            if hasattr(self.report, outcome):
                setattr(self.report, outcome, getattr(self.report, outcome) + n)

    def _busy(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta

    def run(self) -> DispatchReport:
        # Holding the lease, no other dispatcher runs this campaign: claims nothing was sent for are orphans of one
        # that died. Taking them back is safe even if it still lives: it re-checks its claim before sending.
        self.report.released = recipients_release_orphans(campaign_id=self.campaign_id)
        campaign = self._campaign()
        number = self.campaign_number = campaign.number
        self.direct = number.engine not in connection_engine_names()
        rate = number_rate(number)
        interval = number_interval(number)
        # How far ahead slots are held: a few intervals at Cloud API pace (enough to keep every slot used through a
        # database hiccup).
        # Each slot held is a recipient marked handed over before its send: a crash makes those unknown, so few.
        # At WhatsApp Web pace, only half an interval: a one-to-one reply waits up to two (message_deliver), so
        # it always gets the next slot rather than the campaign taking them all.
        self.max_wait = max(interval * 4, 0.03) if interval < 0.1 else interval * 0.5
        # Senders of this process keep the governor's pace over any second; one that woke late catches up.
        self.interval = interval
        self.departures = _DepartureWindow(rate=rate, min_gap=interval * CATCH_UP_GAP)
        batch = max(8, min(400, math.ceil(rate * 3)))
        # Recipients marked handed over but not yet sent, at most: what a crash can leave unknown besides the
        # answers not yet recorded.
        self.armed_max = max(ARM_AT_ONCE, math.ceil(rate * 0.05))
        # Enough senders to keep every slot used while the provider answers (CAMPAIGN_SEND_LATENCY seconds each).
        senders = max(1, min(settings.CAMPAIGN_SEND_THREADS, math.ceil(rate * settings.CAMPAIGN_SEND_LATENCY)))
        threads = [threading.Thread(target=self._feeder, daemon=True, name="campaign-feeder")]
        if self.direct:
            threads += [
                threading.Thread(target=self._sender, daemon=True, name=f"campaign-sender-{i}") for i in range(senders)
            ]
        for thread in threads:
            thread.start()
        last_progress = last_health = time.monotonic()
        last_check = 0.0
        try:
            while not self.stop.is_set():
                recorded, failures = self._record_answers(campaign)
                # After a failure, look again at every batch until it has left the spike window.
                self.spike_watch = settings.CAMPAIGN_SPIKE_WINDOW if failures else max(self.spike_watch - recorded, 0)
                if recorded and self.spike_watch:
                    spike = campaign_failure_spike(campaign=campaign)
                    if spike:
                        self.pause_reason = spike
                if self.pause_reason:
                    self.report.stopped = "paused"
                    break
                if self.feeder_done.is_set():  # it failed (logged); the tick starts a new dispatcher
                    self.report.stopped = "feeder_failed"
                    break
                if time.monotonic() - last_check < CHECK_EVERY:  # the rest is not needed as often
                    time.sleep(RECORD_EVERY)
                    continue
                last_check = time.monotonic()
                if last_check >= self.deadline:
                    self.report.stopped = "deadline"
                    break
                if not self.lease.renew():
                    self.report.stopped = "lease_lost"
                    break
                campaign = self._campaign()
                if last_check - last_health >= HEALTH_EVERY:  # failures reported later by webhooks
                    recipients_refresh(campaign_ids=[campaign.pk])
                    last_health = last_check
                    self.pause_reason = self.pause_reason or campaign_failure_spike(campaign=campaign)
                stopped = self._gate(campaign)
                if stopped:
                    self.report.stopped = stopped
                    break
                if self.work.qsize() < batch // 2 and self._claim(campaign, batch) == "done":
                    break
                if last_check - last_progress >= PROGRESS_EVERY:
                    campaign_progress_publish(campaign, campaign_counts(campaign))
                    last_progress = last_check
                time.sleep(RECORD_EVERY)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
            self._record_remaining(campaign)
            close_old_connections()
        if self.pause_reason:
            campaign_pause(campaign=self._campaign(), reason=self.pause_reason, automatic=True)
            self.report.stopped = "paused"
        else:
            with transaction.atomic():
                campaign_progress_publish(self._campaign())
        return self.report

    def _claim(self, campaign: Campaign, batch: int) -> str:
        waiting = self.work.qsize() + self.in_flight
        room = number_daily_room(number=campaign.number)  # this run's claims already count against it
        if room is not None:
            if room <= 0:
                if not waiting:
                    self._waiting(campaign, "daily_cap")
                    self.report.stopped = "daily_cap"
                    return "done"
                return ""
        ids, claimed_at = recipients_claim(campaign_id=campaign.pk, limit=batch if room is None else min(batch, room))
        if not ids:
            if not waiting and not self.answers:
                campaign_complete_if_done(campaign=campaign)
                self.report.stopped = "done"
                return "done"
            return ""
        if self.direct:
            self._prepare(campaign, ids, claimed_at)
        else:
            for recipient_id in ids:
                self.work.put((recipient_id, claimed_at))
        return ""

    def _prepare(self, campaign: Campaign, ids: list[int], claimed_at: datetime) -> None:
        """Render and check a claimed batch at once; what cannot be sent is recorded now, the rest queued."""
        recipients = list(
            Recipient.objects.filter(pk__in=ids, status=R.SENDING, claimed_at=claimed_at)
            .select_related("contact")
            .order_by("pk")
        )
        items, outcomes = [], {}
        for recipient in recipients:
            try:
                rendered = campaign_render(campaign, recipient.variables)
            except (MissingVariables, TemplateSyntaxProblem) as exc:
                outcomes[recipient.pk] = (R.FAILED, "variables", str(exc))
                continue
            items.append((recipient.pk, recipient.contact, rendered.text, rendered.template))
        try:
            sends, refused = outbound_bulk_prepare(number=campaign.number, items=items, origin=Message.Origin.CAMPAIGN)
        except OutboundRefused as exc:  # the number itself cannot send: nothing of the batch goes
            recipients_release(ids=ids, claimed_at=claimed_at)
            self.pause_reason = exc.message
            return
        for key, exc in refused.items():
            outcomes[key] = (_refusal_status(exc.code), exc.code, exc.message)
        now = timezone.now()
        for key, (status, code, reason) in sorted(outcomes.items()):
            Recipient.objects.filter(pk=key, status=R.SENDING, claimed_at=claimed_at).update(
                status=status, status_at=now, error_code=code[:32], error_reason=reason[:500]
            )
            self._count(status)
        for send in sends:
            self.work.put((send, claimed_at))

    def _gate(self, campaign: Campaign) -> str:
        """Why the dispatcher must stop now ("" while it may send)."""
        if self.pause_reason:
            return "paused"
        if campaign.status != C.RUNNING:
            return campaign.status
        window = campaign_window(campaign, timezone.now())
        if not window.open:
            self._waiting(campaign, "window", window.reason)
            return "window"
        if not number_online(number=campaign.number):
            self._waiting(campaign, "offline")
            return "offline"
        return ""

    def _waiting(self, campaign: Campaign, why: str, reason: str = "") -> None:
        if why == "offline":
            reason = _("Waiting for %(number)s to connect.") % {"number": campaign.number.alias}
        if why == "daily_cap":
            reason = _("Daily limit of the number reached; it continues tomorrow (%(zone)s).") % {
                "zone": campaign.number.zone.key
            }
        if campaign.status_reason != reason:
            Campaign.objects.filter(pk=campaign.pk, status=C.RUNNING).update(
                status_reason=reason, updated_at=timezone.now()
            )
            campaign.status_reason = reason
            with transaction.atomic():
                campaign_progress_publish(campaign)

    # --- the feeder ---------------------------------------------------------------------------------------------

    def _feeder(self) -> None:
        try:
            campaign = self._campaign()  # also opens this thread's database connection before its first slot
            while not self.stop.is_set():
                if self.armed.qsize() >= self.armed_max:  # senders behind: mark no more ahead of them
                    time.sleep(self.interval)
                    continue
                self._busy(+1)  # counted before it leaves `work`, so the main thread never sees it nowhere
                try:
                    item, claimed_at = self.work.get_nowait()
                except queue.Empty:
                    self._busy(-1)
                    time.sleep(0.01)
                    continue
                try:
                    if self.direct:
                        self._arm(campaign, (item, claimed_at))
                    else:
                        self._send_queued(campaign, item, claimed_at)
                except Exception:
                    logger.exception("campaign %s: the feeder stopped; its claims go back", self.campaign_id)
                    self.stop.set()  # the run ends; the next dispatcher takes back whatever was left claimed
                    return
        finally:
            self.feeder_done.set()
            connection.close()

    def _arm(self, campaign: Campaign, first: tuple[BulkSend, datetime]) -> None:
        """Reserve the number's next slots for `first` and the sends queued behind it (one round trip), mark
        their recipients handed over (one statement), and pass them to the senders."""
        items = [first]
        while len(items) < ARM_AT_ONCE and len(items) + self.armed.qsize() < self.armed_max:
            self._busy(+1)
            try:
                items.append(self.work.get_nowait())
            except queue.Empty:
                self._busy(-1)
                break
        slots, next_free = governor_reserve_many(
            number=campaign.number, to=[send.content.to for send, _at in items], max_wait=self.max_wait
        )
        reserved = [(send, at, slot) for (send, at), slot in zip(items, slots, strict=False) if slot is not None]
        for send, at in [item for item, slot in zip(items, slots, strict=False) if slot is None] + items[len(slots) :]:
            self.work.put((send, at))  # held back by its pair limit, or beyond reach for now: later
            self._busy(-1)
        if not reserved:
            time.sleep(min(max(next_free - self.max_wait, 0.002), 0.5))
            return
        marked = recipients_mark_handed_over(
            claims=[(send.key, claimed_at) for send, claimed_at, _slot in reserved], campaign_id=campaign.pk
        )
        for send, claimed_at, slot in reserved:
            if send.key in marked:
                # The point of no return: the recipient is marked; it is never handed to the provider again.
                self.armed.put((send, slot))
            else:  # paused or cancelled meanwhile (give the claim back), or the claim was taken back: not sent
                self.report.released += recipients_release(ids=[send.key], claimed_at=claimed_at)
                self._busy(-1)

    def _send_queued(self, campaign: Campaign, recipient_id: int, claimed_at: datetime) -> None:
        phone = Recipient.objects.filter(pk=recipient_id).values_list("phone", flat=True).first() or ""
        slot = governor_wait(
            number=campaign.number, to=phone.lstrip("+") or None, max_wait=self.max_wait, deadline=self.deadline
        )
        if not slot.granted or self.stop.is_set():
            self.work.put((recipient_id, claimed_at))
            self._busy(-1)
            return
        outcome = recipient_queue(recipient_id=recipient_id, claimed_at=claimed_at, campaign=campaign)
        self._busy(-1)
        if outcome.startswith("pause:"):
            self.pause_reason = outcome.removeprefix("pause:")
            self.stop.set()
            return
        self._count(outcome)

    # --- senders (Cloud API) -----------------------------------------------------------------------------------

    def _sender(self) -> None:
        try:
            while not (self.feeder_done.is_set() and self.armed.empty()):
                try:
                    send, slot = self.armed.get(timeout=0.1)
                except queue.Empty:
                    continue
                try:
                    self._send(send, slot)
                finally:
                    self._busy(-1)
        finally:
            connection.close()  # only opened when the provider flagged the number (sessions.services.number_send)

    def _send(self, send: BulkSend, slot: Slot) -> None:
        def depart() -> None:
            # Waited for with the request already built, so only the socket write follows.
            slot.sleep_until()
            self.departures.wait()

        number = self.campaign_number
        sent_at = timezone.now()
        try:
            result = BulkResult(
                send,
                sent_at,
                number_send(number=number, content=send.content, before_send=depart).provider_message_id,
            )
        except (SendError, EngineUnavailable) as exc:
            error = exc if isinstance(exc, SendError) else SendError("engine_unavailable", str(exc))
            result = BulkResult(send, sent_at, error=error)
            if error.code in settings.CAMPAIGN_PAUSE_CODES:  # Meta's spam and quality blocks: stop at once
                self.pause_reason = _(
                    "WhatsApp answered error %(code)s (%(reason)s): paused to protect the number."
                ) % {"code": error.code, "reason": error.reason}
                self.stop.set()
            elif error.attention:  # the number itself cannot send (token expired, account restricted)
                self.pause_reason = _("%(number)s cannot send: %(reason)s (code %(code)s).") % {
                    "number": number.alias,
                    "reason": error.reason,
                    "code": error.code,
                }
                self.stop.set()
        except Exception as exc:  # whatever went wrong, the request may have left: unknown, never lost
            logger.exception("campaign %s: sending to recipient %s failed", self.campaign_id, send.key)
            result = BulkResult(send, sent_at, error=SendError("error", str(exc)[:200], ambiguous=True))
        with self.lock:
            self.answers.append(result)

    # --- recording ---------------------------------------------------------------------------------------------

    def _record_answers(self, campaign: Campaign) -> tuple[int, int]:
        """Write what the provider answered since the last call: messages and recipients, in one transaction.
        Returns how many were recorded and how many of them failed."""
        with self.lock:
            answers, self.answers = self.answers, []
        if not answers:
            return 0, 0
        try:
            updated = self._record(campaign, answers)
        except OperationalError:  # a deadlock or the database away: keep the answers for the next try
            logger.warning("campaign %s: recording %s answers failed; trying again", campaign.pk, len(answers))
            with self.lock:
                self.answers[:0] = answers
            close_old_connections()
            time.sleep(0.2)
            return 0, 0
        for recipient in updated:
            self._count(recipient.status)
        return len(updated), sum(1 for recipient in updated if recipient.status == R.FAILED)

    def _record_remaining(self, campaign: Campaign) -> None:
        """On the way out: record every answer still held and give back the claims not handed over, waiting up to
        FINAL_RECORD_WAIT for a database that is away (restarting) rather than losing what the provider said."""
        deadline = time.monotonic() + FINAL_RECORD_WAIT
        while True:
            self._record_answers(campaign)  # on failure it keeps them, reconnects and pauses a moment
            with self.lock:
                left = len(self.answers)
            if not left:
                break
            if time.monotonic() > deadline:
                logger.error(
                    "campaign %s: %s answers could not be recorded in %.0f s; their recipients become unknown",
                    campaign.pk,
                    left,
                    FINAL_RECORD_WAIT,
                )
                break
            time.sleep(0.5)
        unsent = self._unsent()
        while unsent:
            claimed_at, ids = next(iter(unsent.items()))
            try:
                self.report.released += recipients_release(ids=ids, claimed_at=claimed_at)
                del unsent[claimed_at]
            except OperationalError:
                close_old_connections()
                if time.monotonic() > deadline:  # the claims go back by themselves once stale
                    logger.warning("campaign %s: unsent claims not given back; they return when stale", campaign.pk)
                    return
                time.sleep(0.5)

    @transaction.atomic
    def _record(self, campaign: Campaign, answers: list[BulkResult]) -> list[Recipient]:
        messages = outbound_bulk_record(number=campaign.number, results=answers, origin=Message.Origin.CAMPAIGN)
        now = timezone.now()
        updated = []
        for result in answers:
            recipient = Recipient(pk=result.send.key, message=messages[result.send.key], status_at=now)
            if result.error is None:
                recipient.status, recipient.error_code, recipient.error_reason = R.SENT, "", ""
            else:
                recipient.status = R.UNKNOWN if result.error.ambiguous else R.FAILED
                recipient.error_code, recipient.error_reason = result.error.code[:32], result.error.reason[:500]
            updated.append(recipient)
        recipients_record(updated, at=now)
        return updated

    def _unsent(self) -> dict[datetime, list[int]]:
        """Take every claimed recipient not handed over off the work queue, by claim time."""
        by_claim: dict[datetime, list[int]] = {}
        while True:
            try:
                item, claimed_at = self.work.get_nowait()
            except queue.Empty:
                return by_claim
            by_claim.setdefault(claimed_at, []).append(item.key if isinstance(item, BulkSend) else item)


class _DepartureWindow:
    """The governor's pace at the door of one process, with room to catch up: of any `size` + 1 departures, the
    last leaves at least `size` slots (of `rate`) after the first, and never sooner than `min_gap` after the one
    before it (`size` is the rate rounded up, so the window spans at least a second).

    The governor's slots keep the number's pace across processes, but a sender the scheduler wakes late (two
    cores shared with the database and the other workers) would lose its slot's time for good. Here it leaves as
    soon as it can and the next ones follow it at up to 1 / `min_gap` per second, until the time is caught up:
    never in a burst, and never more than `size` (the rate less the governor's margin, rounded up) in a second."""

    def __init__(self, *, rate: float, min_gap: float) -> None:
        self.size = max(1, math.ceil(rate - 1e-9))
        self.span = self.size / rate
        self.min_gap = min_gap
        self.times: deque[float] = deque([-math.inf], maxlen=self.size)
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:  # one at a time: whoever waits here is the next to leave
            at = self.times[-1] + self.min_gap
            if len(self.times) == self.size:
                at = max(at, self.times[0] + self.span)
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.times.append(time.monotonic())


# --- Beat's campaigns tick ---------------------------------------------------------------------------------------


def campaigns_tick() -> dict[str, int]:
    """Beat's campaign housekeeping: start scheduled campaigns that are due, sweep claims of dead dispatchers,
    refresh recipients from their messages, complete finished campaigns, and make sure every running campaign with
    work and an open window has a dispatcher."""
    from campaigns.services.lifecycle import _enqueue_dispatch

    now = timezone.now()
    started = 0
    for campaign_id in Campaign.objects.filter(status=C.SCHEDULED, start_at__lte=now).values_list("pk", flat=True):
        started += Campaign.objects.filter(pk=campaign_id, status=C.SCHEDULED).update(
            status=C.RUNNING, started_at=now, updated_at=now
        )
    swept = recipients_sweep()
    tracked = list(
        Campaign.objects.filter(finished_at__isnull=True)
        .exclude(status__in=(C.DRAFT, C.SCHEDULED))
        .union(
            Campaign.objects.filter(finished_at__gte=now - timedelta(days=settings.CAMPAIGN_TRACK_DAYS)).exclude(
                status__in=(C.DRAFT, C.SCHEDULED)
            )
        )
        .values_list("pk", flat=True)
    )
    refreshed = recipients_refresh(campaign_ids=tracked)
    dispatched = completed = 0
    for campaign in Campaign.objects.filter(status=C.RUNNING).select_related("number"):
        if campaign_complete_if_done(campaign=campaign):
            completed += 1
            continue
        if campaign_dispatching(campaign_id=campaign.pk):
            continue
        if not campaign_window(campaign, now).open or not number_online(number=campaign.number):
            continue
        if number_daily_room(number=campaign.number, now=now) == 0:  # the dispatcher said so already
            continue
        _enqueue_dispatch(campaign.pk)
        dispatched += 1
    for campaign in Campaign.objects.filter(pk__in=refreshed).exclude(status=C.RUNNING).select_related("number"):
        with transaction.atomic():
            campaign_progress_publish(campaign)  # delivered, read and replied keep arriving after the last send
    return {
        "started": started,
        **swept,
        "refreshed": len(refreshed),
        "completed": completed,
        "dispatched": dispatched,
    }
