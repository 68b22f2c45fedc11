#!/usr/bin/env python
"""Fault scenarios (`make chaos`): the product under load while its processes are killed and its servers
restarted; each scenario ends with nothing lost and nothing duplicated, checked by counting rows and what the
fake providers received. Prints a table (scenario, check, target, measured, result); exit status 1 on a failure.

    .venv/bin/python bench/chaos.py [--smoke] [--only NAME ...]

Everything runs on servers of its own, so nothing here touches the machine's: a PostgreSQL cluster made with
initdb and a redis-server (append-only, as compose.yaml runs it), both on free ports in a temporary directory,
then the product's processes as the Procfile runs them (daphne; a Celery worker for `default,campaigns`; the
sessions worker; beat) and a fake Graph API (bench/_graph_timer.py) that notes every message it is given.

The load of every kill and restart scenario, at once:
- signed Cloud API webhooks (2 customer messages each) POSTed at a steady rate by a sender that retries, like
  Meta, every 0.5 s until it gets a 200;
- a campaign on a Cloud API number (its sends reach the fake Graph API);
- customers writing to sandbox numbers (the sandbox network's Redis streams) and agents' replies to them, sent
  by the sessions worker holding each number's connection.

Checks: every webhook body acked, every message in it stored once, no event pending or failed; the campaign
completed with every recipient in one final state (or `unknown`), the provider never given a phone twice, and
every recipient marked sent seen by it; every sandbox customer message stored once; every reply at most once on
the customer's phone and none left in flight; and, over the whole run, never two connections online for one
sandbox number at once (the sandbox network's presence log, with the time of each process's death).

Recovery is shortened, not skipped: the sweeps beat runs (requeue webhook events, outbound sweep, campaigns
tick) every few seconds instead of every minute, the requeue and stale-send thresholds are seconds, and the
sessions lease is 6 s (3 s in the smoke run) instead of 30 s; `--smoke` also runs every scenario small (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _chaos_infra import PrivatePostgres, PrivateRedis, Processes, WebhookSender, _wait  # noqa: E402
from _common import ROOT, Figure, print_rows, result_of, setup_django  # noqa: E402
from _stack import free_port, signed  # noqa: E402

TOKEN = "EAAG-chaos-token-0000000000001"
CLOUD_PHONE_NUMBER_ID = "106540399999001"
SANDBOX_NUMBERS = 4
SANDBOX_CUSTOMERS = 3  # per sandbox number, each with a conversation the agents reply in


@dataclass(frozen=True)
class Sizes:
    seconds: float  # of load
    webhook_rate: float  # bodies per second (2 messages each)
    recipients: int
    campaign_rate: float
    sandbox_in: int
    sandbox_out: int
    hostile_webhooks: int
    hostile_api: int
    two_workers_rounds: int
    lease: float
    heartbeat: float
    sweep_every: int  # seconds between the beat sweeps


FULL = Sizes(20, 30, 400, 40, 60, 24, 6000, 4000, 8, 6, 2, 3)
SMOKE = Sizes(6, 10, 60, 20, 12, 8, 300, 200, 3, 3, 1, 2)


# --- the world the load runs in ---------------------------------------------------------------------------------


@dataclass
class World:
    client: object
    cloud: object
    template: object
    sandbox: list  # WhatsAppNumber
    conversations: list  # sandbox conversations the agents reply in
    arrivals: Path  # the fake Graph API's notes


def prepare_world(arrivals: Path) -> World:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from conversations.models import MessageTemplate
    from crm.models import Client, ClientMembership
    from queues.models import AgentAvailability, Queue, QueueMembership
    from sessions.models import NumberSession, SandboxAccount, WhatsAppNumber
    from sessions.services import number_session_ensure

    with transaction.atomic():
        client = Client.objects.create(slug="chaos", name="Chaos")
        queue = Queue.objects.create(client=client, name="Chaos queue")
        agent = get_user_model().objects.create(username="chaos-agent")
        ClientMembership.objects.create(user=agent, client=client)
        QueueMembership.objects.create(queue=queue, user=agent, capacity=30_000)
        AgentAvailability.objects.update_or_create(user=agent, defaults={"status": "online"})
        cloud = WhatsAppNumber.objects.create(
            client=client,
            alias="Chaos cloud",
            display_number="+51 999 900 001",
            phone_number_id=CLOUD_PHONE_NUMBER_ID,
            queue=queue,
            access_token=TOKEN,
            verify_token="",
            send_rate=0,
        )
        number_session_ensure(number=cloud)
        sandbox = []
        for n in range(SANDBOX_NUMBERS):
            number = WhatsAppNumber.objects.create(
                client=client,
                alias=f"Chaos sandbox {n}",
                display_number=f"+51 999 910 {n:03d}",
                phone_number_id=f"chaos-sandbox-{n}",
                engine="sandbox",
                queue=queue,
                access_token="",
                verify_token="",
            )
            jid = f"51999910{n:03d}.0:1@s.whatsapp.net"
            NumberSession.objects.create(number=number, device_jid=jid, keep_connected=True)
            SandboxAccount.objects.create(number=number, device_jid=jid)
            sandbox.append(number)
        template = MessageTemplate.objects.create(client=client, name="chaos", language="es", body="Hola {{1}}")
    return World(client, cloud, template, sandbox, [], arrivals)


def shorten_sweeps(every: int) -> None:
    """The beat sweeps that recover from faults run every `every` seconds instead of every minute."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    tasks = [
        "conversations.tasks.webhook_events_requeue_task",
        "conversations.tasks.outbound_messages_sweep_task",
        "conversations.tasks.unmatched_statuses_sweep_task",
        "campaigns.tasks.campaigns_tick_task",
    ]
    changed = PeriodicTask.objects.filter(task__in=tasks).update(interval=interval, crontab=None)
    if changed < 3:
        raise RuntimeError(f"expected the sweeps' periodic tasks in the database, found {changed} of {tasks}")


