"""Contacts, conversations and messages (docs/inbound.md); AI assistant settings and activity (docs/ai.md)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Concat, Upper
from django.utils.translation import gettext_lazy as _

from crm.models import Client, TimeStampedModel
from sessions.models import validate_phone_number


class Contact(TimeStampedModel):
    """A customer of one client. The same phone under two clients is two contacts: nothing crosses clients.

    One person, one contact: `identity_key` merges the national variants of a number (Brazil's 9th digit,
    Mexico's 521/52, Argentina's 549/54; see conversations/identity.py), and `bsuid` (Meta's business-scoped
    user id) identifies customers whose payloads carry no phone number.
    """

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="contacts")
    phone = models.CharField("phone (E.164)", max_length=32, blank=True, validators=[validate_phone_number])
    identity_key = models.CharField(max_length=32, blank=True, editable=False)
    wa_id = models.CharField("WhatsApp id", max_length=64, blank=True)
    bsuid = models.CharField("business-scoped user id", max_length=160, blank=True)
    username = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=200, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "name", "phone"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "identity_key"], condition=~Q(identity_key=""), name="unique_contact_identity"
            ),
            models.UniqueConstraint(fields=["client", "bsuid"], condition=~Q(bsuid=""), name="unique_contact_bsuid"),
            models.CheckConstraint(condition=~Q(identity_key="") | ~Q(bsuid=""), name="contact_has_phone_or_bsuid"),
        ]
        indexes = [
            # Inbox search by name, username or phone digits (pg_trgm): one index on the three together, so a
            # search is one bitmap scan. crm.inbox.CONTACT_SEARCH_TEXT must stay this very expression.
            GinIndex(
                OpClass(Upper(Concat("name", Value("\n"), "username", Value("\n"), "phone")), name="gin_trgm_ops"),
                name="contact_search_trgm",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.phone or self.username or self.bsuid

    def set_phone(self, value: str) -> None:
        """Store `value` in E.164 with its identity key. Raises PhoneIdentityError for what is not a phone."""
        from conversations.identity import phone_identity

        identity = phone_identity(value)
        self.phone, self.identity_key = identity.e164, identity.key

    def clean(self) -> None:
        if not self.phone and not self.bsuid:
            raise ValidationError("A contact needs a phone number or a business-scoped user id.")
        if self.phone:
            from conversations.identity import PhoneIdentityError

            try:
                self.set_phone(self.phone)
            except PhoneIdentityError as exc:
                raise ValidationError({"phone": str(exc)}) from None


class Conversation(TimeStampedModel):
    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting in queue")
        OPEN = "open", _("Open (assigned)")
        RESOLVED = "resolved", _("Resolved")
        # The AI assistant answers it (docs/ai.md): in its queue, nobody's, not handed out until it hands off.
        AI = "ai", _("AI answering")

    class AIStopReason(models.TextChoices):
        """Why the AI assistant stopped answering a conversation (blank: it never did)."""

        AGENT_TOOK = "agent_took", _("An agent took the conversation")
        AGENT_REPLIED = "agent_replied", _("An agent replied")
        KEYWORD = "keyword", _("The customer asked for a person")
        MODEL = "model", _("The assistant asked for a person")
        CAP = "cap", _("Most AI replies for one conversation reached")
        FAILURE = "failure", _("The AI service failed")
        OFF = "off", _("AI turned off or outside its hours")

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="conversations")
    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.PROTECT, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="conversations")
    queue = models.ForeignKey(
        "queues.Queue", on_delete=models.PROTECT, null=True, blank=True, related_name="conversations"
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_conversations",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Since when it waits for an agent (pending conversations are handed out oldest first).
    waiting_since = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True, help_text="Hidden from the inbox until then.")
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True, help_text="Opens the 24-hour reply window.")
    # Customer messages since its agent last opened it (or anyone answered): the inbox's unread badge.
    unread_count = models.PositiveIntegerField(default=0)
    # The AI assistant (docs/ai.md): why it stopped (blank: it may answer), its replies since it (re)started,
    # and the newest customer message it has answered or decided about (one answer per burst, never two).
    # (Database defaults too: bulk loads that write rows in SQL need not know these columns.)
    ai_stop_reason = models.CharField(max_length=16, choices=AIStopReason.choices, blank=True, db_default="")
    ai_stopped_at = models.DateTimeField(null=True, blank=True)
    ai_replies = models.PositiveIntegerField(default=0, db_default=0)
    ai_answered_message_id = models.BigIntegerField(null=True, blank=True, editable=False)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            # At most one open conversation per (number, contact); a resolved one stays as history.
            models.UniqueConstraint(
                fields=["number", "contact"],
                condition=~Q(status="resolved"),
                name="one_open_conversation_per_number_contact",
            ),
        ]
        indexes = [
            models.Index(fields=["queue", "status", "last_message_at"]),
            models.Index(fields=["queue", "status", "waiting_since"]),
            models.Index(fields=["assigned_to", "status", "last_message_at"]),
            models.Index(fields=["client", "status", "last_message_at"]),
            # The All tab: newest activity first, read in index order and stopped after a page.
            models.Index(fields=["client", "-last_message_at", "-id"], name="conversation_client_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} via {self.number.alias}"

    def clean(self) -> None:
        errors = {}
        for field in ("number", "contact", "queue"):
            related = getattr(self, field, None) if getattr(self, f"{field}_id") else None
            if related is not None and self.client_id and related.client_id != self.client_id:
                errors[field] = f"The {field} belongs to another client."
        if errors:
            raise ValidationError(errors)


class UnroutedConversation(Conversation):
    """Open conversations whose number had no queue: stored, never dropped, listed in admin until routed."""

    class Meta:
        proxy = True
        verbose_name = "unrouted conversation"


class Message(TimeStampedModel):
    class Direction(models.TextChoices):
        INBOUND = "in", _("Inbound")
        OUTBOUND = "out", _("Outbound")
        INTERNAL = "int", _("Internal")  # notes and notices: shown to agents, never sent to the customer

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        VIDEO = "video", _("Video")
        AUDIO = "audio", _("Audio")
        VOICE = "voice", _("Voice note")
        DOCUMENT = "document", _("Document")
        STICKER = "sticker", _("Sticker")
        LOCATION = "location", _("Location")
        CONTACTS = "contacts", _("Contacts")
        INTERACTIVE = "interactive", _("Interactive reply")
        BUTTON = "button", _("Template button reply")
        REACTION = "reaction", _("Reaction")
        ORDER = "order", _("Order")
        TEMPLATE = "template", _("Template")
        SYSTEM = "system", _("System notice")
        NOTE = "note", _("Internal note")
        UNSUPPORTED = "unsupported", _("Unsupported")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")  # inbound
        PENDING = "pending", _("Queued")  # outbound, written, not yet handed to the provider
        SENDING = "sending", _("Sending")  # provider call in flight
        ACCEPTED = "accepted", _("Accepted")  # the provider returned its id
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        PLAYED = "played", _("Played")
        FAILED = "failed", _("Failed")
        UNKNOWN = "unknown", _("Unknown (interrupted while sending)")

    class Origin(models.TextChoices):
        """Who wrote an outbound message (blank for inbound ones)."""

        AGENT = "agent", "Agent"
        AI = "ai", "AI assistant"
        CAMPAIGN = "campaign", "Campaign"
        API = "api", "API integration"
        SYSTEM = "system", "System"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from the conversation so provider ids are unique per number in the database itself.
    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    origin = models.CharField(max_length=16, choices=Origin.choices, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=128, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=500, blank=True)
    status_at = models.DateTimeField(null=True, blank=True, help_text="When the provider reported the status.")
    payload = models.JSONField(default=dict, blank=True, help_text="The provider's raw message.")
    media_id = models.CharField(max_length=128, blank=True)
    media_mime_type = models.CharField(max_length=100, blank=True)
    media_filename = models.CharField(max_length=255, blank=True)
    quoted = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies")
    # The quoted (or reacted-to) message's provider id, kept even when that message is not stored here.
    quoted_provider_message_id = models.CharField(max_length=128, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_messages"
    )
    provider_timestamp = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "conversation__client"

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # A conversation's history, oldest first (the conversation page reads its newest page backwards).
            models.Index(fields=["conversation", "created_at", "id"], name="message_conversation_history"),
            # Inbox search by text: Django's icontains is UPPER(body) LIKE UPPER('%word%'), answered through
            # trigrams of UPPER(body) (pg_trgm, migration 0010).
            GinIndex(OpClass(Upper("body"), name="gin_trgm_ops"), name="message_body_upper_trgm"),
            # The outbound sweeper's scan: pending and sending messages only.
            models.Index(
                fields=["status", "status_at"],
                name="message_outbound_inflight",
                condition=Q(status__in=["pending", "sending"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["number", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="unique_provider_message_id_per_number",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.get_kind_display()} #{self.pk}"

    def clean(self) -> None:
        if self.conversation_id and self.number_id and self.conversation.number_id != self.number_id:
            raise ValidationError({"number": "A message's number is its conversation's number."})


class WebhookEvent(TimeStampedModel):
    """One webhook body exactly as the provider delivered it, stored before it is acknowledged (docs/inbound.md).

    Processing reads it from here, so a crash after the 200 loses nothing: the sweeper hands pending events to
    a worker again, and processing is idempotent on provider message ids.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", _("Failed")

    client = models.ForeignKey(Client, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    body = models.JSONField()
    phone_number_ids = models.JSONField(default=list)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Webhook event {self.pk} ({self.get_status_display()})"


class UnmatchedStatus(TimeStampedModel):
    """A delivery status that arrived before its outbound message's provider id was recorded.

    The outbound service applies it when it records the id; the sweeper retries and eventually expires it.
    """

    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.CASCADE, related_name="+")
    provider_message_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    status_at = models.DateTimeField()
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    CLIENT_PATH = "number__client"

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["number", "provider_message_id"])]
        constraints = [
            # the same status of the same message is one fact, however often it is delivered or processed
            models.UniqueConstraint(fields=["number", "provider_message_id", "status"], name="unmatched_status_once"),
        ]
        verbose_name = "unmatched status"
        verbose_name_plural = "unmatched statuses"

    def __str__(self) -> str:
        return f"{self.status} for {self.provider_message_id}"


