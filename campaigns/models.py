"""Campaigns, their recipients and their imports (docs/campaigns.md)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import WEEKDAYS, Client, TimeStampedModel


def every_day() -> list[int]:
    return [day for day, _label in WEEKDAYS]


class Campaign(TimeStampedModel):
    """One message to many recipients from one number, sent at the number's pace, at most once each.

    WhatsApp Web and sandbox numbers send `message`, free text with {{variables}} filled from each recipient's
    columns; Cloud API numbers send an approved `template`, each of its {{1}}, {{2}} … filled from
    `template_parameters` (text that may hold {{variables}} too)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="campaigns")
    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    message = models.TextField(
        blank=True,
        help_text="WhatsApp Web and sandbox numbers: the text, with {{variable}} for a column of the recipients' "
        "file (e.g. Hola {{nombre}}) and {{variable|fallback}} for a value used when the column is empty.",
    )
    template = models.ForeignKey(
        "conversations.MessageTemplate",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        help_text="Cloud API numbers: the approved template to send.",
    )
    template_parameters = models.JSONField(
        default=list,
        blank=True,
        help_text='Cloud API numbers: one value per placeholder of the template, in order, e.g. ["{{nombre}}", '
        '"{{pedido}}"]; each may mix text and {{variables}}.',
    )
    start_at = models.DateTimeField(null=True, blank=True, help_text="Blank: as soon as it is started.")
    quiet_from = models.TimeField(
        null=True, blank=True, help_text="No sends from this time … (the number's time zone). Blank: no quiet hours."
    )
    quiet_until = models.TimeField(null=True, blank=True, help_text="… until this time (may cross midnight).")
    send_days = ArrayField(
        models.PositiveSmallIntegerField(choices=WEEKDAYS),
        default=every_day,
        blank=True,
        help_text="Days on which it may send (the number's time zone).",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.CharField(max_length=500, blank=True, help_text="Why it paused or stopped.")
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "start_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        """Message and recipients may change only before it starts."""
        return self.status in (self.Status.DRAFT, self.Status.SCHEDULED)

    def clean(self) -> None:
        from campaigns.rendering import TemplateSyntaxProblem, variables_of

        errors: dict[str, str] = {}
        number = self.number if self.number_id else None
        if number is not None and self.client_id and number.client_id != self.client_id:
            errors["number"] = "The number belongs to another client."
        if self.template_id and self.client_id and self.template.client_id != self.client_id:
            errors["template"] = "The template belongs to another client."
        if (self.quiet_from is None) != (self.quiet_until is None):
            errors["quiet_until"] = "Give both ends of the quiet hours, or neither."
        elif self.quiet_from is not None and self.quiet_from == self.quiet_until:
            errors["quiet_until"] = "Quiet hours that start and end at the same time would never send."
        if self.send_days is not None and not self.send_days:
            errors["send_days"] = "Choose at least one day on which it may send."
        if number is not None and number.engine == "cloud":
            if self.template_id is None:
                errors["template"] = "A Cloud API number sends campaigns as an approved template: choose one."
            elif self.template.number_id and self.template.number_id != number.pk:
                errors["template"] = "That template is approved for another number."
            if self.message.strip():
                errors["message"] = "A Cloud API number sends the template: leave the free text empty."
        elif number is not None:
            if self.template_id is not None:
                errors["template"] = "Only Cloud API numbers send templates: write the message instead."
            if not self.message.strip():
                errors["message"] = "Write the message to send."
        if self.template_id is not None and "template" not in errors:
            parameters = self.template_parameters
            wanted = len(self.template.placeholders)
            if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
                errors["template_parameters"] = 'A list of texts, one per placeholder, e.g. ["{{nombre}}"].'
            elif len(parameters) != wanted:
                errors["template_parameters"] = (
                    f"The template has {wanted} placeholder(s); give exactly {wanted} value(s), got {len(parameters)}."
                )
        for field, texts in (("message", [self.message]), ("template_parameters", self.template_parameters)):
            if field in errors or not isinstance(texts, list):
                continue
            try:
                for text in texts:
                    if isinstance(text, str):
                        variables_of(text)
            except TemplateSyntaxProblem as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)


class Recipient(TimeStampedModel):
    """One contact of a campaign and what happened to its message. Unique per (campaign, contact)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        REPLIED = "replied", _("Replied")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")
        UNKNOWN = "unknown", _("Unknown (interrupted while sending)")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    contact = models.ForeignKey("conversations.Contact", on_delete=models.PROTECT, related_name="campaign_recipients")
    phone = models.CharField("phone (E.164)", max_length=32, blank=True)
    variables = models.JSONField(default=dict, blank=True, help_text="The row's columns, by lower-case name.")
    line = models.PositiveIntegerField(null=True, blank=True, help_text="Line of the imported file.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.CharField(max_length=500, blank=True)
    message = models.OneToOneField(
        "conversations.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_recipient",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "campaign__client"

    class Meta:
        ordering = ["campaign_id", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="unique_campaign_contact")]
        indexes = [
            # Claims: a campaign's pending rows in id order; progress: counts by status.
            models.Index(fields=["campaign", "status", "id"], name="recipient_campaign_status"),
            # The failure-spike check reads a campaign's latest sends.
            models.Index(fields=["campaign", "sent_at"], name="recipient_campaign_sent"),
            # The sweeper's scan of claimed rows.
            models.Index(fields=["claimed_at"], name="recipient_sending", condition=Q(status="sending")),
            # Statuses still moving (sent → delivered → read → replied), refreshed from their messages.
            models.Index(
                fields=["campaign", "message"],
                name="recipient_in_flight",
                condition=Q(status__in=["sending", "sent", "delivered", "read"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.phone or self.contact_id} in {self.campaign_id}: {self.status}"


class RecipientImport(TimeStampedModel):
    """One file (or contacts filter) imported into a campaign, with every rejected row and why: kept, so what an
    import refused is never lost with the page that showed it."""

    class Mode(models.TextChoices):
        ALL_OR_NOTHING = "all_or_nothing", _("All or nothing: any bad row rejects the whole file")
        KEEP_GOOD = "keep_good", _("Keep the good rows and list the bad ones")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="imports")
    source = models.CharField(max_length=300, help_text="File name, or the contacts filter used.")
    mode = models.CharField(max_length=20, choices=Mode.choices)
    applied = models.BooleanField(help_text="Whether its rows were added (an all-or-nothing import with errors: no).")
    rows = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    merged = models.PositiveIntegerField(default=0, help_text="Rows for a contact already in the campaign.")
    skipped = models.PositiveIntegerField(default=0, help_text="Opted-out contacts, added as skipped.")
    rejected = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text='[{"line": 7, "reason": "…"}, …]')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    CLIENT_PATH = "campaign__client"

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "recipient import"

    def __str__(self) -> str:
        return f"{self.source}: {self.added} added, {self.rejected} rejected"