def db_retrying(fn: Callable[[], object], *, timeout: float = 60) -> object:
    """`fn()`, again on a fresh connection while PostgreSQL is away (this process's own connection breaks too)."""
    from django.db import DatabaseError, connection

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except DatabaseError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def sandbox_connected(world: World) -> bool:
    from sessions.models import NumberSession

    return NumberSession.objects.filter(number__in=world.sandbox, state="connected").count() == len(world.sandbox)


def open_sandbox_conversations(world: World) -> None:
    """A conversation with a few customers on every sandbox number, for the agents' replies."""
    from conversations.models import Conversation
    from sessions.engines.sandbox import sandbox_customer_send

    for number in world.sandbox:
        for c in range(SANDBOX_CUSTOMERS):
            sandbox_customer_send(number=number, phone=customer_of(number, c), body="Hola, una consulta", name="C")
    expected = len(world.sandbox) * SANDBOX_CUSTOMERS
    conversations = Conversation.objects.filter(number__in=world.sandbox)
    _wait(lambda: conversations.count() == expected, timeout=60, what="the sandbox customers' conversations")
    world.conversations = list(conversations.select_related("contact", "number"))


def customer_of(number, c: int) -> str:
    return f"+51 98{number.pk % 100:02d}{c:05d}"


# --- one scenario's load ----------------------------------------------------------------------------------------


@dataclass
class Load:
    tag: int
    sizes: Sizes
    sender: WebhookSender
    wamids: list[str]
    campaign: object | None
    sandbox_in: list[str] = field(default_factory=list)  # provider ids of what customers wrote
    sandbox_out: list[int] = field(default_factory=list)  # ids of the replies
    sandbox_thread: threading.Thread | None = None
    started: float = field(default_factory=time.time)