class MessageTemplate(TimeStampedModel):
    """A WhatsApp message template Meta approved for a client's Cloud API numbers, as agents may send it.

    The body is the template's text with Meta's positional placeholders ({{1}}, {{2}}, ...); the agent fills
    one value per placeholder. Offered when a conversation's 24-hour window is closed.
    """

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="message_templates")
    number = models.ForeignKey(
        "wa_sessions.WhatsAppNumber",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="message_templates",
        help_text="Only for this number; blank: every Cloud API number of the client (same WhatsApp account).",
    )
    name = models.CharField(max_length=512, help_text="The template's name at Meta, e.g. order_update.")
    language = models.CharField(max_length=15, default="es", help_text="Meta's language code, e.g. es, es_MX, en_US.")
    body = models.TextField(help_text="The body text as approved, with {{1}}, {{2}} … where values go.")
    is_active = models.BooleanField(default=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "name", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "number", "name", "language"],
                nulls_distinct=False,
                name="unique_message_template",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"

    @property
    def placeholders(self) -> list[int]:
        """The positional placeholders of the body, in order: [1, 2] for "Hi {{1}}, order {{2}}"."""
        import re

        return sorted({int(n) for n in re.findall(r"\{\{\s*(\d+)\s*\}\}", self.body)})

    def clean(self) -> None:
        if self.number_id and self.client_id and self.number.client_id != self.client_id:
            raise ValidationError({"number": "The number belongs to another client."})
        found = self.placeholders
        if found != list(range(1, len(found) + 1)):
            raise ValidationError({"body": f"Placeholders must be {{{{1}}}}, {{{{2}}}} … without gaps; found {found}."})


from conversations.models.ai import AIActivity, AISettings  # noqa: E402  (they refer to the models above)

__all__ = [
    "AIActivity",
    "AISettings",
    "Contact",
    "Conversation",
    "Message",
    "MessageTemplate",
    "UnmatchedStatus",
    "UnroutedConversation",
    "WebhookEvent",
]
