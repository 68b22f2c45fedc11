#!/usr/bin/env python
"""The CRM at scale (issue 6): with 100,000 conversations and 1,000,000 messages loaded, the inbox and conversation
pages render in p95 <= 150 ms server time, and a new inbound message reaches an agent's open browser p95 <= 300 ms
after the webhook POST.

    .venv/bin/python bench/crm_at_scale.py [--conversations 100000] [--messages 1000000] [--requests 200]
                                           [--live-messages 200] [--live-rate 5] [--live-agents 100]
                                           [--skip-load] [--skip-pages] [--skip-live]

1. Loads the data once (bench/_crm_data.py: client `bench-crm`, 10 queues, 20 Cloud API numbers, 100 agents
   online, contacts, conversations, messages; set-based SQL, a couple of minutes at full size) and reuses it while
   the counts match.
2. Pages: in this process, through Django's whole request handling with DEBUG off, as logged-in agents (Mine and
   Queue tabs) and a staff user (All tab, filters, search); then conversation pages of random conversations and
   of the longest ones. Server time is the wall time of each request; 10 warm-up requests per page kind first.
3. Live delivery: starts daphne and Celery workers (bench/_stack.py), opens the agents' WebSockets to /ws/live/
   with a session cookie as their browsers would, and POSTs signed Cloud API webhooks at `--live-rate` per second,
   each a new customer message in an open conversation of a connected agent. Latency is counted from the time
   each POST was due to the arrival of its `message.created` event on the socket of the agent it is assigned to
   (colleagues of the queue get it too, as their pages do), after 3 warm-up messages.

It runs on its own database (`BENCH_CRM_DATABASE_URL`, default `whatsapp_crm_bench_crm`) so `make bench` does not
reload the data every time, and on the benches' Redis (`BENCH_REDIS_URL`).

What the run changes is put back afterwards (the posted messages and their webhook events deleted, conversations
opened or written to restored), so the next run finds the data as loaded.

Exit status 1 when a target is missed, a page answers anything but 200, or an event does not arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, print_table, setup_django  # noqa: E402

if TYPE_CHECKING:
    from _crm_data import Dataset
    from django.contrib.auth.base_user import AbstractBaseUser

DEFAULT_CRM_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/whatsapp_crm_bench_crm"
WARMUP_REQUESTS = 10  # per page kind, untimed
WARMUP_MESSAGES = 3  # live messages before the measured ones
EVENT_TIMEOUT = 15.0  # seconds to wait for the last events after the last POST
PING_SECONDS = 20  # the CRM page pings its socket this often (crm/presence.py)
NAME_TERMS = ["Quispe", "María Flores", "5196001"]  # a surname on 3% of contacts, a full name, phone digits
# A rare phrase (0.05% of messages) and two common words (3-6% of messages: the loader's stock sentences repeat
# far more than real chats do, so these are the worst case).
TEXT_TERMS = ["Pedido 48", "reembolso", "factura electrónica"]
REF = re.compile(r"\(ref (\S+)\)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page kind")
    parser.add_argument("--live-messages", type=int, default=200, help="timed inbound messages")
    parser.add_argument("--live-rate", type=float, default=5, help="webhook POSTs per second")
    parser.add_argument("--live-agents", type=int, default=100, help="agents with the CRM open (WebSockets)")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--p95-page", type=float, default=150.0, help="target page p95, ms")
    parser.add_argument("--p95-live", type=float, default=300.0, help="target live delivery p95, ms")
    parser.add_argument("--skip-load", action="store_true", help="use the data already loaded")
    parser.add_argument("--skip-pages", action="store_true", help="measure live delivery only")
    parser.add_argument("--skip-live", action="store_true", help="measure the pages only")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    if args.messages < args.conversations:
        parser.error("--messages must be at least --conversations (every conversation has a message)")

    # Its own database: the other benches wipe theirs, and this one's 1,000,000 messages take minutes to load.
    os.environ["BENCH_DATABASE_URL"] = os.environ.get("BENCH_CRM_DATABASE_URL", DEFAULT_CRM_DATABASE_URL)
    setup_django()
    import _crm_data

    if args.skip_load:
        try:
            dataset = _crm_data.existing()
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 2
    else:
        dataset = _crm_data.load(conversations=args.conversations, messages=args.messages)
    rng = random.Random(args.seed)

    longest = dataset.longest[0][1] if dataset.longest else 0
    figures = [
        Figure(
            f"data: {dataset.conversations:,} conversations, {dataset.messages:,} messages",
            "-",
            ("already loaded" if dataset.loaded_seconds is None else f"loaded in {dataset.loaded_seconds:.0f} s")
            + f"; longest conversations {longest:,} messages",
            None,
        )
    ]
    if args.skip_pages:
        figures.append(
            Figure("inbox and conversation pages", f"p95 <= {args.p95_page:g} ms", "skipped (--skip-pages)", None)
        )
    else:
        figures += page_figures(dataset, args, rng)
    if args.skip_live:
        figures.append(Figure("live delivery", f"p95 <= {args.p95_live:g} ms", "skipped (--skip-live)", None))
    else:
        figures += live_figures(dataset, args, rng)
    return print_table("CRM at scale (bench/crm_at_scale.py; pages in-process, live via daphne + Celery)", figures)


# --- pages -----------------------------------------------------------------------------------------------------


@dataclass
class PageKind:
    name: str
    requests: list[tuple[object, str]]  # (logged-in test client, url), cycled


def page_figures(dataset: Dataset, args: argparse.Namespace, rng: random.Random) -> list[Figure]:
    from django.conf import settings
    from django.urls import NoReverseMatch, reverse

    target = f"p95 <= {args.p95_page:g} ms"
    try:
        inbox = reverse("crm:inbox")
        reverse("crm:conversation", args=[1])
    except NoReverseMatch as exc:
        print(f"pages not measured: {exc}", file=sys.stderr)
        return [
            Figure(
                "inbox and conversation pages", target, "not measured: crm:inbox / crm:conversation not routed", None
            )
        ]

    settings.DEBUG = False  # DEBUG keeps every query in memory: not what production runs
    if "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    kinds, visited = _page_kinds(dataset, inbox, rng)
    with conversations_kept(visited):  # opening a conversation marks it read: put that back afterwards
        return _time_pages(kinds, args.requests, args.p95_page)


def _time_pages(kinds: list[PageKind], requests: int, limit: float) -> list[Figure]:
    from _stack import percentile

    target = f"p95 <= {limit:g} ms"
    figures = []
    failures: dict[int, int] = {}
    answered = 0
    for kind in kinds:
        plan = [kind.requests[i % len(kind.requests)] for i in range(requests)]
        for i in range(WARMUP_REQUESTS):
            client, url = kind.requests[i % len(kind.requests)]
            client.get(url)
        samples = []
        for client, url in plan:
            start = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            answered += 1
            if response.status_code != 200:
                failures[response.status_code] = failures.get(response.status_code, 0) + 1
        p50, p95 = percentile(samples, 50), percentile(samples, 95)
        figures.append(
            Figure(
                f"{kind.name}, n={len(samples)}",
                target,
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(samples):.1f} ms",
                p95 <= limit,
            )
        )
    bad = sum(failures.values())
    shown = ", ".join(f"{n} answered {status}" for status, n in sorted(failures.items()))
    figures.append(
        Figure("pages answered 200", f"{answered:,}", f"{answered - bad:,}" + (f" ({shown})" if shown else ""), not bad)
    )
    return figures


def _page_kinds(dataset: Dataset, inbox: str, rng: random.Random) -> tuple[list[PageKind], set[int]]:
    """The requests of each page kind, and the conversations whose pages they open."""
    from django.contrib.auth import get_user_model
    from django.test import Client as TestClient
    from django.urls import reverse

    from conversations.models import Conversation
    from queues.models import QueueMembership

    User = get_user_model()
    users = {u.pk: u for u in User.objects.filter(pk__in=[*dataset.agent_ids, dataset.staff_id])}
    logged_in: dict[int, TestClient] = {}

    def as_user(pk: int) -> TestClient:
        if pk not in logged_in:
            client = TestClient()
            client.force_login(users[pk])
            logged_in[pk] = client
        return logged_in[pk]

    agents = rng.sample(dataset.agent_ids, min(10, len(dataset.agent_ids)))
    staff = as_user(dataset.staff_id)
    queues_of = {}
    for user_id, queue_id in QueueMembership.objects.filter(user_id__in=agents).values_list("user_id", "queue_id"):
        queues_of.setdefault(user_id, []).append(queue_id)

    filters = [f"&queue={q}" for q in dataset.queue_ids[:3]] + [f"&number={n}" for n in dataset.number_ids[:3]]
    filters += ["&status=pending", "&status=open", "&status=resolved", "&status=all"]

    conversations = Conversation.objects.filter(client_id=dataset.client_id).order_by()
    ids = list(conversations.values_list("id", flat=True))
    sample = set(rng.sample(ids, min(200, len(ids))))
    owners = dict(
        conversations.filter(pk__in=sample, status=Conversation.Status.OPEN).values_list("pk", "assigned_to_id")
    )
    random_pages = [
        (as_user(owners[pk]) if owners.get(pk) else staff, reverse("crm:conversation", args=[pk]))
        for pk in sorted(sample)
    ]
    rng.shuffle(random_pages)
    long_owners = dict(
        conversations.filter(pk__in=[pk for pk, _ in dataset.longest]).values_list("pk", "assigned_to_id")
    )
    long_pages = [
        (as_user(long_owners[pk]) if long_owners.get(pk) else staff, reverse("crm:conversation", args=[pk]))
        for pk, _ in dataset.longest
    ]
    longest = dataset.longest[0][1] if dataset.longest else 0
    kinds = [
        PageKind("inbox, Mine tab (10 agents)", [(as_user(a), f"{inbox}?tab=mine") for a in agents]),
        PageKind(
            "inbox, Queue tab (10 agents, all queues or one)",
            [(as_user(a), f"{inbox}?tab=queue") for a in agents]
            + [(as_user(a), f"{inbox}?tab=queue&queue={queues_of[a][0]}") for a in agents if queues_of.get(a)],
        ),
        PageKind("inbox, All tab (staff)", [(staff, f"{inbox}?tab=all")]),
        PageKind(
            "inbox, All tab filtered (staff: queue, number, status)", [(staff, f"{inbox}?tab=all{f}") for f in filters]
        ),
        PageKind(
            "inbox, search by name or phone (staff)",
            [(staff, f"{inbox}?tab=all&q={term.replace(' ', '+')}") for term in NAME_TERMS],
        ),
        PageKind(
            "inbox, search by message text (staff)",
            [(staff, f"{inbox}?tab=all&q={term.replace(' ', '+')}") for term in TEXT_TERMS],
        ),
        PageKind("conversation page, random conversations", random_pages),
        PageKind(f"conversation page, longest conversations ({longest:,} messages)", long_pages),
    ]
    return kinds, sample | {pk for pk, _ in dataset.longest}


@contextmanager
def conversations_kept(ids: set[int]) -> Iterator[None]:
    """Put back what the bench changed on these conversations (marked read, bumped by a live message), so the
    data stays as loaded for the next run."""
    from conversations.models import Conversation

    fields = ["status", "assigned_to_id", "assigned_at", "waiting_since", "resolved_at", "snoozed_until"]
    fields += ["last_message_at", "last_inbound_at", "unread_count", "updated_at"]
    saved = [Conversation(**row) for row in Conversation.objects.filter(pk__in=ids).values("pk", *fields)]
    try:
        yield
    finally:
        Conversation.objects.bulk_update(saved, fields, batch_size=500)


# --- live delivery ---------------------------------------------------------------------------------------------


class WebSocket:
    """A minimal RFC 6455 client on asyncio streams: the handshake, text frames in, control frames answered."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str]) -> WebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status = (await reader.readline()).decode(errors="replace").strip()
        answer = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode(errors="replace").partition(":")
            answer[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1((key + cls.GUID).encode(), usedforsecurity=False).digest()).decode()
        if " 101 " not in f"{status} " or answer.get("sec-websocket-accept") != accept:
            writer.close()
            raise ConnectionError(f"WebSocket handshake refused: {status!r}")
        return cls(reader, writer)

    async def recv(self) -> str | None:
        """The next text message; None when the server closed the connection."""
        message = b""
        while True:
            first, second = await self.reader.readexactly(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if second & 0x80 else None
            payload = await self.reader.readexactly(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:  # close: answer it
                await self._send(0x8, payload[:2])
                return None
            if opcode == 0x9:  # ping
                await self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    async def send_text(self, text: str) -> None:
        await self._send(0x1, text.encode())

    async def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # client frames are masked
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await self.writer.drain()

    async def close(self) -> None:
        try:
            await self._send(0x8, struct.pack("!H", 1000))
        except (ConnectionError, RuntimeError):
            pass
        self.writer.close()


@dataclass
class LiveMessage:
    ref: str
    conversation_id: int
    agent_id: int
    body: dict


def session_login(user: AbstractBaseUser) -> str:
    """A logged-in Django session for `user`, as the login view leaves it; its key."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def live_plan(dataset: Dataset, agents: list[int], count: int, rng: random.Random) -> list[LiveMessage]:
    """`count` new customer messages, each in a different open conversation of one of `agents` (when there are
    enough), as Cloud API webhook bodies."""
    from _crm_data import LIVE_WAMID_PREFIX

    from conversations.models import Conversation
    from tests.conversations import meta_payloads as meta

    rows = list(
        Conversation.objects.filter(
            client_id=dataset.client_id,
            status=Conversation.Status.OPEN,
            assigned_to_id__in=agents,
            snoozed_until__isnull=True,
        )
        .order_by("pk")
        .values_list(
            "pk",
            "assigned_to_id",
            "contact__wa_id",
            "contact__name",
            "number__phone_number_id",
            "number__display_number",
        )
    )
    if not rows:
        raise RuntimeError("no open conversation of a connected agent to write to")
    rng.shuffle(rows)
    run = f"{int(time.time()):x}"
    plan = []
    for i in range(count):
        pk, agent_id, wa_id, name, phone_number_id, display = rows[i % len(rows)]
        ref = f"{run}-{i}"
        message = meta.text_message(
            f"{LIVE_WAMID_PREFIX}{run}{i:06d}",
            wa_id,
            f"Hola, ¿me confirman cuándo llega mi pedido? (ref {ref})",
            timestamp=str(int(time.time())),
        )
        change = meta.messages_change(
            phone_number_id, display.lstrip("+"), messages=[message], contacts=[meta.contact(wa_id, name)]
        )
        plan.append(LiveMessage(ref, pk, agent_id, meta.webhook(change)))
    return plan


def live_figures(dataset: Dataset, args: argparse.Namespace, rng: random.Random) -> list[Figure]:
    from _crm_data import live_messages_delete
    from _stack import Stack, percentile
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    from conversations.models import WebhookEvent

    target = f"p95 <= {args.p95_live:g} ms"
    User = get_user_model()
    agent_ids = dataset.agent_ids[: max(1, min(args.live_agents, len(dataset.agent_ids)))]
    agents = list(User.objects.filter(pk__in=agent_ids).order_by("pk"))
    sessions = {agent.pk: session_login(agent) for agent in agents}
    cookies = {pk: f"{settings.SESSION_COOKIE_NAME}={key}" for pk, key in sessions.items()}
    plan = live_plan(dataset, [a.pk for a in agents], WARMUP_MESSAGES + args.live_messages, rng)
    warmup, measured = plan[:WARMUP_MESSAGES], plan[WARMUP_MESSAGES:]
    # daphne must read the sessions this process wrote: same signing key (the test settings have their own).
    os.environ["SECRET_KEY"] = settings.SECRET_KEY

    with conversations_kept({m.conversation_id for m in plan}):
        try:
            with Stack(web=True, workers=args.workers, concurrency=args.concurrency) as stack:
                outcome = asyncio.run(_live(stack.port, cookies, warmup, measured, args.live_rate))
        finally:  # the messages posted, and their webhook events: gone, so the counts stay as loaded
            live_messages_delete(dataset.number_ids)
            WebhookEvent.objects.filter(client_id=dataset.client_id).delete()
            Session.objects.filter(session_key__in=sessions.values()).delete()
    arrivals, results, wrong, refused = outcome

    due = sorted(r.sent_at for r in results)  # post_at_rate schedules in order: the n-th due time is message n's
    latencies = [(arrivals[m.ref] - due[i]) * 1000 for i, m in enumerate(measured) if m.ref in arrivals]
    delivered = len(latencies)
    acked = sum(1 for r in results if r.status == 200)
    name = f"live: webhook POST to agent's WebSocket, n={len(measured)} at {args.live_rate:g}/s"
    figures = []
    if latencies:
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        figures.append(
            Figure(
                name,
                target,
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(latencies):.1f} ms",
                p95 <= args.p95_live,
            )
        )
    else:
        figures.append(Figure(name, target, "no event arrived", False))
    ok = delivered == acked == len(measured) and not wrong and not refused
    figures.append(
        Figure(
            f"live: events delivered ({len(agents)} agents connected)",
            f"{len(measured)}/{len(measured)}",
            f"{acked}/{len(measured)} acked, {delivered}/{len(measured)} delivered"
            + (f", {wrong} naming the wrong conversation" if wrong else "")
            + (f", sockets refused: {refused}" if refused else ""),
            ok,
        )
    )
    return figures


async def _live(
    port: int, cookies: dict[int, str], warmup: list[LiveMessage], measured: list[LiveMessage], rate: float
) -> tuple[dict[str, float], list, int, str]:
    """Connect the agents' sockets, post the warm-up then the measured messages, collect arrival times."""
    from _stack import post_at_rate, signed

    host, origin = "127.0.0.1", f"http://127.0.0.1:{port}"
    sockets: dict[int, WebSocket] = {}
    try:
        for agent_id, cookie in cookies.items():
            ws = await WebSocket.connect(host, port, "/ws/live/", {"Origin": origin, "Cookie": cookie})
            sockets[agent_id] = ws
            hello = await asyncio.wait_for(ws.recv(), timeout=10)
            if hello is None or json.loads(hello).get("type") != "hello":
                return {}, [], 0, f"agent {agent_id} got {hello!r} instead of hello"
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        for ws in sockets.values():
            await ws.close()
        return {}, [], 0, f"{type(exc).__name__}: {exc}"

    expected = {m.ref: m for m in [*warmup, *measured]}
    arrivals: dict[str, float] = {}
    wrong = 0

    async def read(agent_id: int, ws: WebSocket) -> None:
        nonlocal wrong
        while (text := await ws.recv()) is not None:
            arrived = time.perf_counter()
            event = json.loads(text)
            if event.get("type") != "message.created":
                continue
            found = REF.search(event["data"].get("preview", ""))
            message = expected.get(found.group(1)) if found else None
            # Colleagues of the same queue see it too; what counts is the socket of the agent it is assigned to.
            if message is None or message.agent_id != agent_id or message.ref in arrivals:
                continue
            if message.conversation_id != event["data"].get("conversation"):
                wrong += 1
            arrivals[message.ref] = arrived

    async def ping(ws: WebSocket) -> None:
        while True:  # as the page does, so the agent stays present
            await asyncio.sleep(PING_SECONDS)
            await ws.send_text(json.dumps({"type": "ping"}))

    async def wait_for(messages: list[LiveMessage]) -> None:
        deadline = time.perf_counter() + EVENT_TIMEOUT
        while any(m.ref not in arrivals for m in messages) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)

    readers = [asyncio.create_task(read(agent_id, ws)) for agent_id, ws in sockets.items()]
    readers += [asyncio.create_task(ping(ws)) for ws in sockets.values()]
    url = f"http://{host}:{port}/webhooks/whatsapp/"
    await post_at_rate(url, [signed(m.body) for m in warmup], rate=rate)
    await wait_for(warmup)
    results = await post_at_rate(url, [signed(m.body) for m in measured], rate=rate)
    await wait_for(measured)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ws in sockets.values():
        await ws.close()
    return arrivals, results, wrong, ""


if __name__ == "__main__":
    sys.exit(main())