def webhook_bodies(tag: int, count: int) -> tuple[list[tuple[bytes, str]], list[str]]:
    from tests.conversations import meta_payloads as meta

    requests, wamids = [], []
    for n in range(count):
        messages, contacts = [], []
        for k in range(2):
            wamid = f"wamid.CHAOS{tag:02d}{n:06d}{k}"
            sender = f"5197{(n * 2 + k) % 500:07d}"
            messages.append(meta.text_message(wamid, sender, f"Consulta {tag}-{n}-{k}"))
            contacts.append(meta.contact(sender, f"Cliente {sender[-3:]}"))
            wamids.append(wamid)
        requests.append(
            signed(meta.webhook(meta.messages_change(CLOUD_PHONE_NUMBER_ID, messages=messages, contacts=contacts)))
        )
    return requests, wamids


def start_campaign(world: World, tag: int, sizes: Sizes):
    from django.db import transaction

    from campaigns.models import Campaign, Recipient
    from campaigns.services import campaign_start
    from conversations.identity import phone_identity
    from conversations.models import Contact
    from sessions.models import WhatsAppNumber

    WhatsAppNumber.objects.filter(pk=world.cloud.pk).update(send_rate=sizes.campaign_rate)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            client=world.client,
            number=world.cloud,
            name=f"Chaos {tag}",
            template=world.template,
            template_parameters=["{{n}}"],
        )
        contacts = []
        for n in range(sizes.recipients):
            identity = phone_identity(f"+51 9{tag:02d}{n:06d}")
            contacts.append(
                Contact(
                    client=world.client,
                    phone=identity.e164,
                    identity_key=identity.key,
                    wa_id=identity.wa_id,
                    name=f"Destinatario {n}",
                )
            )
        contacts = Contact.objects.bulk_create(contacts)
        Recipient.objects.bulk_create(
            Recipient(campaign=campaign, contact=c, phone=c.phone, variables={"n": str(i)}, line=i + 2)
            for i, c in enumerate(contacts)
        )
    return campaign_start(campaign=campaign)


def sandbox_traffic(world: World, load: Load) -> None:
    """Agents' replies now (they wait their turn in the sessions worker), customers writing throughout the load;
    a customer whose network is away (Redis restarting) tries again."""
    from conversations.services import message_send
    from sessions.engines.sandbox import sandbox_customer_send

    for i in range(load.sizes.sandbox_out):
        conversation = world.conversations[i % len(world.conversations)]
        message = message_send(conversation=conversation, text=f"Respuesta [chaos {load.tag} out {i}]")
        load.sandbox_out.append(message.pk)

    def customers() -> None:
        interval = load.sizes.seconds / max(1, load.sizes.sandbox_in)
        for i in range(load.sizes.sandbox_in):
            number = world.sandbox[i % len(world.sandbox)]
            phone = customer_of(number, i % SANDBOX_CUSTOMERS)
            deadline = time.monotonic() + 60
            while True:
                try:
                    load.sandbox_in.append(
                        sandbox_customer_send(number=number, phone=phone, body=f"Mensaje [chaos {load.tag} in {i}]")
                    )
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            time.sleep(interval)

    load.sandbox_thread = threading.Thread(target=customers, daemon=True)
    load.sandbox_thread.start()


def start_load(world: World, procs: Processes, tag: int, sizes: Sizes, *, campaign: bool = True) -> Load:
    requests, wamids = webhook_bodies(tag, int(sizes.seconds * sizes.webhook_rate))
    sender = WebhookSender(procs.url + "/webhooks/whatsapp/", requests, rate=sizes.webhook_rate)
    load = Load(tag, sizes, sender, wamids, start_campaign(world, tag, sizes) if campaign else None)
    sandbox_traffic(world, load)
    sender.start()
    return load


