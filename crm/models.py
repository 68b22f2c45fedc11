"""Clients (workspaces) and which users may work in them. Everything a business owns points to a Client."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.fields import EncryptedTextField

# ISO weekdays (Monday 1 … Sunday 7), for schedules kept in a number's time zone (campaigns, AI hours).
WEEKDAYS = [
    (1, _("Monday")),
    (2, _("Tuesday")),
    (3, _("Wednesday")),
    (4, _("Thursday")),
    (5, _("Friday")),
    (6, _("Saturday")),
    (7, _("Sunday")),
]


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Client(TimeStampedModel):
    """A business or business unit. Numbers, queues, contacts, conversations and campaigns belong to one."""

    DEFAULT_SLUG = "default"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True, help_text="Short id used in the connection registry.")
    is_default = models.BooleanField(
        default=False, help_text="Where numbers without an explicit client go. Exactly one client is the default."
    )
    is_active = models.BooleanField(default=True)
    meta_app_secret = EncryptedTextField(
        "Meta app secret",
        blank=True,
        help_text="Only when this client's numbers belong to its own Meta app: webhooks for them are verified with "
        "this secret. Blank uses WHATSAPP_APP_SECRET. Stored encrypted.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_client"),
        ]

    def __str__(self) -> str:
        return self.name


class ClientMembership(TimeStampedModel):
    """A non-superuser sees and changes only the data of clients they are a member of."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_memberships")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="memberships")

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "client"], name="unique_client_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.client}"
