"""The AI assistant's settings (per number, per queue) and what it did (docs/ai.md)."""

from __future__ import annotations

from datetime import time

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import WEEKDAYS, Client, TimeStampedModel


def working_days() -> list[int]:
    return [1, 2, 3, 4, 5]


class AISettings(TimeStampedModel):
    """How the AI assistant answers the conversations of one number or of one queue.

    A queue's settings, when it has them, apply to its conversations whatever their number (and may turn the
    assistant off there); otherwise the number's. Blank text fields take the defaults from the environment
    (AI_DEFAULT_MODEL, AI_HANDOFF_KEYWORDS, AI_HANDOFF_MESSAGE)."""

    class Hours(models.TextChoices):
        ALWAYS = "always", _("Always")
        OUTSIDE = "outside", _("Only outside business hours")
        INSIDE = "inside", _("Only during business hours")

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="ai_settings", editable=False)
    number = models.OneToOneField(
        "wa_sessions.WhatsAppNumber",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="ai_settings",
        help_text=_("The conversations of this number (unless their queue has its own settings)."),
    )
    queue = models.OneToOneField(
        "queues.Queue",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="ai_settings",
        help_text=_("The conversations of this queue, whatever their number: these settings win over the number's."),
    )
    enabled = models.BooleanField(_("AI answers first"), default=True)
    model = models.CharField(
        max_length=200, blank=True, help_text=_("The model's name at the provider; blank: AI_DEFAULT_MODEL.")
    )
    system_prompt = models.TextField(
        blank=True,
        help_text=_("Who the assistant is and how it answers; blank: a short default for customer service."),
    )
    business_context = models.TextField(
        blank=True, help_text=_("What it may rely on: products, prices, opening hours, policies, addresses.")
    )
    language = models.CharField(
        max_length=50, blank=True, help_text=_("Language of the answers, e.g. Spanish; blank: the customer's.")
    )
    temperature = models.FloatField(default=0.3, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_history = models.PositiveSmallIntegerField(
        _("messages of history"),
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(200)],
        help_text=_("How many of the latest messages of the conversation the assistant reads."),
    )
    max_replies = models.PositiveSmallIntegerField(
        _("most AI replies per conversation"),
        default=10,
        help_text=_("After this many answers the next customer message goes to a person; 0: no limit."),
    )
    hours = models.CharField(_("when the AI answers"), max_length=8, choices=Hours.choices, default=Hours.ALWAYS)
    business_days = ArrayField(
        models.PositiveSmallIntegerField(choices=WEEKDAYS),
        default=working_days,
        blank=True,
        help_text=_("Days with business hours (the number's time zone)."),
    )
    opens_at = models.TimeField(default=time(9, 0), help_text=_("Business hours start (the number's time zone)."))
    closes_at = models.TimeField(default=time(18, 0), help_text=_("… and end (may cross midnight)."))
    handoff_keywords = models.TextField(
        _("hand-off keywords"),
        blank=True,
        help_text=_(
            "Words or phrases that send the customer to a person, separated by commas (any case, accents "
            "ignored); blank: AI_HANDOFF_KEYWORDS (asesor, humano, agente, persona)."
        ),
    )
    handoff_message = models.TextField(
        _("hand-off message"),
        blank=True,
        max_length=1000,
        help_text=_("Sent to the customer when the AI hands over to a person; blank: AI_HANDOFF_MESSAGE."),
    )

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "queue__name", "number__alias"]
        verbose_name = _("AI assistant settings")
        verbose_name_plural = _("AI assistant settings")
        constraints = [
            models.CheckConstraint(
                condition=Q(number__isnull=True, queue__isnull=False) | Q(number__isnull=False, queue__isnull=True),
                name="ai_settings_for_a_number_or_a_queue",
            )
        ]

    def __str__(self) -> str:
        if self.queue_id:
            return _("AI for queue %(queue)s") % {"queue": self.queue}
        return _("AI for number %(number)s") % {"number": self.number}

    def clean(self) -> None:
        if (self.number_id is None) == (self.queue_id is None):
            raise ValidationError(_("Choose either a number or a queue."))
        scope = self.number if self.number_id else self.queue
        self.client_id = scope.client_id
        if self.hours != self.Hours.ALWAYS:
            if not self.business_days:
                raise ValidationError({"business_days": _("Choose the days with business hours.")})
            if self.opens_at == self.closes_at:
                raise ValidationError({"closes_at": _("Business hours must not start and end at the same time.")})

    def save(self, *args, **kwargs) -> None:
        scope = self.number if self.number_id else self.queue
        if scope is not None:
            self.client_id = scope.client_id
        super().save(*args, **kwargs)


class AIActivity(models.Model):
    """One thing the assistant did in a conversation: a reply (with its token usage), a hand-off (with why), or
    a failure to answer. What the usage page counts per number and queue."""

    class Kind(models.TextChoices):
        REPLY = "reply", _("Reply")
        HANDOFF = "handoff", _("Hand-off")
        FAILURE = "failure", _("Failure")

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="+")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    number = models.ForeignKey("wa_sessions.WhatsAppNumber", on_delete=models.CASCADE, related_name="+")
    queue = models.ForeignKey("queues.Queue", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    reason = models.CharField(max_length=16, blank=True)  # a Conversation.AIStopReason for hand-offs
    detail = models.CharField(max_length=500, blank=True)
    message = models.ForeignKey(
        "conversations.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("AI activity")
        verbose_name_plural = _("AI activity")
        indexes = [
            models.Index(fields=["number", "created_at"]),
            models.Index(fields=["queue", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"
