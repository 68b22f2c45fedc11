"""Reads behind the agent-facing pages (docs/crm.md): the inbox, a conversation and the dashboard.

Every read goes through `crm.access.Access`, and each page costs a fixed number of queries however much data
there is (tests/crm/test_crm_queries.py holds them to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Concat, Lower, Upper
from django.utils import timezone

from conversations.models import Contact, Conversation, Message, MessageTemplate
from crm.access import Access
from queues.models import AgentAvailability, Queue, QueueMembership, QuickReply
from sessions.models import WhatsAppNumber

PAGE_SIZE = 50
CONTACT_MATCH_CAP = 500  # contacts matching a search read at once (see _search)
TEXT_MATCH_CAP = 2_000  # messages matching a searched word read at once (see _search)
COMMON_WORD_CONVERSATIONS = 2_000  # a common word or name is looked for in about this many newest conversations
# What the contact trigram index holds (conversations.models.Contact.Meta.indexes): the very same expression.
CONTACT_SEARCH_TEXT = Upper(Concat("name", Value("\n"), "username", Value("\n"), "phone"))
MAX_PAGE = 10_000  # deeper than anyone pages; keeps OFFSET within PostgreSQL's bigint
HISTORY_PAGE = 100
INBOX_ROW_FIELDS = (
    "client_id",
    "status",
    "queue_id",
    "assigned_to_id",
    "waiting_since",
    "snoozed_until",
    "last_message_at",
    "unread_count",
    "contact__name",
    "contact__phone",
    "contact__username",
    "contact__bsuid",
    "number__alias",
    "queue__name",
    "assigned_to__username",
)
CATCH_UP_LIMIT = 500  # messages a page that was away re-reads at once

TABS = ("mine", "queue", "all")
STATUSES = ("active", "pending", "ai", "open", "snoozed", "resolved", "all")


@dataclass(frozen=True)
class InboxFilters:
    tab: str = "mine"
    q: str = ""
    queue_id: int | None = None
    number_id: int | None = None
    status: str = "active"
    page: int = 1

    @classmethod
    def from_query(cls, params, access: Access) -> InboxFilters:
        """Read the filters from the query string; what does not parse falls back to the default."""
        tab = params.get("tab", "mine")
        if tab not in TABS or (tab == "all" and not access.sees_all_tab):
            tab = "mine"
        status = params.get("status", "active")
        if status not in STATUSES:
            status = "active"
        return cls(
            tab=tab,
            q=(params.get("q") or "").replace("\x00", "").strip()[:100],
            queue_id=int_or_none(params.get("queue")),
            number_id=int_or_none(params.get("number")),
            status=status,
            page=min(max(int_or_none(params.get("page")) or 1, 1), MAX_PAGE),
        )


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class InboxPage:
    rows: list[Conversation]
    has_next: bool
    counts: dict[str, int]
    queues: list[Queue]
    numbers: list[WhatsAppNumber]
    filters: InboxFilters
    now: datetime = field(default_factory=timezone.now)


def _newest(queryset: QuerySet[Conversation], order: list[str]) -> QuerySet[Conversation]:
    """About the first COMMON_WORD_CONVERSATIONS rows of the list, as a range of its sort key (one cheap read of
    the boundary), so a per-row test on them stays an ordered walk of the index."""
    key = order[0].lstrip("-")
    bound = list(
        queryset.order_by(*order).values_list(key, flat=True)[COMMON_WORD_CONVERSATIONS - 1 : COMMON_WORD_CONVERSATIONS]
    )
    if not bound or bound[0] is None:  # a short list (or one without that key): all of it
        return queryset
    newer = "gte" if order[0].startswith("-") else "lte"
    return queryset.filter(**{f"{key}__{newer}": bound[0]})


def contacts_matching(contacts: QuerySet[Contact], q: str) -> QuerySet[Contact]:
    """The contacts whose name, username or phone (any spacing; 3+ digits) holds `q`. The trigram index holds the
    three as one text (CONTACT_SEARCH_TEXT): one bitmap scan; the per-field test after it only keeps a search that
    spans two fields from matching across their seam."""
    digits = re.sub(r"\D", "", q)
    indexed = Q(search_text__contains=q.upper())
    exact = Q(name__icontains=q) | Q(username__icontains=q)
    if len(digits) >= 3:
        indexed |= Q(search_text__contains=digits)
        exact |= Q(phone__contains=digits)
    return contacts.annotate(search_text=CONTACT_SEARCH_TEXT).filter(indexed).filter(exact)


def conversations_search(
    queryset: QuerySet[Conversation], q: str, access: Access, order: list[str], wanted: int
) -> QuerySet[Conversation]:
    """Name, phone (any spacing) or a word of a message; `wanted` is how many rows of the list the page needs.
    Contacts and messages that match are read first from their trigram indexes, so the inbox query itself stays a
    walk of its recency index."""
    contacts = contacts_matching(Contact.objects.all(), q)
    if access.client_ids is not None:
        contacts = contacts.filter(client_id__in=access.client_ids)
    contact_ids = list(contacts.order_by().values_list("pk", flat=True)[:CONTACT_MATCH_CAP])
    if len(contact_ids) < CONTACT_MATCH_CAP:
        condition = Q(contact_id__in=contact_ids)
    else:  # a very common name: like a common word (below), among the newest of the list only
        hits = (
            _newest(queryset, order)
            .filter(contact_id__in=contacts.values("pk"))
            .order_by(*order)
            .values_list("pk", flat=True)[:wanted]
        )
        condition = Q(pk__in=list(hits))
    if len(q) >= 3:  # trigram search needs three characters
        # A rare word: its few messages come straight from the trigram index.
        matches = list(
            Message.objects.filter(body__icontains=q)
            .order_by()
            .values_list("conversation_id", flat=True)[:TEXT_MATCH_CAP]
        )
        if len(matches) < TEXT_MATCH_CAP:
            condition |= Q(pk__in=sorted(set(matches)))
        else:
            # A common word (the cap is hit): reading every match would cost seconds, and it is in so many
            # conversations that a page is found among the newest ones. So it is looked for in about the newest
            # COMMON_WORD_CONVERSATIONS of the list only, one conversation at a time in the list's order through
            # its message history, stopping as soon as enough are found for this page (`wanted`).
            # - The bound is a range on the sort key, not a list of ids: PostgreSQL charges the per-conversation
            #   test to every row it may read, so only a bounded index range keeps it on the ordered walk.
            # - The test is "(first such message) IS NOT NULL", not EXISTS: PostgreSQL would turn an EXISTS into
            #   a join of every match (its estimate for '%word%' is always tiny). LOWER(body) is served by no
            #   index, so the trigram index is not used either.
            candidates = _newest(queryset, order)
            mention = Message.objects.annotate(lowered=Lower("body")).filter(
                conversation_id=OuterRef("pk"), lowered__contains=q.lower()
            )
            hits = (
                candidates.alias(mention=Subquery(mention.order_by().values("pk")[:1]))
                .filter(mention__isnull=False)
                .order_by(*order)
                .values_list("pk", flat=True)[:wanted]
            )
            condition |= Q(pk__in=list(hits))
    return queryset.filter(condition)


def inbox_page(*, access: Access, filters: InboxFilters) -> InboxPage:
    now = timezone.now()
    user = access.user
    queues = list(access.queues().order_by("name"))
    queue_ids = [q.pk for q in queues] if access.is_staff else sorted(access.queue_ids)
    visible = access.conversations()
    if filters.tab == "mine":
        rows = visible.filter(assigned_to_id=user.pk)
    elif filters.tab == "queue":
        rows = visible.filter(queue_id__in=queue_ids, status=Conversation.Status.PENDING)
    else:
        rows = visible

    status = filters.status
    not_snoozed = Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    if filters.tab == "queue":
        rows = rows.filter(not_snoozed) if status != "snoozed" else rows.filter(snoozed_until__gt=now)
    elif status == "active":
        rows = rows.exclude(status=Conversation.Status.RESOLVED).filter(not_snoozed)
    elif status in ("pending", "ai", "open"):
        rows = rows.filter(status=status).filter(not_snoozed)
    elif status == "snoozed":
        rows = rows.exclude(status=Conversation.Status.RESOLVED).filter(snoozed_until__gt=now)
    elif status == "resolved":
        rows = rows.filter(status=Conversation.Status.RESOLVED)
    if filters.queue_id:
        rows = rows.filter(queue_id=filters.queue_id)
    if filters.number_id:
        rows = rows.filter(number_id=filters.number_id)
    order = ["waiting_since", "pk"] if filters.tab == "queue" else ["-last_message_at", "-pk"]
    start = (filters.page - 1) * PAGE_SIZE
    if filters.q:
        rows = conversations_search(rows, filters.q, access, order, wanted=start + PAGE_SIZE + 1)

    last_message = (
        Message.objects.filter(conversation_id=OuterRef("pk"))
        .exclude(direction=Message.Direction.INTERNAL)
        .order_by("-created_at", "-id")
        .values("pk")[:1]
    )
    rows = (
        rows.select_related("contact", "number", "queue", "assigned_to")
        # What a row shows, nothing more: a number's encrypted tokens would be decrypted row by row.
        .only(*INBOX_ROW_FIELDS)
    ).annotate(last_message_id=Subquery(last_message, output_field=IntegerField()))
    if filters.tab == "queue":
        ahead = (
            Conversation.objects.filter(
                queue_id=OuterRef("queue_id"),
                status=Conversation.Status.PENDING,
                waiting_since__lt=OuterRef("waiting_since"),
            )
            .order_by()
            .values("queue_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        rows = rows.annotate(position=Coalesce(Subquery(ahead, output_field=IntegerField()), Value(0)) + 1)
    rows = rows.order_by(*order)
    page = list(rows[start : start + PAGE_SIZE + 1])
    has_next = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    previews = Message.objects.only("pk", "body", "kind", "direction", "status", "origin").in_bulk(
        [c.last_message_id for c in page if c.last_message_id]
    )
    for conversation in page:
        conversation.last_message = previews.get(conversation.last_message_id)
        if conversation.waiting_since and conversation.status == Conversation.Status.PENDING:
            conversation.waiting_for = now - conversation.waiting_since

    return InboxPage(
        rows=page,
        has_next=has_next,
        counts=inbox_counts(access=access, now=now, queue_ids=queue_ids),
        queues=queues,
        numbers=list(_numbers_for(access).order_by("alias")),
        filters=filters,
        now=now,
    )


def inbox_counts(*, access: Access, now: datetime | None = None, queue_ids: list[int] | None = None) -> dict[str, int]:
    """The tab badges: open conversations assigned to me (and how many unread messages they hold), and
    conversations waiting in my queues (`queue_ids`: those queues, when the caller has them already)."""
    now = now or timezone.now()
    user = access.user
    if queue_ids is None:
        queue_ids = list(access.queues().values_list("pk", flat=True)) if access.is_staff else list(access.queue_ids)
    not_snoozed = Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    # Two small indexed reads (assigned_to+status, queue+status) rather than one pass over every active
    # conversation of the client.
    visible = access.conversations().filter(not_snoozed)
    totals = visible.filter(assigned_to_id=user.pk, status=Conversation.Status.OPEN).aggregate(
        mine=Count("pk"), unread=Coalesce(Sum("unread_count"), 0)
    )
    totals["queue"] = visible.filter(queue_id__in=queue_ids, status=Conversation.Status.PENDING).count()
    return {key: int(value or 0) for key, value in totals.items()}


def _numbers_for(access: Access) -> QuerySet[WhatsAppNumber]:
    numbers = WhatsAppNumber.objects.all()
    if access.client_ids is not None:
        numbers = numbers.filter(client_id__in=access.client_ids)
    if not access.is_staff:
        numbers = numbers.filter(queue_id__in=access.queue_ids)
    return numbers


# -- one conversation ---------------------------------------------------------------------------------------


def conversation_for(*, access: Access, pk: int) -> Conversation | None:
    """The conversation if the user may see it, with what its page shows; None otherwise."""
    conversation = (
        access.conversations()
        .select_related("contact", "number", "number__session", "queue", "assigned_to")
        .filter(pk=pk)
        .first()
    )
    return conversation


def conversation_messages(
    *, conversation: Conversation, before: int | None = None, limit: int = HISTORY_PAGE
) -> tuple[list[Message], bool]:
    """The newest `limit` messages (older than message `before` when given), oldest first, and whether older
    ones exist."""
    messages = Message.objects.filter(conversation=conversation)
    if before is not None:
        pivot = Message.objects.filter(conversation=conversation, pk=before).values("created_at").first()
        if pivot is not None:
            messages = messages.filter(
                Q(created_at__lt=pivot["created_at"]) | Q(created_at=pivot["created_at"], pk__lt=before)
            )
    newest = list(
        messages.select_related("sent_by", "quoted")
        .defer("payload", "quoted__payload")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    has_older = len(newest) > limit
    return list(reversed(newest[:limit])), has_older


def conversation_messages_since(*, conversation: Conversation, since: datetime) -> list[Message]:
    """Messages written or changed (a new status) since `since`, in the order they changed: what a page that was
    away missed. At most CATCH_UP_LIMIT; the caller continues from the last one's `updated_at`."""
    return list(
        Message.objects.filter(conversation=conversation, updated_at__gte=since)
        .select_related("sent_by", "quoted")
        .defer("payload", "quoted__payload")
        .order_by("updated_at", "id")[:CATCH_UP_LIMIT]
    )


