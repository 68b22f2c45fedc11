"""WhatsApp numbers (lines) and their connection session (docs/sessions.md)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from crm.fields import EncryptedTextField
from crm.models import Client, TimeStampedModel


def validate_phone_number(value: str) -> None:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        raise ValidationError(f"“{value}” is not a phone number in international form, e.g. +51 987 654 321.")


def validate_time_zone(value: str) -> None:
    if value and value not in available_timezones():
        raise ValidationError(f"“{value}” is not an IANA time zone, e.g. America/Lima or America/Mexico_City.")


def to_e164(value: str) -> str:
    return phonenumbers.format_number(phonenumbers.parse(value, None), phonenumbers.PhoneNumberFormat.E164)


class Engine(models.TextChoices):
    CLOUD = "cloud", _("WhatsApp Cloud API")
    WEB = "web", _("WhatsApp Web (linked device)")
    SANDBOX = "sandbox", _("Sandbox (simulated)")


class WhatsAppNumber(TimeStampedModel):
    """One WhatsApp line of a client. Its queue decides where its conversations go."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="numbers")
    alias = models.CharField(max_length=120)
    display_number = models.CharField(max_length=32, validators=[validate_phone_number])
    phone_number_id = models.CharField(
        "Meta phone-number id",
        max_length=64,
        unique=True,
        help_text="Meta's numeric id for Cloud API numbers; a placeholder such as wsp-… until it is known.",
    )
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.CLOUD)
    access_token = EncryptedTextField(blank=True, help_text="Stored encrypted; never shown in full.")
    verify_token = EncryptedTextField(blank=True, help_text="Webhook verify token; stored encrypted.")
    waba_id = models.CharField("WABA id", max_length=64, blank=True)
    is_active = models.BooleanField(default=True)
    # A plain reference: routing reads it in `conversations`; nothing in `sessions` acts on queues.
    queue = models.ForeignKey(
        "queues.Queue",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="numbers",
        help_text="Conversations on this number go to this queue.",
    )
    # The sending governor (sessions/governor.py, docs/campaigns.md "Governor"): every send from the number takes
    # a slot; campaigns also respect the daily cap, the warm-up ramp and their quiet hours in the number's zone.
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA time zone for campaign quiet hours and the daily cap's day, e.g. America/Lima. Blank: "
        "the site's TIME_ZONE.",
    )
    send_rate = models.FloatField(
        "messages per second",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01), MaxValueValidator(1000)],
        help_text="Blank: the engine's default (Cloud API 80/s; WhatsApp Web and sandbox about one every "
        "GOVERNOR_WEB_INTERVAL seconds, with jitter). Shared by campaigns, agents, AI and API sends.",
    )
    daily_cap = models.PositiveIntegerField(
        "campaign messages per day",
        null=True,
        blank=True,
        help_text="Most campaign messages per day (in the number's time zone). Blank: no cap.",
    )
    warmup_days = models.PositiveSmallIntegerField(
        "warm-up days",
        default=0,
        validators=[MaxValueValidator(60)],
        help_text="For a new number: campaign messages per day start at GOVERNOR_WARMUP_FIRST_DAY and double each "
        "day for this many days (never above the daily cap). 0: no warm-up.",
    )
    warmup_started_on = models.DateField(
        null=True, blank=True, help_text="First day of the warm-up. Blank: the day the number was created."
    )
    # Set when the provider says the number cannot send until staff act (expired token, restricted account).
    attention_reason = models.CharField(max_length=300, blank=True)
    attention_since = models.DateTimeField(null=True, blank=True)

    CLIENT_PATH = "client"

    class Meta:
        ordering = ["client__name", "alias"]
        verbose_name = "WhatsApp number"

    def __str__(self) -> str:
        return f"{self.alias} ({self.display_number})"

    @property
    def e164(self) -> str:
        return to_e164(self.display_number)

    @property
    def zone(self) -> ZoneInfo:
        """The number's time zone (the site's when none is set)."""
        return ZoneInfo(self.time_zone or settings.TIME_ZONE)

    def clean(self) -> None:
        if self.queue_id and self.client_id and self.queue.client_id != self.client_id:
            raise ValidationError({"queue": "The queue belongs to another client."})


class SessionState(models.TextChoices):
    DISCONNECTED = "disconnected", _("Disconnected")
    CONNECTING = "connecting", _("Connecting")
    WAITING_QR = "waiting_qr", _("Waiting for QR scan")
    CONNECTED = "connected", _("Connected")
    LOGGED_OUT = "logged_out", _("Logged out")
    CONFLICT = "conflict", _("Conflict (connected elsewhere)")
    BANNED = "banned", _("Banned (temporarily)")
    ERROR = "error", _("Error")