def settled(world: World, load: Load) -> str:
    """What the load still waits for ("" when everything has come to rest)."""
    from campaigns.models import Campaign, Recipient
    from conversations.models import Message, WebhookEvent

    if load.sender.is_alive():
        return f"webhook sender ({load.sender.report.acked}/{load.sender.report.bodies} acked)"
    if load.sandbox_thread and load.sandbox_thread.is_alive():
        return "customers still writing"
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).count()
    if pending:
        return f"{pending} webhook events pending"
    if load.campaign is not None:
        campaign = Campaign.objects.get(pk=load.campaign.pk)
        if campaign.status != Campaign.Status.COMPLETED:
            left = campaign.recipients.filter(status__in=[Recipient.Status.PENDING, Recipient.Status.SENDING]).count()
            return f"campaign {campaign.status} ({left} recipients pending or sending)"
    stored = Message.objects.filter(provider_message_id__in=load.sandbox_in).count()
    if stored < len(load.sandbox_in):
        return f"sandbox customer messages {stored}/{len(load.sandbox_in)} stored"
    in_flight = Message.objects.filter(
        pk__in=load.sandbox_out, status__in=[Message.Status.PENDING, Message.Status.SENDING]
    ).count()
    if in_flight:
        return f"{in_flight} sandbox replies pending or sending"
    return ""


def wait_settled(world: World, load: Load, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        waiting = db_retrying(lambda: settled(world, load))
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(0.5)


def provider_arrivals(world: World) -> list[tuple[str, str]]:
    time.sleep(0.5)  # the fake writes down what it received every 0.2 s
    if not world.arrivals.exists():
        return []
    return [tuple(line.split(",")[:2]) for line in world.arrivals.read_text().splitlines() if line]


def load_checks(name: str, world: World, load: Load, waiting: str) -> list[Figure]:
    """Nothing lost, nothing twice: webhooks, the campaign and the sandbox traffic of one scenario."""
    from campaigns.models import Recipient
    from conversations.models import Message, WebhookEvent
    from sessions.engines.sandbox import phone_key
    from sessions.leases import redis_connection

    figures = []
    report = load.sender.report
    stored = Message.objects.filter(provider_message_id__in=load.wamids)
    distinct = stored.values("provider_message_id").distinct().count()
    count = stored.count()
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).count()
    failed = WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count()
    answers = ", ".join(f"{'no answer' if code == 0 else code} x{n}" for code, n in sorted(report.answers.items()))
    figures.append(
        Figure(
            f"{name}: webhooks",
            "all acked; every message stored once",
            f"{report.acked}/{report.bodies} acked ({answers}); {count}/{len(load.wamids)} messages stored, "
            f"{count - distinct} twice; {pending} events pending, {failed} failed",
            report.acked == report.bodies and count == distinct == len(load.wamids) and pending == 0 and failed == 0,
        )
    )

    if load.campaign is not None:
        R = Recipient.Status
        recipients = Recipient.objects.filter(campaign=load.campaign)
        statuses = Counter(recipients.values_list("status", flat=True))
        phones = {p.lstrip("+") for p in recipients.values_list("phone", flat=True)}
        seen = Counter(to for pid, to in provider_arrivals(world) if pid == CLOUD_PHONE_NUMBER_ID and to in phones)
        sent = {p.lstrip("+") for p in recipients.filter(status=R.SENT).values_list("phone", flat=True)}
        final = {R.SENT, R.DELIVERED, R.READ, R.REPLIED, R.FAILED, R.SKIPPED, R.UNKNOWN}
        twice = sum(1 for n in seen.values() if n > 1)
        ok = (
            set(statuses) <= final
            and twice == 0
            and sent <= set(seen)
            and len(seen) <= statuses[R.SENT] + statuses[R.UNKNOWN]
        )
        shown = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
        figures.append(
            Figure(
                f"{name}: campaign",
                "provider given no phone twice; all final",
                f"{sum(statuses.values())} recipients: {shown}; provider saw {len(seen)} phones, {twice} twice",
                ok,
            )
        )

    stored_in = Message.objects.filter(provider_message_id__in=load.sandbox_in)
    in_count, in_distinct = stored_in.count(), stored_in.values("provider_message_id").distinct().count()
    replies = Message.objects.filter(pk__in=load.sandbox_out).select_related("conversation__contact", "number")
    r = redis_connection()
    on_phones: Counter = Counter()
    for key in {phone_key(m.number_id, m.conversation.contact.phone) for m in replies}:
        for _, item in r.xrange(key):
            body = json.loads(item[b"item"])["body"]
            if f"[chaos {load.tag} out " in body:
                on_phones[body] += 1
    reply_statuses = Counter(m.status for m in replies)
    delivered = {m.body for m in replies if m.status in ("accepted", "sent", "delivered", "read")}
    twice = sum(1 for n in on_phones.values() if n > 1)
    ok = (
        in_count == in_distinct == len(load.sandbox_in)
        and twice == 0
        and delivered <= set(on_phones)
        and not reply_statuses.keys() & {"pending", "sending"}
    )
    shown = ", ".join(f"{s} {n}" for s, n in sorted(reply_statuses.items()))
    figures.append(
        Figure(
            f"{name}: sandbox",
            "customer messages stored once; replies at most once",
            f"{in_count}/{len(load.sandbox_in)} customer messages stored ({in_count - in_distinct} twice); "
            f"{len(load.sandbox_out)} replies: {shown}; {len(on_phones)} on the phones, {twice} twice",
            ok,
        )
    )
    if waiting:
        figures.append(
            Figure(f"{name}: came to rest", "within the time allowed", f"still waiting for {waiting}", False)
        )
    return figures