def quick_replies_for(conversation: Conversation) -> list[QuickReply]:
    if conversation.queue_id is None:
        return []
    return list(QuickReply.objects.filter(queue_id=conversation.queue_id).order_by("shortcut"))


def templates_for(conversation: Conversation) -> list[MessageTemplate]:
    return list(
        MessageTemplate.objects.filter(client_id=conversation.client_id, is_active=True)
        .filter(Q(number__isnull=True) | Q(number_id=conversation.number_id))
        .order_by("name", "language")
    )


def transfer_targets(*, access: Access, conversation: Conversation) -> tuple[list[Queue], list[QueueMembership]]:
    """Queues the conversation may go to, and the members of those queues (for "to an agent")."""
    queues = list(access.transfer_queues(conversation).order_by("name"))
    members = list(
        QueueMembership.objects.filter(queue__in=[q.pk for q in queues], user__is_active=True)
        .select_related("user", "queue")
        .order_by("queue__name", "user__username")
    )
    return queues, members


# -- dashboard ----------------------------------------------------------------------------------------------


@dataclass
class QueueLoad:
    queue: Queue
    waiting: int
    longest_wait: timedelta | None
    open: int


@dataclass
class AgentLoad:
    user_id: int
    name: str
    status: str
    open: int
    capacity: int
    queues: list[str]


