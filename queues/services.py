"""Availability and the assignment policy (docs/assignment.md).

Among a queue's agents who are online and under their capacity in that queue, a conversation goes to the one
with the fewest open conversations there, ties to the one who has waited longest since their last assignment.
Nobody available: the conversation waits in the queue (pending), and waiting conversations are handed out
oldest first when an agent comes online or frees capacity. Whoever assigns in a queue holds the locks of its
memberships (queues/locks.py), so two workers never assign past an agent's capacity.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from conversations.models import Conversation
from crm.events import publish_on_commit, queue_group, user_group
from crm.models import WebhookEventType
from crm.webhooks import webhook_event_wanted, webhook_events_emit
from queues.locks import queue_memberships_lock
from queues.models import AgentAvailability, QueueMembership

logger = logging.getLogger(__name__)


def _agents_with_room(*, queue_id: int) -> list[tuple[int, int, datetime | None]]:
    """(user id, open conversations here, last assigned at) of the queue's online agents under capacity, best
    first. Locks the queue's memberships until the transaction ends."""
    memberships = [
        m
        for m in queue_memberships_lock(queue_id=queue_id)
        if m.role == QueueMembership.Role.AGENT and m.capacity > 0 and m.user.is_active
    ]
    if not memberships:
        return []
    user_ids = [m.user_id for m in memberships]
    availability = {
        a.user_id: a
        for a in AgentAvailability.objects.filter(user_id__in=user_ids, status=AgentAvailability.Status.ONLINE)
    }
    open_counts = dict(
        Conversation.objects.filter(queue_id=queue_id, status=Conversation.Status.OPEN, assigned_to_id__in=user_ids)
        .values_list("assigned_to_id")
        .annotate(n=Count("id"))
        .values_list("assigned_to_id", "n")
    )
    candidates = []
    for membership in memberships:
        online = availability.get(membership.user_id)
        count = open_counts.get(membership.user_id, 0)
        if online is not None and count < membership.capacity:
            candidates.append((membership.user_id, count, online.last_assigned_at))
    # Fewest open conversations first; then longest idle (never assigned counts as idlest); then user id.
    candidates.sort(key=lambda c: (c[1], c[2] is not None, c[2] or timezone.now(), c[0]))
    return candidates


def conversation_assign(
    *, conversation: Conversation, user_id: int, assigned_by: AbstractBaseUser | None = None, reason: str = "policy"
) -> Conversation:
    """Give `conversation` to an agent now: it becomes open, and the agent's idle clock restarts."""
    now = timezone.now()
    previous = conversation.assigned_to_id
    conversation.assigned_to_id = user_id
    conversation.status = Conversation.Status.OPEN
    conversation.assigned_at = now
    conversation.save(update_fields=["assigned_to", "status", "assigned_at", "updated_at"])
    AgentAvailability.objects.filter(user_id=user_id).update(last_assigned_at=now)
    event = {
        "type": "conversation.assigned",
        "data": {
            "conversation": conversation.pk,
            "queue": conversation.queue_id,
            "agent": user_id,
            "previous_agent": previous,
            "reason": reason,
            "by": assigned_by.pk if assigned_by is not None else None,
        },
    }
    publish_on_commit(user_group(user_id), event)
    if previous and previous != user_id:
        publish_on_commit(user_group(previous), event)
    if conversation.queue_id:
        publish_on_commit(queue_group(conversation.queue_id), event)
    if webhook_event_wanted(client_id=conversation.client_id, type=WebhookEventType.CONVERSATION_ASSIGNED):
        agent = get_user_model().objects.filter(pk=user_id).values("username", "first_name", "last_name").first()
        name = f"{agent['first_name']} {agent['last_name']}".strip() if agent else ""
        webhook_events_emit(
            client_id=conversation.client_id,
            type=WebhookEventType.CONVERSATION_ASSIGNED,
            data={
                **event["data"],
                "agent": {"id": user_id, "username": agent["username"] if agent else "", "name": name},
                "number": conversation.number_id,
                "contact": conversation.contact_id,
            },
        )
    logger.info("conversation %s assigned to user %s (%s)", conversation.pk, user_id, reason)
    return conversation


def conversation_assign_by_policy(*, conversation: Conversation, preferred_user_id: int | None = None) -> int | None:
    """Assign a pending conversation of a queue by policy; the agent's id, or None when it must wait.

    `preferred_user_id` (the agent who had it before it was resolved) gets it back when they have room."""
    if conversation.queue_id is None or conversation.status != Conversation.Status.PENDING:
        return None
    candidates = _agents_with_room(queue_id=conversation.queue_id)
    if not candidates:
        return None
    chosen = next((c[0] for c in candidates if c[0] == preferred_user_id), candidates[0][0])
    conversation_assign(
        conversation=conversation, user_id=chosen, reason="returning" if chosen == preferred_user_id else "policy"
    )
    return chosen


@transaction.atomic
def queue_dispatch_waiting(*, queue_id: int, limit: int = 100) -> int:
    """Hand waiting conversations of the queue, oldest first, to agents with room. Returns how many."""
    assigned = 0
    while assigned < limit:
        candidates = _agents_with_room(queue_id=queue_id)
        if not candidates:
            break
        waiting = (
            Conversation.objects.select_for_update(skip_locked=True)
            .filter(queue_id=queue_id, status=Conversation.Status.PENDING)
            .order_by("waiting_since", "pk")
            .first()
        )
        if waiting is None:
            break
        conversation_assign(conversation=waiting, user_id=candidates[0][0], reason="waiting")
        assigned += 1
    return assigned


def agent_availability_set(*, user: AbstractBaseUser, status: str) -> AgentAvailability:
    """Set an agent online / away / offline. Coming online hands them waiting conversations of their queues."""
    if status not in AgentAvailability.Status.values:
        raise ValueError(
            f"unknown availability {status!r}; expected one of {', '.join(AgentAvailability.Status.values)}"
        )
    with transaction.atomic():
        availability, _ = AgentAvailability.objects.select_for_update().get_or_create(user=user)
        changed = availability.status != status
        if changed:
            availability.status = status
            availability.status_changed_at = timezone.now()
            availability.save(update_fields=["status", "status_changed_at", "updated_at"])
            publish_on_commit(
                user_group(user.pk), {"type": "agent.availability", "data": {"agent": user.pk, "status": status}}
            )
    if changed and status == AgentAvailability.Status.ONLINE:
        for queue_id in (
            QueueMembership.objects.filter(user=user).values_list("queue_id", flat=True).order_by("queue_id")
        ):
            queue_dispatch_waiting(queue_id=queue_id)
    return availability


def agents_presence_sweep() -> list[int]:
    """Beat's auto-away (docs/crm.md): online agents whose last CRM tab closed (or went silent) longer ago than
    AGENT_AWAY_GRACE_SECONDS are set away, so the policy stops giving them conversations. Returns their ids."""
    from crm.presence import presence_absent, presence_forget

    absent = presence_absent()
    online = (
        AgentAvailability.objects.filter(user_id__in=absent, status=AgentAvailability.Status.ONLINE)
        .select_related("user")
        .order_by("user_id")
    )
    away = []
    for availability in online:
        agent_availability_set(user=availability.user, status=AgentAvailability.Status.AWAY)
        away.append(availability.user_id)
        logger.info("agent %s set away: no CRM tab open", availability.user_id)
    for user_id in absent:
        presence_forget(user_id=user_id)
    return away
