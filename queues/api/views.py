"""Queues and agents over the REST API, read only (docs/api.md, docs/assignment.md), with the CRM's rules
(crm/access.py): staff and tokens see every queue of their clients; supervisors and agents the queues they are
members of. Agents: staff and tokens see the members of every queue, supervisors those of the queues they
supervise (the dashboard's rule, `Access.watched_agent_queue_ids`), an agent only themselves."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.models import Conversation
from crm.access import Access
from crm.api.auth import api_access
from crm.api.pagination import ApiPagination
from queues.models import AgentAvailability, Queue, QueueMembership

TAGS = ["queues"]
ROLE_HELP = "agent or supervisor."
AVAILABILITY_HELP = "online, away or offline (takes new conversations only when online)."
OFFLINE = AgentAvailability.Status.OFFLINE


def _name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _availability(user_ids: list[int]) -> dict[int, str]:
    """Each user's availability; offline for those who never set one."""
    found = dict(AgentAvailability.objects.filter(user_id__in=user_ids).values_list("user_id", "status"))
    return {pk: found.get(pk, OFFLINE) for pk in user_ids}


def _queue_stats(queue_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per queue: conversations waiting (pending) and open (assigned), and active members."""
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


def _queue_data(queue: Queue, stats: dict[str, int]) -> dict:
    return {
        "id": queue.pk,
        "client": queue.client_id,
        "name": queue.name,
        "description": queue.description,
        "is_active": queue.is_active,
        **stats,
    }


class QueueListApi(APIView):
    """The queues the caller works in or oversees (every queue of their clients for staff and tokens)."""

    pagination_class = ApiPagination

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        client = serializers.IntegerField(help_text="The client's id.")
        name = serializers.CharField()
        description = serializers.CharField()
        is_active = serializers.BooleanField()
        waiting = serializers.IntegerField(help_text="Conversations waiting for an agent (pending).")
        open = serializers.IntegerField(help_text="Conversations assigned to an agent and not resolved.")
        members_count = serializers.IntegerField(help_text="Active members (agents and supervisors).")

    @extend_schema(responses=OutputSerializer(many=True), operation_id="queues_list", tags=TAGS)
    def get(self, request: Request) -> Response:
        queues = api_access(request).queues().order_by("name", "pk")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queues, request, view=self)
        stats = _queue_stats([q.pk for q in page])
        data = [_queue_data(q, stats[q.pk]) for q in page]
        return paginator.get_paginated_response(self.OutputSerializer(data, many=True).data)


class QueueDetailApi(APIView):
    """One queue the caller may see, with its active members and their availability."""

    class OutputSerializer(QueueListApi.OutputSerializer):
        class MemberSerializer(serializers.Serializer):
            class UserSerializer(serializers.Serializer):
                id = serializers.IntegerField()
                username = serializers.CharField()
                name = serializers.CharField(help_text="Full name, or the username when there is none.")

            user = UserSerializer()
            role = serializers.CharField(help_text=ROLE_HELP)
            capacity = serializers.IntegerField(help_text="Most open conversations of this queue at once; 0: none.")
            availability = serializers.CharField(help_text=AVAILABILITY_HELP)

        members = MemberSerializer(many=True)

    @extend_schema(responses=OutputSerializer, operation_id="queues_retrieve", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        queue = api_access(request).queues().filter(pk=pk).first()
        if queue is None:
            raise NotFound("No such queue.")
        memberships = list(
            QueueMembership.objects.filter(queue=queue, user__is_active=True)
            .select_related("user")
            .order_by("user__username")
        )
        availability = _availability([m.user_id for m in memberships])
        data = {
            **_queue_data(queue, _queue_stats([queue.pk])[queue.pk]),
            "members": [
                {
                    "user": {"id": m.user_id, "username": m.user.get_username(), "name": _name(m.user)},
                    "role": m.role,
                    "capacity": m.capacity,
                    "availability": availability[m.user_id],
                }
                for m in memberships
            ],
        }
        return Response(self.OutputSerializer(data).data)


# --- agents -------------------------------------------------------------------------------------------------


def _agent_scope(access: Access) -> tuple[QuerySet[Queue], int | None]:
    """The queues whose members the caller sees, and the one user they are limited to (None: every member).

    Staff and tokens: every queue of their clients. Supervisors: the queues they supervise (the dashboard's
    rule). Agents: only themselves, with the queues they work in."""
    queues = access.queues()
    watched = access.watched_agent_queue_ids()
    if watched is None:
        return queues, None
    if watched:
        return queues.filter(pk__in=watched), None
    return queues, access.user.pk


class AgentListApi(APIView):
    """The members of the queues the caller may watch, with their availability, queues and open conversations."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        queue = serializers.IntegerField(required=False, min_value=1, help_text="Only members of this queue.")
        availability = serializers.ChoiceField(
            choices=AgentAvailability.Status.values, required=False, help_text=AVAILABILITY_HELP
        )

    class OutputSerializer(serializers.Serializer):
        class QueueSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            name = serializers.CharField()
            role = serializers.CharField(help_text=ROLE_HELP)
            capacity = serializers.IntegerField(help_text="Most open conversations of this queue at once; 0: none.")

        id = serializers.IntegerField()
        username = serializers.CharField()
        name = serializers.CharField(help_text="Full name, or the username when there is none.")
        availability = serializers.CharField(help_text=AVAILABILITY_HELP)
        queues = QueueSerializer(many=True, help_text="The queues (among those the caller sees) they belong to.")
        open_conversations = serializers.IntegerField(
            help_text="Open conversations assigned to them, in the caller's clients."
        )

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        operation_id="agents_list",
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        access = api_access(request)
        queues, only_user = _agent_scope(access)
        if "queue" in filters.validated_data:
            queues = queues.filter(pk=filters.validated_data["queue"])
        queue_ids = list(queues.order_by().values_list("pk", flat=True))
        memberships = QueueMembership.objects.filter(queue_id__in=queue_ids)
        users = get_user_model().objects.filter(is_active=True, pk__in=memberships.values("user_id"))
        if only_user is not None:
            users = users.filter(pk=only_user)
        wanted = filters.validated_data.get("availability")
        if wanted:
            chosen = Q(availability__status=wanted)
            if wanted == OFFLINE:
                chosen |= Q(availability__isnull=True)
            users = users.filter(chosen)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(users.order_by("username", "pk"), request, view=self)
        user_ids = [u.pk for u in page]
        availability = _availability(user_ids)
        queues_of: dict[int, list[dict]] = {pk: [] for pk in user_ids}
        for m in memberships.filter(user_id__in=user_ids).select_related("queue").order_by("queue__name", "pk"):
            queues_of[m.user_id].append(
                {"id": m.queue_id, "name": m.queue.name, "role": m.role, "capacity": m.capacity}
            )
        open_conversations = Conversation.objects.filter(assigned_to_id__in=user_ids, status=Conversation.Status.OPEN)
        if access.client_ids is not None:
            open_conversations = open_conversations.filter(client_id__in=access.client_ids)
        open_counts = dict(
            open_conversations.order_by()
            .values_list("assigned_to_id")
            .annotate(n=Count("pk"))
            .values_list("assigned_to_id", "n")
        )
        data = [
            {
                "id": user.pk,
                "username": user.get_username(),
                "name": _name(user),
                "availability": availability[user.pk],
                "queues": queues_of[user.pk],
                "open_conversations": open_counts.get(user.pk, 0),
            }
            for user in page
        ]
        return paginator.get_paginated_response(self.OutputSerializer(data, many=True).data)