# --- ownership ----------------------------------------------------------------------------------------------------


def two_owner_overlaps(deaths: dict[int, float], since: float = 0.0) -> tuple[int, int, list[str]]:
    """From the sandbox network's presence log: how many connections came online, and every moment two processes
    had one number online at once.

    A connection ends with its "close", its process's death, or the next "open" of the same number in the same
    process (the supervisor holds one connection per number; a "close" written while Redis was away is missing
    from the log, which can only make an interval longer, never hide an overlap)."""
    from sessions.engines.sandbox import sandbox_presence_log

    intervals: dict[str, list] = {}
    last_open: dict[tuple[int, int], str] = {}  # (number, pid) -> its latest connection
    for entry in sandbox_presence_log():
        key = (entry["number"], entry["pid"])
        if entry["event"] == "open":
            previous = last_open.get(key)
            if previous and intervals[previous][2] is None:
                intervals[previous][2] = entry["at"]
            intervals[entry["connection"]] = [entry["number"], entry["at"], None, entry["pid"]]
            last_open[key] = entry["connection"]
        elif entry["connection"] in intervals and intervals[entry["connection"]][2] is None:
            intervals[entry["connection"]][2] = entry["at"]
    now = time.time()
    by_number: dict[int, list[tuple[float, float, int]]] = {}
    opened = 0
    for number, start, end, pid in intervals.values():
        end = end if end is not None else deaths.get(pid, now)
        if end < since:
            continue
        opened += start >= since
        by_number.setdefault(number, []).append((start, end, pid))
    overlaps = []
    for number, spans in by_number.items():
        spans.sort()
        for i, (_start, end, pid) in enumerate(spans):
            for later_start, _, later_pid in spans[i + 1 :]:
                if later_start >= end:
                    break
                if later_pid != pid:
                    overlaps.append(
                        f"number {number}: pid {pid} until {end:.3f}, pid {later_pid} from {later_start:.3f}"
                    )
    return opened, len(overlaps), overlaps[:3]


def owners_figure(name: str, deaths: dict[int, float], since: float = 0.0) -> Figure:
    opened, overlapping, examples = two_owner_overlaps(deaths, since)
    shown = f" ({'; '.join(examples)})" if examples else ""
    measured = f"{opened} connections came online; {overlapping} overlaps{shown}"
    return Figure(name, "never 2", measured, overlapping == 0 and opened > 0)


# --- the scenarios ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    world: World
    procs: Processes
    pg: PrivatePostgres
    redis: PrivateRedis
    sizes: Sizes
    tag: int = 0

    def next_tag(self) -> int:
        self.tag += 1
        return self.tag


def under_load(run: Run, name: str, fault: Callable[[Load], str]) -> list[Figure]:
    """The load, the fault at 40% of it, then rest and the checks."""
    tag = run.next_tag()
    load = start_load(run.world, run.procs, tag, run.sizes)
    time.sleep(run.sizes.seconds * 0.4)
    what = fault(load)
    load.sender.join(timeout=run.sizes.seconds + 240)
    waiting = wait_settled(run.world, load, timeout=180 if run.sizes is FULL else 90)
    return [Figure(f"{name}: fault", "-", what, None), *load_checks(name, run.world, load, waiting)]


