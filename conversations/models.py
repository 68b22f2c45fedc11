"""Contacts, conversations and messages (docs/inbound.md)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from crm.models import Client, TimeStampedModel
from sessions.models import validate_phone_number


class Contact(TimeStampedModel):
    """A customer of one client. The same phone under two clients is two contacts: nothing crosses clients."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="contacts")
    phone = models.CharField("phone (E.164)", max_length=32, validators=[validate_phone_number])
    wa_id = models.CharField("WhatsApp id", max_length=64, blank=True)
    name = models.CharField(max_length=200, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "name", "phone"]
        constraints = [models.UniqueConstraint(fields=["client", "phone"], name="unique_contact_phone_per_client")]

    def __str__(self) -> str:
        return self.name or self.phone


class Conversation(TimeStampedModel):
    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting in queue"
        ASSIGNED = "assigned", "Assigned"
        SNOOZED = "snoozed", "Snoozed"
        RESOLVED = "resolved", "Resolved"

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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True, help_text="Opens the 24-hour reply window.")

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
        indexes = [models.Index(fields=["queue", "status", "last_message_at"])]

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
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"
        VOICE = "voice", "Voice note"
        DOCUMENT = "document", "Document"
        STICKER = "sticker", "Sticker"
        LOCATION = "location", "Location"
        CONTACTS = "contacts", "Contacts"
        INTERACTIVE = "interactive", "Interactive reply"
        BUTTON = "button", "Template button reply"
        REACTION = "reaction", "Reaction"
        ORDER = "order", "Order"
        TEMPLATE = "template", "Template"
        NOTE = "note", "Internal note"
        UNSUPPORTED = "unsupported", "Unsupported"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from the conversation so provider ids are unique per number in the database itself.
    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=128, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="The provider's raw message.")
    quoted = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies")
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_messages"
    )
    provider_timestamp = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "conversation__client"

    class Meta:
        ordering = ["created_at", "id"]
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
