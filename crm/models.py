"""Clients (workspaces) and which users may work in them. Everything a business owns points to a Client."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
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


class ApiToken(TimeStampedModel):
    """A key an integration (n8n, Typebot, an ERP) uses for the REST API, for one client (docs/api.md).

    Only its SHA-256 is stored; the key itself is shown once, when it is created. It acts as its own user (named
    after the token, so notes read "ERP resolved the conversation") with a client's staff view of that client's
    data, limited by its scope: read < send < admin, each including the ones before."""

    class Scope(models.TextChoices):
        READ = "read", _("Read: every list and detail")
        SEND = "send", _("Send: read, plus send messages, assign and resolve conversations")
        ADMIN = "admin", _("Admin: send, plus numbers (connect, reset) and campaigns")

    LEVELS = {Scope.READ: 1, Scope.SEND: 2, Scope.ADMIN: 3}

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=60, help_text=_("Who uses it, e.g. n8n or ERP; shown in notes it leaves."))
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_token", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "name"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} (wcrm_{self.prefix}_…)"

    def allows(self, scope: str) -> bool:
        return self.revoked_at is None and self.LEVELS[self.scope] >= self.LEVELS[scope]


class WebhookEventType(models.TextChoices):
    """What an event webhook may subscribe to (docs/webhooks.md)."""

    MESSAGE_RECEIVED = "message.received", _("Message received")
    MESSAGE_STATUS = "message.status", _("Message status changed")
    CONVERSATION_ASSIGNED = "conversation.assigned", _("Conversation assigned")
    CONVERSATION_RESOLVED = "conversation.resolved", _("Conversation resolved")
    SESSION_STATE = "session.state", _("Session state changed")
    CAMPAIGN_PROGRESS = "campaign.progress", _("Campaign progress")


# The admin's "Send a test event": delivered like any event, but nobody subscribes to it.
WEBHOOK_PING = "ping"
WEBHOOK_DELIVERY_TYPES = [*WebhookEventType.choices, (WEBHOOK_PING, _("Test event"))]


def webhook_events_all() -> list[str]:
    return list(WebhookEventType.values)


def validate_webhook_url(value: str) -> None:
    """http(s) with a host; unlike Django's URLValidator, a host without a dot (`http://n8n:5678/...` inside a
    compose network) is fine."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValidationError(_("Enter a valid URL.")) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValidationError(_("Enter an http:// or https:// URL with a host."))


class WebhookEndpoint(TimeStampedModel):
    """A URL of one client's that receives the events it subscribes to, signed with its own secret
    (docs/webhooks.md). The secret is shown once, when it is created or rotated."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.CharField(
        "URL",
        max_length=500,
        validators=[validate_webhook_url],
        help_text=_(
            "Where events are POSTed. Private and local addresses only with EVENT_WEBHOOK_ALLOW_PRIVATE. Redirects "
            "are not followed."
        ),
    )
    description = models.CharField(max_length=200, blank=True, help_text=_("Who receives it, e.g. n8n or ERP."))
    events = ArrayField(
        models.CharField(max_length=40, choices=WebhookEventType.choices),
        default=webhook_events_all,
        help_text=_("The events sent to this URL."),
    )
    secret = EncryptedTextField(editable=False, help_text=_("Signs every delivery (X-Webhook-Signature)."))
    is_active = models.BooleanField("active", default=True, help_text=_("Inactive: no new events are sent to it."))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "url"]
        verbose_name = _("event webhook")
        verbose_name_plural = _("event webhooks")

    def __str__(self) -> str:
        return self.description or self.url


class WebhookDelivery(TimeStampedModel):
    """One event on its way to one endpoint: the exact body, and how its attempts went. Retried with backoff until
    delivered or given up (docs/webhooks.md)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed (given up)")

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(editable=False, help_text=_("Sent as X-Webhook-Id; the same on every attempt."))
    event_type = models.CharField(max_length=40, choices=WEBHOOK_DELIVERY_TYPES, editable=False)
    # The JSON text as sent, byte for byte (and signed): jsonb would reorder its keys.
    body = models.TextField(editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    # Pending: when it is due. Sending: when the claim of the worker sending it lapses (a killed worker's
    # delivery is sent again after that).
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    # EVENT_WEBHOOK_GIVE_UP_AFTER after the event (or after staff sent it again): a retry due later is not made.
    give_up_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True, editable=False)

    CLIENT_PATH = "endpoint__client"

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="unique_webhook_delivery_event"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class WebhookAttempt(TimeStampedModel):
    """One POST of a delivery: what the receiver answered (or why nothing came back) and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    CLIENT_PATH = "delivery__endpoint__client"

    class Meta:
        ordering = ["delivery", "created_at", "pk"]
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")

    def __str__(self) -> str:
        return f"{self.status_code or self.error}"