def kill_and_restart(run: Run, process: str, *, down: float = 1.0) -> Callable[[Load], str]:
    def fault(load: Load) -> str:
        run.procs.kill(process)
        time.sleep(down)
        run.procs.start(process)
        if process == "web":
            run.procs.wait_web()
        return (
            f"{process} SIGKILLed at {time.time() - load.started:.1f} s into the load, started again {down:g} s later"
        )

    return fault


def restart_redis(run: Run) -> Callable[[Load], str]:
    def fault(load: Load) -> str:
        at = time.time() - load.started
        run.redis.stop()
        time.sleep(3)
        run.redis.start()
        return f"Redis stopped (SIGTERM) at {at:.1f} s into the load, started again 3 s later"

    return fault


POSTGRES_OUTAGE = 15  # seconds: longer than the web process's wait for a pooled connection (10 s)


def restart_postgres(run: Run, outage: dict) -> Callable[[Load], str]:
    def fault(load: Load) -> str:
        at = time.time() - load.started
        run.pg.stop("fast")
        down = time.time()
        time.sleep(POSTGRES_OUTAGE)
        up = time.time()
        run.pg.start()
        outage.update(Counter(status for when, status in load.sender.report.log if down < when < up))
        return (
            f"PostgreSQL stopped (fast) at {at:.1f} s into the load, started again {POSTGRES_OUTAGE} s later "
            f"(the web process waits up to 10 s for a database connection before answering 503)"
        )

    return fault


def scenario_postgres(run: Run) -> list[Figure]:
    outage: Counter = Counter()
    figures = under_load(run, "PostgreSQL restart", restart_postgres(run, outage))
    five = sum(n for code, n in outage.items() if code >= 500)
    shown = ", ".join(f"{'no answer' if c == 0 else c} x{n}" for c, n in sorted(outage.items())) or "none"
    figures.insert(
        1,
        Figure(
            "PostgreSQL restart: answers given while it was down",
            "5xx only (never 200)",
            shown,
            five > 0 and outage[200] == 0,
        ),
    )
    return figures


def scenario_duplicates(run: Run) -> list[Figure]:
    """The same webhook 3 times at once, and statuses in reverse order (read, delivered, sent)."""
    from django.utils import timezone

    from conversations.models import Conversation, Message, WebhookEvent
    from tests.conversations import meta_payloads as meta

    tag = run.next_tag()
    count = 50 if run.sizes is SMOKE else 300
    requests, wamids = webhook_bodies(tag, count)
    # outbound messages the statuses name, accepted by the provider
    conversation = db_retrying(lambda: Conversation.objects.filter(number=run.world.cloud).first())
    outbound = [f"wamid.CHAOSOUT{tag:02d}{n:06d}" for n in range(count)]
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            number=run.world.cloud,
            direction=Message.Direction.OUTBOUND,
            origin=Message.Origin.AGENT,
            body=f"Salida {n}",
            provider_message_id=wamid,
            status=Message.Status.ACCEPTED,
            status_at=timezone.now(),
        )
        for n, wamid in enumerate(outbound)
    )
    customer = conversation.contact.wa_id or conversation.contact.phone.lstrip("+")
    statuses = [
        signed(meta.webhook(meta.statuses_change(CLOUD_PHONE_NUMBER_ID, statuses=[meta.status(wamid, s, customer)])))
        for wamid in outbound
        for s in ("read", "delivered", "sent")
    ]
    tripled = [request for request in requests for _ in range(3)]
    sender = WebhookSender(run.procs.url + "/webhooks/whatsapp/", tripled + statuses, rate=10_000)
    sender.start()
    sender.join(timeout=300)
    waiting = wait_settled(run.world, Load(tag, run.sizes, sender, wamids, None), timeout=120)
    stored = Message.objects.filter(provider_message_id__in=wamids)
    n, distinct = stored.count(), stored.values("provider_message_id").distinct().count()
    final = Counter(Message.objects.filter(provider_message_id__in=outbound).values_list("status", flat=True))
    events = WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).count()
    report = sender.report
    return [
        Figure(
            "duplicates: each body 3 times at once",
            "each message stored once",
            f"{len(tripled)} POSTs of {count} bodies: {report.answers[200]} answered 200; {n}/{len(wamids)} messages "
            f"stored, {n - distinct} twice; {events} failed events"
            + (f"; still waiting for {waiting}" if waiting else ""),
            n == distinct == len(wamids) and not waiting and events == 0,
        ),
        Figure(
            "duplicates: statuses in reverse order (read, delivered, sent)",
            f"{count} read",
            ", ".join(f"{s} {k}" for s, k in sorted(final.items())),
            final == Counter({"read": count}),
        ),
    ]


