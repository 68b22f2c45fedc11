"""Campaign dispatch against the real PostgreSQL, Redis and the fake Graph API: claiming under concurrency,
sending at most once, pause/resume/cancel mid-run, failure spikes, daily caps, quiet hours, the sweeper."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.services import (
    CampaignError,
    campaign_cancel,
    campaign_dispatch,
    campaign_pause,
    campaign_recipients_retry_unknown,
    campaign_resume,
    campaign_start,
    campaign_window,
    campaigns_tick,
    number_daily_cap,
    recipients_claim,
    recipients_mark_handed_over,
    recipients_refresh,
    recipients_release,
)
from campaigns.services.dispatch import _DepartureWindow
from conversations.models import Contact, Conversation, Message, MessageTemplate
from tests.conversations.factories import ContactFactory
from tests.sessions.factories import WhatsAppNumberFactory

R = Recipient.Status
TOKEN = "EAAG-campaign-test-token-000001"


def cloud_campaign(client, graph_api, *, recipients: int, rate: float = 200, **fields) -> Campaign:
    """A draft campaign on a Cloud API number (template "promo" with one placeholder) and its recipients."""
    number = WhatsAppNumberFactory(client=client, access_token=TOKEN, send_rate=rate)
    graph_api.tokens[number.phone_number_id] = TOKEN
    template = MessageTemplate.objects.create(client=client, name="promo", language="es", body="Hola {{1}}, 20% off")
    campaign = Campaign.objects.create(
        client=client,
        number=number,
        name="Promo",
        template=template,
        template_parameters=["{{nombre|amigo}}"],
        **fields,
    )
    add_recipients(campaign, recipients)
    return campaign


def add_recipients(campaign: Campaign, count: int, start: int = 0) -> list[Recipient]:
    rows = []
    for index in range(start, start + count):
        contact = ContactFactory(client=campaign.client, phone=f"+51955{index:06d}")
        rows.append(
            Recipient(
                campaign=campaign, contact=contact, phone=contact.phone, variables={"nombre": f"N{index}"}, line=index
            )
        )
    return Recipient.objects.bulk_create(rows)


def dispatch_in_background(campaign: Campaign) -> threading.Thread:
    def run() -> None:
        try:
            campaign_dispatch(campaign_id=campaign.pk, seconds=30)
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    return runner


def sent_phones(graph_api) -> list[str]:
    return [r.json["to"] for r in graph_api.requests if r.method == "POST" and r.path.endswith("/messages")]


def counts(campaign: Campaign) -> dict[str, int]:
    found: dict[str, int] = {}
    for status in campaign.recipients.values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_claiming_at_once_never_take_the_same_recipient(default_client, graph_api):
    # given 300 pending recipients and two workers claiming batches at the same moment, over and over
    campaign = cloud_campaign(default_client, graph_api, recipients=300)
    claimed: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def worker(slot: int) -> None:
        try:
            barrier.wait()
            while True:
                ids, _at = recipients_claim(campaign_id=campaign.pk, limit=17)
                if not ids:
                    return
                claimed[slot].extend(ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then between them they claimed every recipient exactly once, and both did part of the work
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(campaign.recipients.values_list("pk", flat=True))
    assert claimed[0] and claimed[1]
    assert counts(campaign) == {R.SENDING: 300}


@pytest.mark.django_db(transaction=True)
def test_a_running_campaign_sends_each_recipient_once_as_the_template(default_client, graph_api):
    # given a started campaign of 40 recipients, one without a name (the fallback fills it)
    campaign = cloud_campaign(default_client, graph_api, recipients=40)
    Recipient.objects.filter(pk=campaign.recipients.order_by("pk").first().pk).update(variables={})
    campaign_start(campaign=campaign)

    # when its dispatcher runs
    report = campaign_dispatch(campaign_id=campaign.pk, seconds=20)

    # then every recipient got exactly one message, the template filled per recipient, and the campaign completed
    phones = sent_phones(graph_api)
    assert len(phones) == 40 and len(set(phones)) == 40
    first = next(r.json for r in graph_api.requests if r.json and r.json["to"] == "51955000000")
    assert first["type"] == "template" and first["template"]["name"] == "promo"
    assert first["template"]["components"][0]["parameters"] == [{"type": "text", "text": "amigo"}]
    assert report.sent == 40 and report.stopped == "done"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.finished_at is not None
    assert counts(campaign) == {R.SENT: 40}
    # each message sits in a conversation nobody has to answer until the customer replies
    message = Recipient.objects.filter(campaign=campaign).select_related("message__conversation").first().message
    assert message.origin == Message.Origin.CAMPAIGN and message.provider_message_id.startswith("wamid.")
    assert message.conversation.status == Conversation.Status.RESOLVED


@pytest.mark.django_db(transaction=True)
def test_pause_stops_sending_and_resume_continues_without_repeats(default_client, graph_api):
    # given a campaign of 60 at 20 messages a second, running in a background dispatcher
    campaign = cloud_campaign(default_client, graph_api, recipients=60, rate=20)
    campaign_start(campaign=campaign)
    runner = dispatch_in_background(campaign)
    while len(sent_phones(graph_api)) < 10:
        time.sleep(0.02)

    # when staff pause it mid-run
    campaign_pause(campaign=campaign)
    runner.join(timeout=10)
    at_pause = len(sent_phones(graph_api))
    time.sleep(0.5)

    # then nothing more is sent while paused, and no recipient is left claimed
    assert len(sent_phones(graph_api)) == at_pause < 60
    assert R.SENDING not in counts(campaign)

    # when it is resumed, it finishes the rest: each phone exactly once
    campaign_resume(campaign=campaign)
    campaign_dispatch(campaign_id=campaign.pk, seconds=30)
    phones = sent_phones(graph_api)
    assert len(phones) == 60 and len(set(phones)) == 60
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_cancel_mid_run_skips_the_rest(default_client, graph_api):
    campaign = cloud_campaign(default_client, graph_api, recipients=50, rate=20)
    campaign_start(campaign=campaign)
    runner = dispatch_in_background(campaign)
    while len(sent_phones(graph_api)) < 5:
        time.sleep(0.02)

    campaign_cancel(campaign=campaign)
    runner.join(timeout=10)

    sent = len(sent_phones(graph_api))
    found = counts(campaign)
    assert found[R.SENT] == sent and found[R.SKIPPED] == 50 - sent
    assert set(campaign.recipients.filter(status=R.SKIPPED).values_list("error_code", flat=True)) == {"cancelled"}
    with pytest.raises(CampaignError):
        campaign_resume(campaign=campaign)


@pytest.mark.django_db(transaction=True)
def test_a_failure_spike_pauses_the_campaign_and_tells_staff(default_client, graph_api, settings):
    # given a campaign whose provider starts refusing with Meta's spam block after a few sends
    settings.CAMPAIGN_SPIKE_MIN = 5
    campaign = cloud_campaign(default_client, graph_api, recipients=40, rate=40)
    campaign_start(campaign=campaign)
    graph_api.fail_next(3, status=400, code=131048, message="Spam rate limit hit")

    # when it runs
    report = campaign_dispatch(campaign_id=campaign.pk, seconds=20)

    # then it paused itself with the reason, and most recipients were never tried
    campaign.refresh_from_db()
    assert report.stopped == "paused"
    assert campaign.status == Campaign.Status.PAUSED
    assert "131048" in campaign.status_reason
    # only the sends already under way (slots held for the next ~100 ms at this pace) went after the block
    assert counts(campaign).get(R.PENDING, 0) >= 25
    assert R.SENDING not in counts(campaign)


@pytest.mark.django_db(transaction=True)
def test_a_failure_ratio_above_the_limit_pauses(default_client, graph_api, settings):
    settings.CAMPAIGN_SPIKE_MIN = 10
    settings.CAMPAIGN_SPIKE_RATIO = 0.10
    campaign = cloud_campaign(default_client, graph_api, recipients=60)
    campaign_start(campaign=campaign)
    graph_api.fail_next(4, status=400, code=131026, message="Message undeliverable")

    campaign_dispatch(campaign_id=campaign.pk, seconds=20)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "failed" in campaign.status_reason
    assert counts(campaign)[R.FAILED] == 4


@pytest.mark.django_db(transaction=True)
def test_opted_out_contacts_are_skipped_at_send_time(default_client, graph_api):
    campaign = cloud_campaign(default_client, graph_api, recipients=5)
    opted = campaign.recipients.order_by("pk")[2]
    Contact.objects.filter(pk=opted.contact_id).update(opted_out_at=timezone.now())
    campaign_start(campaign=campaign)

    campaign_dispatch(campaign_id=campaign.pk, seconds=10)

    opted.refresh_from_db()
    assert opted.status == R.SKIPPED and opted.error_code == "opted_out"
    assert opted.contact.phone.lstrip("+") not in sent_phones(graph_api)
    assert len(sent_phones(graph_api)) == 4


@pytest.mark.django_db(transaction=True)
def test_daily_cap_and_warm_up_hold_the_rest_for_tomorrow(default_client, graph_api, settings):
    # given a number on day two of its warm-up (10 on day one, so 20 today) and a campaign of 30
    settings.GOVERNOR_WARMUP_FIRST_DAY = 10
    campaign = cloud_campaign(default_client, graph_api, recipients=30)
    number = campaign.number
    number.warmup_days = 5
    number.warmup_started_on = timezone.localdate(timezone.now(), number.zone) - timedelta(days=1)
    number.save()
    assert number_daily_cap(number=number, today=timezone.localdate(timezone.now(), number.zone)) == 20
    campaign_start(campaign=campaign)

    report = campaign_dispatch(campaign_id=campaign.pk, seconds=10)

    campaign.refresh_from_db()
    assert report.stopped == "daily_cap"
    assert len(sent_phones(graph_api)) == 20
    assert counts(campaign) == {R.SENT: 20, R.PENDING: 10}
    assert campaign.status == Campaign.Status.RUNNING and "Daily limit" in campaign.status_reason


@pytest.mark.django_db
def test_quiet_hours_and_days_in_the_numbers_time_zone(default_client, graph_api):
    campaign = cloud_campaign(
        default_client,
        graph_api,
        recipients=0,
        quiet_from=clock(21, 0),
        quiet_until=clock(8, 0),
        send_days=[1, 2, 3, 4, 5],
    )
    campaign.number.time_zone = "America/Mexico_City"
    lima = ZoneInfo("America/Mexico_City")

    def at(*args) -> datetime:
        return datetime(*args, tzinfo=lima)

    assert campaign_window(campaign, at(2026, 12, 2, 10, 0)).open  # Wednesday morning
    night = campaign_window(campaign, at(2026, 12, 2, 22, 30))
    assert not night.open and night.opens_at == at(2026, 12, 3, 8, 0)
    assert not campaign_window(campaign, at(2026, 12, 3, 7, 59)).open
    weekend = campaign_window(campaign, at(2026, 12, 5, 12, 0))  # Saturday
    assert not weekend.open and weekend.opens_at == at(2026, 12, 7, 8, 0)  # Monday after quiet hours


@pytest.mark.django_db(transaction=True)
def test_crash_after_the_claim_goes_back_to_pending_and_after_the_hand_over_becomes_unknown(
    default_client, graph_api, settings
):
    # given two recipients a dead dispatcher left claimed: one with nothing sent, one marked handed over to the
    # provider whose answer was never recorded
    settings.CAMPAIGN_CLAIM_STALE_AFTER = 0
    settings.OUTBOUND_SENDING_STALE_AFTER = 0
    campaign = cloud_campaign(default_client, graph_api, recipients=2)
    campaign_start(campaign=campaign)
    never_sent, handed_over = campaign.recipients.order_by("pk")
    _ids, claimed_at = recipients_claim(campaign_id=campaign.pk, limit=2)
    assert recipients_mark_handed_over(claims=[(handed_over.pk, claimed_at)], campaign_id=campaign.pk) == {
        handed_over.pk
    }

    # when beat's tick sweeps
    swept = campaigns_tick()

    # then the first is pending again, the second unknown: never re-sent by the next dispatcher
    assert swept["released"] == 1 and swept["unknown"] == 1
    handed_over.refresh_from_db()
    assert handed_over.status == R.UNKNOWN and handed_over.error_code == "interrupted"
    campaign_dispatch(campaign_id=campaign.pk, seconds=10)
    never_sent.refresh_from_db()
    assert never_sent.status == R.SENT
    assert sent_phones(graph_api) == [never_sent.phone.lstrip("+")]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED

    # when a person decides to retry the unknown one, it is sent again, once
    assert campaign_recipients_retry_unknown(campaign=campaign) == 1
    campaign_dispatch(campaign_id=campaign.pk, seconds=10)
    handed_over.refresh_from_db()
    assert handed_over.status == R.SENT
    assert sorted(sent_phones(graph_api)) == sorted(r.phone.lstrip("+") for r in (never_sent, handed_over))


@pytest.mark.django_db
def test_a_claim_taken_back_is_never_sent(default_client, graph_api):
    # given a recipient whose claim was given back (or whose campaign was paused) before its sender got to it
    campaign = cloud_campaign(default_client, graph_api, recipients=1)
    campaign_start(campaign=campaign)
    (recipient_id,), claimed_at = recipients_claim(campaign_id=campaign.pk, limit=1)
    recipients_release(ids=[recipient_id], claimed_at=claimed_at)

    # then the old claim cannot mark it handed over
    assert not recipients_mark_handed_over(claims=[(recipient_id, claimed_at)], campaign_id=campaign.pk)
    # nor a new claim of a campaign no longer running
    (recipient_id,), claimed_at = recipients_claim(campaign_id=campaign.pk, limit=1)
    campaign_pause(campaign=campaign)
    assert not recipients_mark_handed_over(claims=[(recipient_id, claimed_at)], campaign_id=campaign.pk)


@pytest.mark.django_db(transaction=True)
def test_recipients_follow_delivery_statuses_and_replies(default_client, graph_api):
    from conversations.inbound import InboundMessage, InboundSender, StatusUpdate
    from conversations.services import inbound_message_receive, message_status_apply

    campaign = cloud_campaign(default_client, graph_api, recipients=3)
    campaign_start(campaign=campaign)
    campaign_dispatch(campaign_id=campaign.pk, seconds=10)
    delivered, read, replied = campaign.recipients.select_related("message").order_by("pk")

    def status(recipient, name):
        message_status_apply(
            number=campaign.number,
            update=StatusUpdate(
                phone_number_id=campaign.number.phone_number_id,
                provider_message_id=recipient.message.provider_message_id,
                status=name,
                timestamp=timezone.now(),
                recipient_wa_id=None,
                recipient_bsuid=None,
                error_code="",
                error_reason="",
                raw={},
            ),
        )

    status(delivered, "delivered")
    status(read, "read")
    status(replied, "delivered")
    inbound_message_receive(
        number=campaign.number,
        message=InboundMessage(
            phone_number_id=campaign.number.phone_number_id,
            display_phone_number=campaign.number.display_number,
            provider_message_id="wamid.reply-1",
            sender=InboundSender(wa_id=replied.phone.lstrip("+"), name="", bsuid=None, username=None),
            timestamp=timezone.now(),
            kind="text",
            body="Me interesa",
            media=None,
            quoted_provider_id=None,
            error_code="",
            error_reason="",
            raw={},
        ),
    )

    changed = recipients_refresh(campaign_ids=[campaign.pk])

    assert changed == {campaign.pk}  # the reply was counted as it arrived; statuses when refreshed
    assert [r.status for r in campaign.recipients.order_by("pk")] == [R.DELIVERED, R.READ, R.REPLIED]
    # the reply reopened the campaign's conversation for the queue, with the campaign message in its history
    conversation = Conversation.objects.get(contact=replied.contact, number=campaign.number)
    assert conversation.status != Conversation.Status.RESOLVED
    assert list(conversation.messages.values_list("direction", flat=True)) == ["out", "in"]


def test_senders_woken_late_catch_up_without_a_burst_or_a_crowded_second():
    # given one process's departure window at 20 a second (catch-up gap 25 ms), and senders whose slots come every
    # 50 ms, the first six of them stalled until 0.3 s and the 26th stalled 0.2 s (the machine busy elsewhere)
    window = _DepartureWindow(rate=20, min_gap=0.025)
    started = time.monotonic()
    slots = [started + 0.05 * i for i in range(45)]
    ready = {i: started + 0.3 for i in range(6)} | {25: slots[25] + 0.2}
    departures = []
    for i, slot in enumerate(slots):
        delay = ready.get(i, slot) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        window.wait()
        departures.append(time.monotonic())

    # then no two left closer than the catch-up gap, no second held more than the rate (any 21 span a second),
    gaps = [b - a for a, b in zip(departures, departures[1:], strict=False)]
    assert min(gaps) >= 0.025
    assert all(departures[i] - departures[i - 20] >= 1.0 for i in range(20, len(departures)))
    # the senders after a stall caught up faster than the slots came, and the stalls did not add up: the last
    # left at most the longest stall (0.3 s) late, not 0.5 s as it would if every late sender pushed the rest
    assert sum(1 for gap in gaps if gap < 0.04) >= 5
    assert departures[-1] - slots[-1] < 0.3 + 0.05
