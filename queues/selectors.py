"""Reads about queues, their members and agents' availability (docs/assignment.md), used by the REST API
(docs/api.md). Each answers for a whole page of rows in a fixed number of queries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet

from conversations.models import Conversation
from queues.models import AgentAvailability, Queue, QueueMembership

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from crm.access import Access

OFFLINE = AgentAvailability.Status.OFFLINE


def queue_stats_get(*, queue_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per queue: conversations waiting (pending) and open (assigned), and active members (`waiting`, `open`,
    `members_count`, 0 when none)."""
    stats = {pk: {"waiting": 0, "open": 0, "members_count": 0} for pk in queue_ids}
    for row in (
        Conversation.objects.filter(
            queue_id__in=queue_ids, status__in=(Conversation.Status.PENDING, Conversation.Status.OPEN)
        )
        .order_by()
        .values("queue_id")
        .annotate(
            waiting=Count("pk", filter=Q(status=Conversation.Status.PENDING)),
            open=Count("pk", filter=Q(status=Conversation.Status.OPEN)),
        )
    ):
        stats[row["queue_id"]].update(waiting=row["waiting"], open=row["open"])
    for queue_id, n in (
        QueueMembership.objects.filter(queue_id__in=queue_ids, user__is_active=True)
        .order_by()
        .values_list("queue_id")
        .annotate(n=Count("pk"))
    ):
        stats[queue_id]["members_count"] = n
    return stats


def queue_membership_list(*, queue: Queue) -> QuerySet[QueueMembership]:
    """The queue's active members (agents and supervisors) with their user, by username."""
    return (
        QueueMembership.objects.filter(queue=queue, user__is_active=True)
        .select_related("user")
        .order_by("user__username")
    )


def agent_availability_get(*, user_ids: list[int]) -> dict[int, str]:
    """Each user's availability; offline for those who never set one."""
    found = dict(AgentAvailability.objects.filter(user_id__in=user_ids).values_list("user_id", "status"))
    return {pk: found.get(pk, OFFLINE) for pk in user_ids}


def agent_scope_get(*, access: Access, queue_id: int | None = None) -> tuple[list[int], int | None]:
    """The ids of the queues whose members `access` sees (only `queue_id` among them when given), and the one user
    they are limited to (None: every member).

    Staff and tokens: every queue of their clients. Supervisors: the queues they supervise (the dashboard's rule,
    `Access.watched_agent_queue_ids`). Agents: only themselves, with the queues they work in."""
    queues = access.queues()
    only_user = None
    watched = access.watched_agent_queue_ids()
    if watched:
        queues = queues.filter(pk__in=watched)
    elif watched is not None:
        only_user = access.user.pk
    if queue_id is not None:
        queues = queues.filter(pk=queue_id)
    return list(queues.order_by().values_list("pk", flat=True)), only_user


def agent_list(
    *, queue_ids: list[int], user_id: int | None = None, availability: str | None = None
) -> QuerySet[AbstractBaseUser]:
    """The active users who are members of any of `queue_ids` (only `user_id` when given), by username; with
    `availability`, only those in it (offline includes those who never set one)."""
    users = get_user_model().objects.filter(
        is_active=True, pk__in=QueueMembership.objects.filter(queue_id__in=queue_ids).values("user_id")
    )
    if user_id is not None:
        users = users.filter(pk=user_id)
    if availability:
        chosen = Q(availability__status=availability)
        if availability == OFFLINE:
            chosen |= Q(availability__isnull=True)
        users = users.filter(chosen)
    return users.order_by("username", "pk")


def agent_memberships_get(*, queue_ids: list[int], user_ids: list[int]) -> dict[int, list[QueueMembership]]:
    """For each of `user_ids`, their memberships of `queue_ids` with the queue, by queue name."""
    memberships: dict[int, list[QueueMembership]] = {pk: [] for pk in user_ids}
    for m in (
        QueueMembership.objects.filter(queue_id__in=queue_ids, user_id__in=user_ids)
        .select_related("queue")
        .order_by("queue__name", "pk")
    ):
        memberships[m.user_id].append(m)
    return memberships


def agent_open_counts_get(*, user_ids: list[int], client_ids: frozenset[int] | None) -> dict[int, int]:
    """How many open conversations are assigned to each of `user_ids`, in `client_ids` (None: every client); users
    with none are left out."""
    conversations = Conversation.objects.filter(assigned_to_id__in=user_ids, status=Conversation.Status.OPEN)
    if client_ids is not None:
        conversations = conversations.filter(client_id__in=client_ids)
    return dict(
        conversations.order_by()
        .values_list("assigned_to_id")
        .annotate(n=Count("pk"))
        .values_list("assigned_to_id", "n")
    )