def scenario_two_sessions_workers(run: Run) -> list[Figure]:
    """Two sessions workers on the same numbers, stopped and started again and again, under sandbox traffic."""
    since = time.time()
    tag = run.next_tag()
    load = start_load(run.world, run.procs, tag, run.sizes, campaign=False)
    run.procs.start("sessions2")
    rng = random.Random(tag)
    actions = []
    for _ in range(run.sizes.two_workers_rounds):
        time.sleep(rng.uniform(1, 3))
        name = rng.choice(["sessions", "sessions2"])
        if rng.random() < 0.5:
            run.procs.kill(name)
            actions.append(f"SIGKILL {name}")
        else:
            run.procs.stop(name)
            actions.append(f"SIGTERM {name}")
        time.sleep(rng.uniform(0, 1.5))
        run.procs.start(name)
    load.sender.join(timeout=300)
    waiting = wait_settled(run.world, load, timeout=120)
    run.procs.stop("sessions2")
    return [
        Figure("two sessions workers: restarts", "-", f"{len(actions)}: " + ", ".join(Counter(actions).keys()), None),
        owners_figure("two sessions workers: owners of a number at once", run.procs.deaths, since),
        *load_checks("two sessions workers", run.world, load, waiting),
    ]


def scenario_hostile(run: Run) -> list[Figure]:
    from _chaos_hostile import hostile_api, hostile_webhooks

    return [
        *hostile_webhooks(run.procs.url, count=run.sizes.hostile_webhooks),
        *hostile_api(run.procs.url, count=run.sizes.hostile_api),
    ]


SCENARIOS: dict[str, Callable[[Run], list[Figure]]] = {
    "kill-web": lambda run: under_load(run, "SIGKILL web", kill_and_restart(run, "web")),
    "kill-worker": lambda run: under_load(run, "SIGKILL worker", kill_and_restart(run, "worker")),
    "kill-sessions": lambda run: under_load(run, "SIGKILL sessions worker", kill_and_restart(run, "sessions")),
    "kill-beat": lambda run: under_load(run, "SIGKILL beat", kill_and_restart(run, "beat", down=3)),
    "restart-redis": lambda run: under_load(run, "Redis restart", restart_redis(run)),
    "restart-postgres": scenario_postgres,
    "duplicates": scenario_duplicates,
    "two-sessions-workers": scenario_two_sessions_workers,
    "hostile": scenario_hostile,
}


