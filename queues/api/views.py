"""Queues and agents over the REST API, read only (docs/api.md, docs/assignment.md), with the CRM's rules
(crm/access.py): staff and tokens see every queue of their clients; supervisors and agents the queues they are
members of. Agents: staff and tokens see the members of every queue, supervisors those of the queues they
supervise (the dashboard's rule, `Access.watched_agent_queue_ids`), an agent only themselves."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.auth import api_access
from crm.api.pagination import ApiPagination, paginated_response
from queues.models import AgentAvailability, Queue
from queues.selectors import (
    agent_availability_get,
    agent_list,
    agent_memberships_get,
    agent_open_counts_get,
    agent_scope_get,
    queue_membership_list,
    queue_stats_get,
)

TAGS = ["queues"]
ROLE_HELP = "agent or supervisor."
AVAILABILITY_HELP = "online, away or offline (takes new conversations only when online)."


def _name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


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

        def rows(page: list) -> list[dict]:
            stats = queue_stats_get(queue_ids=[q.pk for q in page])
            return [_queue_data(q, stats[q.pk]) for q in page]

        return paginated_response(request, self, queues, self.OutputSerializer, rows=rows)


class QueueDetailApi(APIView):
    """One queue the caller may see, with its active members and their availability (to staff, tokens and the
    queue's supervisors, as the CRM's dashboard shows them; an agent sees the list empty)."""

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
        access = api_access(request)
        queue = access.queues().filter(pk=pk).first()
        if queue is None:
            raise NotFound("No such queue.")
        oversees = access.is_staff or queue.pk in access.supervised_queue_ids
        memberships = list(queue_membership_list(queue=queue)) if oversees else []
        availability = agent_availability_get(user_ids=[m.user_id for m in memberships])
        data = {
            **_queue_data(queue, queue_stats_get(queue_ids=[queue.pk])[queue.pk]),
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
        queue_ids, only_user = agent_scope_get(access=access, queue_id=filters.validated_data.get("queue"))
        users = agent_list(
            queue_ids=queue_ids, user_id=only_user, availability=filters.validated_data.get("availability")
        )

        def rows(page: list) -> list[dict]:
            user_ids = [u.pk for u in page]
            availability = agent_availability_get(user_ids=user_ids)
            memberships = agent_memberships_get(queue_ids=queue_ids, user_ids=user_ids)
            open_counts = agent_open_counts_get(user_ids=user_ids, client_ids=access.client_ids)
            return [
                {
                    "id": user.pk,
                    "username": user.get_username(),
                    "name": _name(user),
                    "availability": availability[user.pk],
                    "queues": [
                        {"id": m.queue_id, "name": m.queue.name, "role": m.role, "capacity": m.capacity}
                        for m in memberships[user.pk]
                    ],
                    "open_conversations": open_counts.get(user.pk, 0),
                }
                for user in page
            ]

        return paginated_response(request, self, users, self.OutputSerializer, rows=rows)