def dashboard(*, access: Access) -> dict:
    now = timezone.now()
    queues = list(access.queues().order_by("name"))
    if access.watched_agent_queue_ids() is not None:
        queues = [q for q in queues if q.pk in access.supervised_queue_ids]
    queue_ids = [q.pk for q in queues]
    stats = {
        row["queue_id"]: row
        for row in Conversation.objects.filter(queue_id__in=queue_ids)
        .exclude(status=Conversation.Status.RESOLVED)
        .values("queue_id")
        .annotate(
            waiting=Count("pk", filter=Q(status=Conversation.Status.PENDING)),
            oldest=Min("waiting_since", filter=Q(status=Conversation.Status.PENDING)),
            open=Count("pk", filter=Q(status=Conversation.Status.OPEN)),
        )
        .order_by()
    }
    queue_loads = [
        QueueLoad(
            queue=q,
            waiting=stats.get(q.pk, {}).get("waiting", 0),
            longest_wait=(now - stats[q.pk]["oldest"]) if stats.get(q.pk, {}).get("oldest") else None,
            open=stats.get(q.pk, {}).get("open", 0),
        )
        for q in queues
    ]

    memberships = list(
        QueueMembership.objects.filter(queue_id__in=queue_ids, user__is_active=True)
        .select_related("user", "queue")
        .order_by("user__username", "queue__name")
    )
    user_ids = sorted({m.user_id for m in memberships})
    availability = dict(AgentAvailability.objects.filter(user_id__in=user_ids).values_list("user_id", "status"))
    open_counts = dict(
        Conversation.objects.filter(assigned_to_id__in=user_ids, status=Conversation.Status.OPEN)
        .values_list("assigned_to_id")
        .annotate(n=Count("pk"))
        .values_list("assigned_to_id", "n")
        .order_by()
    )
    agents: dict[int, AgentLoad] = {}
    for m in memberships:
        load = agents.get(m.user_id)
        if load is None:
            load = agents[m.user_id] = AgentLoad(
                user_id=m.user_id,
                name=m.user.get_full_name() or m.user.get_username(),
                status=availability.get(m.user_id, AgentAvailability.Status.OFFLINE),
                open=open_counts.get(m.user_id, 0),
                capacity=0,
                queues=[],
            )
        load.capacity += m.capacity if m.role == QueueMembership.Role.AGENT else 0
        load.queues.append(m.queue.name)
    order = {AgentAvailability.Status.ONLINE: 0, AgentAvailability.Status.AWAY: 1, AgentAvailability.Status.OFFLINE: 2}
    agent_loads = sorted(agents.values(), key=lambda a: (order.get(a.status, 3), a.name.lower()))

    numbers = WhatsAppNumber.objects.select_related("session", "queue").order_by("alias")
    if access.client_ids is not None:
        numbers = numbers.filter(client_id__in=access.client_ids)
    if not access.is_staff:
        numbers = numbers.filter(queue_id__in=queue_ids)
    number_rows = list(numbers)
    return {"queues": queue_loads, "agents": agent_loads, "numbers": number_rows, "now": now}