# --- the run ----------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario, small (CI)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="NAME", help=", ".join(SCENARIOS))
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and the processes' logs")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    chosen = args.only or list(SCENARIOS)

    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    pg, redis_server = PrivatePostgres(root), PrivateRedis(root)
    timer: subprocess.Popen | None = None
    procs: Processes | None = None
    rows: list[tuple[str, Figure]] = []
    started = time.monotonic()
    try:
        pg.init()
        redis_server.start()
        overrides = {
            "WEBHOOK_REQUEUE_AFTER": "3",
            "OUTBOUND_SENDING_STALE_AFTER": "5",
            "OUTBOUND_PENDING_REQUEUE_AFTER": "5",
            "CAMPAIGN_CLAIM_STALE_AFTER": "5",
            "CAMPAIGN_DISPATCH_LEASE_SECONDS": "3",
            "CAMPAIGN_DISPATCH_SECONDS": "20",
            "SESSIONS_LEASE_SECONDS": str(sizes.lease),
            "SESSIONS_HEARTBEAT_SECONDS": str(sizes.heartbeat),
            "SESSIONS_BACKOFF_MAX": "2",
            "GOVERNOR_WEB_INTERVAL": "0.3",
            "GOVERNOR_WEB_JITTER": "0",
            "HEALTH_CHECK_TIMEOUT": "1",
        }
        os.environ.update(overrides, BENCH_DATABASE_URL=pg.url, BENCH_REDIS_URL=redis_server.url)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"  # as the stack's processes (not tests')
        os.environ.update(WHATSAPP_APP_SECRET="bench-app-secret", DEBUG="false")
        print(f"chaos: PostgreSQL on :{pg.port}, Redis on :{redis_server.port}, logs in {root}", flush=True)
        setup_django()
        shorten_sweeps(sizes.sweep_every)

        graph_port = free_port()
        arrivals = root / "graph-arrivals.csv"
        timer = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "_graph_timer.py"),
                "--port",
                str(graph_port),
                "--token",
                TOKEN,
                "--out",
                str(arrivals),
            ],
            start_new_session=True,
        )
        world = prepare_world(arrivals)
        env = {
            **overrides,
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis_server.url,
            "WHATSAPP_GRAPH_API_URL": f"http://127.0.0.1:{graph_port}",
        }
        procs = Processes(root, env)
        for name in ("web", "worker", "sessions", "beat"):
            procs.start(name)
        procs.wait_web()
        _wait(lambda: sandbox_connected(world), timeout=90, what="the sandbox numbers to connect")
        open_sandbox_conversations(world)
        run = Run(world, procs, pg, redis_server, sizes)
        print(f"chaos: the stack is up in {time.monotonic() - started:.0f} s", flush=True)

        for name in chosen:
            began = time.monotonic()
            print(f"chaos: {name} …", flush=True)
            try:
                figures = SCENARIOS[name](run)
            except Exception as exc:  # a scenario that cannot finish is a failure of that scenario, not of the run
                figures = [Figure(f"{name}: ran to the end", "yes", f"{type(exc).__name__}: {exc}"[:300], False)]
            for figure in figures:
                print(f"  {figure.name}: {figure.measured} [{result_of(figure)}]", flush=True)
            rows += [(name, f) for f in figures]
            print(f"chaos: {name} done in {time.monotonic() - began:.0f} s", flush=True)
            for process in ("web", "worker", "sessions", "beat"):  # a scenario leaves the stack as it found it
                if process not in procs.running or procs.running[process].popen.poll() is not None:
                    procs.running.pop(process, None)
                    procs.start(process)

        rows.append(("whole run", owners_figure("owners of a sandbox number at once (presence log)", procs.deaths)))
        tracebacks = procs.errors()
        rows.append(
            (
                "whole run",
                Figure(
                    "tracebacks in the processes' logs",
                    "-",
                    f"{len(tracebacks)}" + (f" (first: {tracebacks[0][:150]})" if tracebacks else ""),
                    None,
                ),
            )
        )
    finally:
        if procs is not None:
            procs.stop_all()
        if timer is not None:
            timer.terminate()
            timer.wait(timeout=10)
        if not args.keep:
            from django.conf import settings

            if settings.configured:
                from django.db import connection

                connection.close()
            pg.destroy()
            redis_server.destroy()

    title = f"Fault scenarios (bench/chaos.py{' --smoke' if args.smoke else ''}; {time.monotonic() - started:.0f} s)"
    print_rows(
        title,
        [(scenario, f.name, f.target, f.measured, result_of(f)) for scenario, f in rows],
        header=("scenario", "check", "target", "measured", "result"),
    )
    failed = sum(1 for _, f in rows if f.ok is False)
    print(f"\n{sum(1 for _, f in rows if f.ok)} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
