"""Reads about conversations, messages, contacts, webhook events and the AI assistant, used by the CRM, the REST
API (docs/api.md), admin and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import AIActivity, Contact, Conversation, Message, WebhookEvent
from crm import inbox
from crm.selectors import client_scope
from sessions.engines import EngineUnavailable
from sessions.selectors import number_send_rules

if TYPE_CHECKING:
    from crm.access import Access

RECENT = timedelta(days=7)


def delivery_problem_counts(*, user: AbstractBaseUser) -> dict[str, int]:
    """What needs a human, among what `user` may see: failed webhook events (any age: they hold customer
    messages not yet stored) and outbound messages of the last week whose fate is unknown."""
    failed_events = client_scope(WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED), user)
    if not user.is_superuser:
        failed_events = failed_events.exclude(client__isnull=True)  # unknown numbers: superusers only
    unknown = client_scope(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.UNKNOWN,
            status_at__gte=timezone.now() - RECENT,
        ),
        user,
    )
    return {"failed_events": failed_events.count(), "unknown_messages": unknown.count()}


@dataclass
class AIUsageRow:
    """What the AI assistant did for one number or queue in a period."""

    scope: object  # the WhatsAppNumber or Queue
    replies: int
    handoffs: dict[str, int]  # by Conversation.AIStopReason
    failures: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def handoffs_total(self) -> int:
        return sum(self.handoffs.values())

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def ai_usage(*, user: AbstractBaseUser, since: datetime) -> dict[str, list[AIUsageRow]]:
    """Replies, hand-offs by reason, failures and tokens of the AI assistant since `since`, per number and per
    queue (two grouped queries), among what `user` may see. Hand-offs count every stop, failures included."""
    from queues.models import Queue
    from sessions.models import WhatsAppNumber

    reasons = Conversation.AIStopReason.values
    aggregates = {
        "replies": Count("pk", filter=Q(kind=AIActivity.Kind.REPLY)),
        "failures": Count("pk", filter=Q(kind=AIActivity.Kind.FAILURE)),
        "prompt": Coalesce(Sum("prompt_tokens"), 0),
        "completion": Coalesce(Sum("completion_tokens"), 0),
        **{f"h_{reason}": Count("pk", filter=Q(reason=reason) & ~Q(kind=AIActivity.Kind.REPLY)) for reason in reasons},
    }
    activity = client_scope(AIActivity.objects.filter(created_at__gte=since), user).order_by()
    result: dict[str, list[AIUsageRow]] = {}
    for key, model in (("number", WhatsAppNumber), ("queue", Queue)):
        grouped = activity.exclude(**{f"{key}_id": None}).values(f"{key}_id").annotate(**aggregates)
        scopes = model.objects.in_bulk([row[f"{key}_id"] for row in grouped])
        rows = [
            AIUsageRow(
                scope=scopes[row[f"{key}_id"]],
                replies=row["replies"],
                handoffs={reason: row[f"h_{reason}"] for reason in reasons if row[f"h_{reason}"]},
                failures=row["failures"],
                prompt_tokens=row["prompt"],
                completion_tokens=row["completion"],
            )
            for row in grouped
            if row[f"{key}_id"] in scopes
        ]
        result[f"{key}s"] = sorted(rows, key=lambda r: str(r.scope))
    return result


# -- the 24-hour window ----------------------------------------------------------------------------------------


class ReplyWindow(TypedDict):
    """Whether free text can be sent now (`open`), whether approved templates can (`templates`), and when the
    window closes (`closes_at`; None when it never does, or is already unknown)."""

    open: bool
    templates: bool
    closes_at: datetime | None


def conversation_reply_window(conversation: Conversation) -> ReplyWindow:
    """Whether free text can be sent now, or only an approved template (Cloud API's 24-hour window): what the
    CRM's composer offers and what the API's conversation shows. An engine that cannot send allows neither."""
    try:
        rules = number_send_rules(number=conversation.number)
    except EngineUnavailable:
        return {"open": False, "templates": False, "closes_at": None}
    if rules.reply_window is None:
        return {"open": True, "templates": rules.supports_templates, "closes_at": None}
    last = conversation.last_inbound_at
    closes_at = last + rules.reply_window if last else None
    return {
        "open": closes_at is not None and closes_at > timezone.now(),
        "templates": rules.supports_templates,
        "closes_at": closes_at,
    }


# -- the REST API's conversations, messages and contacts (docs/api.md) ----------------------------------------

# What a conversation row of the API shows, nothing more: a number's encrypted tokens would be decrypted row by row.
API_ROW_FIELDS = (
    "client_id",
    "status",
    "queue_id",
    "number_id",
    "contact_id",
    "assigned_to_id",
    "last_message_at",
    "last_inbound_at",
    "unread_count",
    "ai_stop_reason",
    "created_at",
    "contact__name",
    "contact__phone",
    "number__alias",
    "queue__name",
    "assigned_to__username",
    "assigned_to__first_name",
    "assigned_to__last_name",
)
API_DETAIL_FIELDS = (*API_ROW_FIELDS, "waiting_since", "assigned_at", "resolved_at", "snoozed_until", "number__engine")
API_MESSAGE_FIELDS = (
    "conversation_id",
    "direction",
    "origin",
    "kind",
    "body",
    "status",
    "error_code",
    "error_reason",
    "provider_message_id",
    "quoted_id",
    "sent_by_id",
    "sent_by__username",
    "created_at",
    "updated_at",
    "status_at",
    "media_id",
    "media_mime_type",
    "media_filename",
)
API_CONTACT_FIELDS = ("id", "name", "phone", "wa_id", "username", "opted_out_at", "created_at")
NEWEST_FIRST = ["-last_message_at", "-pk"]  # the inbox's order, served by its indexes
CONTACT_CONVERSATIONS = 20  # conversations shown with a contact


def _conversation_rows(access: Access) -> QuerySet[Conversation]:
    return access.conversations().select_related("contact", "number", "queue", "assigned_to").only(*API_ROW_FIELDS)


def conversation_list_for_api(
    *, access: Access, filters: Mapping[str, Any], search_rows: int
) -> QuerySet[Conversation]:
    """The conversations `access` may see, newest activity first, as the API's rows.

    `filters` (each optional): `status` (active: any but resolved, or one status), `queue`, `number`, `contact`
    (ids), `assigned_to` (a user id, "me" for the caller or "none" for nobody's), `updated_since`, and `q` (a
    contact's name, username or phone, or a word of a message, searched as the inbox does; `search_rows` is how
    many rows of the list the requested page reaches, so a common word is looked for only that far)."""
    rows = _conversation_rows(access)
    state = filters.get("status")
    if state == "active":
        rows = rows.exclude(status=Conversation.Status.RESOLVED)
    elif state:
        rows = rows.filter(status=state)
    for field in ("queue", "number", "contact"):
        if field in filters:
            rows = rows.filter(**{f"{field}_id": filters[field]})
    assigned_to = filters.get("assigned_to")
    if assigned_to == "me":
        rows = rows.filter(assigned_to_id=access.user.pk)
    elif assigned_to == "none":
        rows = rows.filter(assigned_to__isnull=True)
    elif assigned_to is not None:
        rows = rows.filter(assigned_to_id=assigned_to)
    if "updated_since" in filters:
        rows = rows.filter(updated_at__gte=filters["updated_since"])
    if filters.get("q"):
        rows = inbox.conversations_search(rows, filters["q"], access, NEWEST_FIRST, wanted=search_rows)
    return rows.order_by(*NEWEST_FIRST)


def conversation_get_for_api(*, access: Access, pk: int) -> Conversation | None:
    """The conversation if `access` may see it, as the API's row (enough to check what the caller may do)."""
    return _conversation_rows(access).filter(pk=pk).first()


def conversation_detail_get_for_api(*, pk: int, access: Access | None) -> Conversation | None:
    """The conversation as the API's detail, with its `window` (`conversation_reply_window`); None when there is
    none or `access` may not see it. `access` None: whoever may see it (the caller just acted on it, and a
    transfer may have taken it out of their sight)."""
    conversations = access.conversations() if access is not None else Conversation.objects.all()
    conversation = conversations.select_related("contact", "number", "queue", "assigned_to").only(*API_DETAIL_FIELDS)
    conversation = conversation.filter(pk=pk).first()
    if conversation is not None:
        conversation.window = conversation_reply_window(conversation)
    return conversation


def message_list_for_api(
    *, conversation: Conversation, since: datetime | None = None, newest_first: bool = False
) -> QuerySet[Message]:
    """A conversation's messages, notes and notices as the API shows them: oldest first (or newest first), only
    those written or changed at or after `since` when given."""
    messages = Message.objects.filter(conversation=conversation).select_related("sent_by").only(*API_MESSAGE_FIELDS)
    if since is not None:
        messages = messages.filter(updated_at__gte=since)
    return messages.order_by(*(["-created_at", "-id"] if newest_first else ["created_at", "id"]))


def _contacts_for_access(access: Access) -> QuerySet[Contact]:
    """The contacts of the caller's clients; for agents and supervisors, those with a conversation they see."""
    contacts = Contact.objects.all()
    if access.client_ids is not None:
        contacts = contacts.filter(client_id__in=access.client_ids)
    if not access.is_staff:
        contacts = contacts.filter(Exists(access.conversations().filter(contact_id=OuterRef("pk"))))
    return contacts.only(*API_CONTACT_FIELDS)


def contact_list_for_access(
    *, access: Access, q: str | None = None, opted_out: bool | None = None
) -> QuerySet[Contact]:
    """The contacts `access` may see (every contact of their clients for staff and tokens; for agents and
    supervisors those with a conversation they see), by name: matching `q` (name, username or phone), and only
    those who opted out (`opted_out` true) or only the others (false) when given."""
    contacts = _contacts_for_access(access)
    if q:
        contacts = inbox.contacts_matching(contacts, q)
    if opted_out is not None:
        contacts = contacts.filter(opted_out_at__isnull=not opted_out)
    return contacts.order_by("name", "phone", "pk")


def contact_get_for_access(*, access: Access, pk: int) -> Contact | None:
    """The contact if `access` may see it, with `visible_conversations`: its newest CONTACT_CONVERSATIONS
    conversations `access` may see (status, last activity, number)."""
    contact = _contacts_for_access(access).filter(pk=pk).first()
    if contact is None:
        return None
    contact.visible_conversations = list(
        access.conversations()
        .filter(contact_id=contact.pk)
        .select_related("number")
        .only("status", "last_message_at", "number_id", "number__alias")
        .order_by(*NEWEST_FIRST)[:CONTACT_CONVERSATIONS]
    )
    return contact
