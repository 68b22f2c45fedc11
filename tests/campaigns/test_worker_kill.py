"""Fault test with real processes: a 2,000-recipient campaign on a Cloud API number sent by a real campaigns
worker (celery, prefork) that is SIGKILLed several times mid-run, against the fake Graph API on 127.0.0.1.

Every recipient must end in exactly one terminal state or `unknown`, and the fake server must never have seen a
phone twice: at most once, whatever moment the kill lands on. Beat's role (the campaigns tick and the outbound
sweeper) is played by this test, so the timing is in its hands."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_start, campaigns_tick
from conversations.models import Contact, Message, MessageTemplate
from conversations.services import outbound_messages_sweep
from tests.conftest import project_env, start_celery_worker, stop_processes
from tests.conversations.factories import ContactFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = 2000
KILLS = 4
TOKEN = "EAAG-kill-test-token-000000001"
R = Recipient.Status
FINAL = {R.SENT, R.DELIVERED, R.READ, R.REPLIED, R.FAILED, R.SKIPPED, R.UNKNOWN}


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return start_celery_worker(env, queues="campaigns", name="kill")


def sent_phones(graph_api) -> list[str]:
    return [r.json["to"] for r in graph_api.requests if r.method == "POST" and r.json and r.status != 0]


def test_sigkilled_campaign_workers_never_send_a_recipient_twice(default_client, graph_api, settings):
    # given a 2,000-recipient campaign on a Cloud API number paced at 250 messages a second
    settings.OUTBOUND_SENDING_STALE_AFTER = 2  # the sweeper played by this test marks interrupted sends unknown
    number = WhatsAppNumberFactory(client=default_client, access_token=TOKEN, send_rate=250)
    graph_api.tokens[number.phone_number_id] = TOKEN
    graph_api.delay = 0.004  # the provider takes a moment: kills land inside calls too
    template = MessageTemplate.objects.create(client=default_client, name="promo", language="es", body="Hola {{1}}")
    campaign = Campaign.objects.create(
        client=default_client, number=number, name="Kill test", template=template, template_parameters=["{{n}}"]
    )
    Contact.objects.bulk_create(
        ContactFactory.build(client=default_client, phone=f"+51966{i:06d}") for i in range(RECIPIENTS)
    )
    Recipient.objects.bulk_create(
        Recipient(campaign=campaign, contact=c, phone=c.phone, variables={"n": str(i)}, line=i + 2)
        for i, c in enumerate(Contact.objects.filter(phone__startswith="+51966").order_by("phone"))
    )
    env = project_env(
        APP_COMPONENT="worker",
        TEST_GRAPH_API_URL=graph_api.url,
        CAMPAIGN_DISPATCH_LEASE_SECONDS="1.5",
        CAMPAIGN_DISPATCH_SECONDS="30",
        LOG_LEVEL="WARNING",
    )
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_worker(env))
        campaign_start(campaign=campaign)

        # when the worker is killed (SIGKILL, whole process group) several times while it sends
        kills = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            campaigns_tick()
            outbound_messages_sweep()
            sent = len(sent_phones(graph_api))
            if kills < KILLS and sent >= (kills + 1) * RECIPIENTS // (KILLS + 2):
                os.killpg(procs[-1].pid, signal.SIGKILL)
                procs[-1].wait(timeout=10)
                kills += 1
                procs.append(start_worker(env))
            campaign.refresh_from_db()
            if campaign.status == Campaign.Status.COMPLETED:
                break
            time.sleep(0.3)
    finally:
        stop_processes(procs, timeout=20)

    # then the campaign completed, every recipient is in exactly one final state (or unknown), and no phone
    # reached the provider twice
    assert kills == KILLS
    campaign.refresh_from_db()
    statuses = Counter(campaign.recipients.values_list("status", flat=True))
    assert campaign.status == Campaign.Status.COMPLETED, statuses
    assert set(statuses) <= FINAL and sum(statuses.values()) == RECIPIENTS
    phones = Counter(sent_phones(graph_api))
    assert max(phones.values()) == 1
    # every recipient marked sent was seen exactly once by the provider; an unknown one at most once
    sent = set(campaign.recipients.filter(status=R.SENT).values_list("phone", flat=True))
    assert {p.lstrip("+") for p in sent} <= set(phones)
    assert len(phones) <= statuses[R.SENT] + statuses[R.UNKNOWN]
    # a kill leaves unknown only its last moments' sends: those marked handed over and not yet answered or
    # recorded (answers are written in batches), about rate x 0.3 s = 75 here; never a send of another moment
    assert statuses[R.UNKNOWN] <= KILLS * 100
    # every sent recipient has its message, and no message was written twice
    assert not campaign.recipients.filter(status=R.SENT, message__isnull=True).exists()
    linked = campaign.recipients.filter(message__isnull=False).count()
    assert Message.objects.filter(origin=Message.Origin.CAMPAIGN).count() == linked