class NumberSession(TimeStampedModel):
    """The connection state of one number, as the process that owns its connection last reported it.

    Written only by `sessions.services.states` (every change also lands in `SessionStateChange`); read-only in
    admin. `keep_connected` is what staff asked for; the supervisor of the sessions worker makes it so."""

    number = models.OneToOneField(WhatsAppNumber, on_delete=models.CASCADE, related_name="session")
    state = models.CharField(max_length=20, choices=SessionState.choices, default=SessionState.DISCONNECTED)
    state_reason = models.CharField(max_length=255, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    keep_connected = models.BooleanField(
        default=True,
        help_text="Connect and stay connected (WhatsApp Web and sandbox numbers). Turned off by a disconnect, a "
        "logout from the phone, a conflict or an unscanned QR code; turned on by Connect.",
    )
    device_jid = models.CharField("paired device JID", max_length=128, blank=True)
    last_connected_at = models.DateTimeField(null=True, blank=True)
    owner = models.CharField("owned by", max_length=200, blank=True, help_text="The sessions worker holding it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    qr_code = models.TextField("QR code", blank=True, help_text="The code to scan while waiting for a QR scan.")
    qr_expires_at = models.DateTimeField(null=True, blank=True)
    pairing_code = models.CharField(max_length=16, blank=True)
    banned_until = models.DateTimeField(null=True, blank=True)
    reconnect_attempts = models.PositiveIntegerField(default=0)

    CLIENT_PATH = "number__client"

    class Meta:
        ordering = ["number__alias"]
        verbose_name = "session"

    def __str__(self) -> str:
        return f"{self.number.alias}: {self.get_state_display()}"


class SessionStateChange(models.Model):
    """One transition of a number's session: the history staff read, never a state kept in memory."""

    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=20, choices=SessionState.choices)
    state = models.CharField(max_length=20, choices=SessionState.choices)
    reason = models.CharField(max_length=255, blank=True)
    owner = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    CLIENT_PATH = "number__client"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["number", "-created_at"])]
        verbose_name = "session state change"

    def __str__(self) -> str:
        return f"{self.number_id}: {self.from_state} -> {self.state} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class SessionOutage(models.Model):
    """A window in which a number that had been connected was not: from leaving `connected` to coming back."""

    number = models.ForeignKey(WhatsAppNumber, on_delete=models.CASCADE, related_name="outages")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    CLIENT_PATH = "number__client"

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["number"], condition=models.Q(ended_at__isnull=True), name="one_open_outage_per_number"
            )
        ]
        verbose_name = "outage window"

    def __str__(self) -> str:
        return f"{self.number_id}: {self.started_at:%Y-%m-%d %H:%M:%S} - {self.ended_at or 'ongoing'}"

    @property
    def duration(self):
        from django.utils import timezone

        return (self.ended_at or timezone.now()) - self.started_at


class SandboxAccount(TimeStampedModel):
    """The simulated WhatsApp network's record of one sandbox number (sessions/engines/sandbox.py): which
    device it has linked, and whether the "server" logged it out or banned it. The server's side, so it lives
    apart from `NumberSession` (the client's side, which may lose or keep its credentials independently)."""

    number = models.OneToOneField(WhatsAppNumber, on_delete=models.CASCADE, related_name="sandbox_account")
    device_jid = models.CharField(max_length=128, blank=True)
    paired_at = models.DateTimeField(null=True, blank=True)
    banned_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number_id"]
        verbose_name = "sandbox account"

    def __str__(self) -> str:
        return f"sandbox {self.number_id}: {self.device_jid or 'not linked'}"


class RegistrySyncRun(models.Model):
    """One reconciliation of the connection registry into the numbers table, whatever started it."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Beat schedule"
        COMMAND = "command", "manage.py sync_numbers"
        ADMIN = "admin", "Admin button"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file_path = models.CharField(max_length=500)
    dry_run = models.BooleanField(default=False)
    success = models.BooleanField()
    summary = models.CharField(max_length=300)
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["success", "dry_run", "-started_at"])]
        verbose_name = "registry sync run"
        # Staff may start a sync ("Sync from registry" on the numbers list); the reports stay superuser-only.
        permissions = [("run_registrysyncrun", "Can run a registry sync")]

    def __str__(self) -> str:
        return f"{self.get_trigger_display()} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.summary}"
