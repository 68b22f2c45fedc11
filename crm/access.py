"""Who may see and do what in the agent-facing CRM (docs/crm.md). Every page, action, media link and WebSocket
group asks here, so the rules are the same everywhere.

- Staff (superusers and the Staff group) see every conversation of their clients and act on any.
- Supervisors (a queue membership with the supervisor role) see the conversations of their queues and the
  agents of those queues, and act on any of those conversations.
- Agents see the conversations of their queues and those assigned to them; they act on their own and on
  unassigned ones of their queues (take it, answer it), not on a colleague's.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from conversations.models import Conversation
from crm.roles import STAFF
from crm.selectors import client_ids_visible_to
from queues.models import Queue, QueueMembership


@dataclass(frozen=True)
class Access:
    user: AbstractBaseUser
    is_staff: bool
    client_ids: frozenset[int] | None  # None: every client (superusers)
    queue_ids: frozenset[int]  # queues the user is a member of (agent or supervisor)
    supervised_queue_ids: frozenset[int]

    @property
    def is_supervisor(self) -> bool:
        return bool(self.supervised_queue_ids)

    @property
    def sees_all_tab(self) -> bool:
        return self.is_staff or self.is_supervisor

    @property
    def sees_dashboard(self) -> bool:
        return self.is_staff or self.is_supervisor

    # -- conversations -------------------------------------------------------------------------------------
    def conversations(self, queryset: QuerySet[Conversation] | None = None) -> QuerySet[Conversation]:
        """The conversations the user may see."""
        queryset = Conversation.objects.all() if queryset is None else queryset
        if self.client_ids is not None:
            queryset = queryset.filter(client_id__in=self.client_ids)
        if self.is_staff:
            return queryset
        return queryset.filter(Q(queue_id__in=self.queue_ids) | Q(assigned_to_id=self.user.pk))

    def can_see(self, conversation: Conversation) -> bool:
        if self.client_ids is not None and conversation.client_id not in self.client_ids:
            return False
        return self.is_staff or conversation.queue_id in self.queue_ids or conversation.assigned_to_id == self.user.pk

    def can_act(self, conversation: Conversation) -> bool:
        """Answer, note, resolve, reopen, snooze, take, transfer."""
        if not self.can_see(conversation):
            return False
        return self.supervises(conversation) or conversation.assigned_to_id in (None, self.user.pk)

    def supervises(self, conversation: Conversation) -> bool:
        """Whether the user acts over the agents of this conversation (staff, or a supervisor of its queue): they
        may act on it whoever has it; an agent only while it is theirs or nobody's (re-checked under lock)."""
        return self.is_staff or conversation.queue_id in self.supervised_queue_ids

    # -- queues and agents ---------------------------------------------------------------------------------
    def queues(self) -> QuerySet[Queue]:
        """Queues the user works in or oversees (filters, dashboard, live groups)."""
        queryset = Queue.objects.filter(is_active=True)
        if self.client_ids is not None:
            queryset = queryset.filter(client_id__in=self.client_ids)
        if self.is_staff:
            return queryset
        return queryset.filter(pk__in=self.queue_ids)

    def transfer_queues(self, conversation: Conversation) -> QuerySet[Queue]:
        """Where the user may send a conversation: any active queue of its client."""
        return Queue.objects.filter(client_id=conversation.client_id, is_active=True)

    def watched_agent_queue_ids(self) -> frozenset[int] | None:
        """Whose agents the user sees on the dashboard: None for every queue of their clients."""
        return None if self.is_staff else self.supervised_queue_ids


def access_for(user: AbstractBaseUser) -> Access:
    if not user.is_authenticated or not user.is_active:
        return Access(user, False, frozenset(), frozenset(), frozenset())
    client_ids = client_ids_visible_to(user)
    is_staff = user.is_superuser or user.groups.filter(name=STAFF).exists()
    memberships = list(QueueMembership.objects.filter(user=user).values_list("queue_id", "role"))
    return Access(
        user=user,
        is_staff=is_staff,
        client_ids=None if client_ids is None else frozenset(client_ids),
        queue_ids=frozenset(q for q, _ in memberships),
        supervised_queue_ids=frozenset(q for q, role in memberships if role == QueueMembership.Role.SUPERVISOR),
    )


def request_access(request: HttpRequest) -> Access:
    """The user's access, worked out once per request."""
    access = getattr(request, "_crm_access", None)
    if access is None:
        access = access_for(request.user)
        request._crm_access = access
    return access
