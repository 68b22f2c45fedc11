"""Queues and the agents who work them (docs/assignment.md)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from crm.models import Client, TimeStampedModel


class Queue(TimeStampedModel):
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="queues")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "name"]
        constraints = [models.UniqueConstraint(fields=["client", "name"], name="unique_queue_name_per_client")]

    def __str__(self) -> str:
        return self.name


class QueueMembership(TimeStampedModel):
    class Role(models.TextChoices):
        AGENT = "agent", "Agent"
        SUPERVISOR = "supervisor", "Supervisor"

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    capacity = models.PositiveSmallIntegerField(
        default=5, help_text="Most open conversations of this queue assigned to this member at once; 0 takes none."
    )

    CLIENT_PATH = "queue__client"

    class Meta:
        ordering = ["queue__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["queue", "user"], name="unique_queue_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.queue} ({self.get_role_display()})"

    def clean(self) -> None:
        # Agents belong to queues of their own client.
        if self.queue_id and self.user_id and not self.user.is_superuser:
            if not self.user.client_memberships.filter(client_id=self.queue.client_id).exists():
                raise ValidationError(
                    {"user": f"{self.user} is not a member of client “{self.queue.client}”; add the client first."}
                )


class AgentAvailability(TimeStampedModel):
    """Whether an agent takes new conversations now. The assignment policy reads it (docs/assignment.md)."""

    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="availability")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Ties between equally loaded agents go to the one who waited longest for a conversation.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user__username"]
        verbose_name = "agent availability"
        verbose_name_plural = "agent availability"

    def __str__(self) -> str:
        return f"{self.user}: {self.get_status_display()}"


class QuickReply(TimeStampedModel):
    """A canned answer of one queue: agents type `/shortcut` in the reply box to insert its text."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="quick_replies")
    shortcut = models.SlugField(max_length=40, help_text="Typed after a slash: /hours inserts this reply.")
    text = models.TextField(max_length=4096)

    CLIENT_PATH = "queue__client"

    class Meta:
        ordering = ["queue__name", "shortcut"]
        constraints = [models.UniqueConstraint(fields=["queue", "shortcut"], name="unique_quick_reply_shortcut")]
        verbose_name_plural = "quick replies"

    def __str__(self) -> str:
        return f"/{self.shortcut}"
