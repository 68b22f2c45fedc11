import json
from contextvars import ContextVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from conversations.services import conversation_route_unrouted
from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from sessions.engines import connection_engine_names
from sessions.models import (
    NumberSession,
    RegistrySyncRun,
    SessionOutage,
    SessionState,
    SessionStateChange,
    WhatsAppNumber,
)
from sessions.qr import qr_svg
from sessions.selectors import registry_report_for_user, session_state_data
from sessions.services import (
    SessionActionError,
    number_attention_clear,
    number_session_ensure,
    number_sync_from_registry,
    session_connect_request,
    session_disconnect_request,
    session_pairing_code_request,
    session_reset,
)

MAX_REPORT_MESSAGES = 25
_viewer: ContextVar = ContextVar("registry_run_viewer")


class QueueAssignmentFilter(admin.SimpleListFilter):
    title = "queue assignment"
    parameter_name = "has_queue"

    def lookups(self, request, model_admin):
        return [("no", "Without queue"), ("yes", "With queue")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(queue__isnull=self.value() == "no")
        return queryset


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("inactive", "Inactive")]

    def queryset(self, request, queryset):
        if self.value() in ("active", "inactive"):
            return queryset.filter(is_active=self.value() == "active")
        return queryset


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Needs attention"), ("no", "Sending normally")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(attention_since__isnull=self.value() == "no")
        return queryset


HISTORY_ROWS = 50


class _ReadOnlyInline(ClientScopedTabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        # The newest rows only: a number reconnecting for years has a long history.
        queryset = super().get_queryset(request)
        newest = queryset.order_by(*self.model._meta.ordering).values("pk")[:HISTORY_ROWS]
        return queryset.filter(pk__in=Subquery(newest))


class SessionStateChangeInline(_ReadOnlyInline):
    model = SessionStateChange
    verbose_name_plural = f"session state history (newest {HISTORY_ROWS})"
    fields = readonly_fields = ["created_at", "from_state", "state", "reason", "owner"]


class SessionOutageInline(_ReadOnlyInline):
    model = SessionOutage
    verbose_name_plural = f"outage windows (newest {HISTORY_ROWS})"
    fields = readonly_fields = ["started_at", "ended_at", "lasted", "reason"]

    @admin.display(description="lasted")
    def lasted(self, obj: SessionOutage) -> str:
        return timesince(obj.started_at, obj.ended_at or timezone.now()) + ("" if obj.ended_at else " (ongoing)")


SESSION_ACTIONS = {
    "connect": (session_connect_request, "Connect requested: a sessions worker connects {alias} now."),
    "disconnect": (session_disconnect_request, "Disconnect requested: {alias} goes offline and stays paired."),
    "reset": (session_reset, "{alias} was logged out and its device data deleted; connect it for a new QR code."),
    "pairing-code": (
        session_pairing_code_request,
        "Pairing code asked for {alias}; it shows beside the QR code.",
    ),
}


SESSION_BUTTONS = [
    ("connect", "Connect", "Connect now and keep connected (a QR code appears when no device is paired)"),
    ("disconnect", "Disconnect", "Go offline and stay paired"),
    ("reset", "Reset session", "Log out and delete the device data; a new QR scan is needed"),
    ("pairing-code", "Pair with a code", "Get a code to type on the phone instead of scanning the QR code"),
]


@admin.register(WhatsAppNumber)
class WhatsAppNumberAdmin(ClientScopedAdmin):
    list_display = ["alias", "display_number", "client", "engine", "queue", "is_active", "state", "token", "attention"]
    list_editable = ["queue"]
    list_filter = [QueueAssignmentFilter, ActiveFilter, AttentionFilter, "engine", "client", "queue"]
    actions = ["clear_attention", "connect_sessions", "disconnect_sessions"]
    readonly_fields = ["attention_reason", "attention_since", "session_panel"]
    search_fields = ["alias", "display_number", "phone_number_id", "waba_id"]
    list_select_related = ["client", "queue", "session"]
    autocomplete_fields = ["queue"]
    fieldsets = [
        (None, {"fields": ["client", "alias", "display_number", "engine", "is_active", "queue"]}),
        ("Meta Cloud API", {"fields": ["phone_number_id", "waba_id", "access_token", "verify_token"]}),
        ("Sending pace", {"fields": ["send_rate", "daily_cap", "warmup_days", "warmup_started_on", "time_zone"]}),
        ("Attention", {"fields": ["attention_reason", "attention_since"]}),
    ]
    change_form_template = "admin/wa_sessions/whatsappnumber/change_form.html"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        has_session = obj is not None and obj.engine in connection_engine_names()
        context["session_buttons"] = SESSION_BUTTONS if has_session else []
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.engine in connection_engine_names():
            # No Meta credentials for a linked device: only its identifier (a placeholder) stays.
            identifier = ("Identifier", {"fields": ["phone_number_id"]})
            fieldsets = [identifier if name == "Meta Cloud API" else (name, options) for name, options in fieldsets]
            fieldsets = [("Connection", {"fields": ["session_panel"]}), *fieldsets]
        return fieldsets

    def get_inlines(self, request, obj=None):
        if obj is not None and obj.engine in connection_engine_names():
            return [SessionStateChangeInline, SessionOutageInline]
        return []

    @admin.display(description="session")
    def session_panel(self, obj: WhatsAppNumber) -> str:
        """State with its age and reason, the QR code while waiting for a scan; kept live by session_live.html."""
        session = NumberSession.objects.filter(number=obj).first()
        if session is None:  # every saved number has one (number_session_ensure); a read never creates it
            return "—"
        data = session_state_data(session=session, number=obj)
        return render_to_string(
            "admin/wa_sessions/session_panel.html",
            {
                "number": obj,
                "session": session,
                "waiting": data["waiting_qr"],
                "qr_version": data["qr_version"],
                "qr_url": reverse("admin:wa_sessions_whatsappnumber_session_qr", args=[obj.pk]),
                "time_zone": timezone.get_current_timezone_name(),
            },
        )

    @admin.action(
        description="Connect the selected WhatsApp Web / sandbox numbers and keep them connected",
        permissions=["change"],
    )
    def connect_sessions(self, request, queryset) -> None:
        self._bulk_session_action(request, queryset, session_connect_request, "connect requested")

    @admin.action(
        description="Disconnect the selected WhatsApp Web / sandbox numbers (they stay paired)", permissions=["change"]
    )
    def disconnect_sessions(self, request, queryset) -> None:
        self._bulk_session_action(request, queryset, session_disconnect_request, "disconnect requested")

    def _bulk_session_action(self, request, queryset, action, done: str) -> None:
        numbers = list(queryset.filter(engine__in=connection_engine_names()))
        for number in numbers:
            try:
                action(number=number)
            except SessionActionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        skipped = queryset.count() - len(numbers)
        note = f"; {skipped} Cloud API number(s) skipped (they have no connection)" if skipped else ""
        self.message_user(request, f"{len(numbers)} number(s): {done}{note}.")

    @admin.display(description="attention", ordering="attention_since")
    def attention(self, obj: WhatsAppNumber) -> str:
        return obj.attention_reason or "—"

    @admin.action(
        description="Clear “needs attention” on the selected numbers (the cause was fixed)", permissions=["change"]
    )
    def clear_attention(self, request, queryset) -> None:
        flagged = queryset.filter(attention_since__isnull=False)
        cleared = sum(number_attention_clear(number=number) for number in flagged)
        self.message_user(request, f"{cleared} number(s) cleared; the next failed send flags them again.")

    @admin.display(description="session")
    def state(self, obj: WhatsAppNumber) -> str:
        session = getattr(obj, "session", None)
        if session is None:
            return "—"
        return format_html(
            '<span class="session-state" data-session-number="{}" data-state="{}">{}</span>',
            obj.pk,
            session.state,
            session.get_state_display(),
        )

    @admin.display(description="access token")
    def token(self, obj: WhatsAppNumber) -> str:
        return obj.access_token.masked() if obj.access_token else "—"

    def get_changelist_formset(self, request, **kwargs):
        # Queue picker in each row, without the add/change/delete/view icons of the change form.
        formset = super().get_changelist_formset(request, **kwargs)
        widget = formset.form.base_fields["queue"].widget
        widget.can_add_related = widget.can_change_related = widget.can_delete_related = False
        widget.can_view_related = False
        return formset

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        number_session_ensure(number=obj)
        if "access_token" in form.changed_data and obj.attention_since is not None:
            number_attention_clear(number=obj)
            self.message_user(request, f"New access token saved: {obj.alias} no longer flagged for attention.")
        if "queue" in form.changed_data:
            routed = conversation_route_unrouted(number=obj)
            if routed:
                self.message_user(request, f"{routed} waiting conversation(s) of {obj.alias} routed to {obj.queue}.")

    # --- "Sync from registry" (changelist buttons) ---------------------------------------------------------
    def can_sync_registry(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.has_perm("wa_sessions.run_registrysyncrun")

    def get_urls(self):
        sync = self.admin_site.admin_view(self.sync_registry_view)
        action = self.admin_site.admin_view(self.session_action_view)
        qr = self.admin_site.admin_view(self.session_qr_view)
        return [
            path("sync-registry/", sync, name="wa_sessions_whatsappnumber_sync_registry"),
            path("<int:object_id>/session/qr.svg", qr, name="wa_sessions_whatsappnumber_session_qr"),
            path("<int:object_id>/session/<str:action>/", action, name="wa_sessions_whatsappnumber_session_action"),
            *super().get_urls(),
        ]

    def session_action_view(self, request: HttpRequest, object_id: int, action: str):
        """Connect, disconnect or reset one number (POST from its change form's buttons)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        number = self.get_object(request, str(object_id))
        if number is None or action not in SESSION_ACTIONS:
            raise Http404("No such number or action.")
        if not self.has_change_permission(request, number):
            raise PermissionDenied
        service, done = SESSION_ACTIONS[action]
        try:
            service(number=number)
        except SessionActionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, done.format(alias=number.alias), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:wa_sessions_whatsappnumber_change", args=[number.pk]))

    def session_qr_view(self, request: HttpRequest, object_id: int):
        """The QR code to scan, as SVG, while the number waits for a scan; 404 otherwise."""
        number = self.get_object(request, str(object_id))
        if number is None or not self.has_view_or_change_permission(request, number):
            raise Http404("No such number.")
        session = NumberSession.objects.filter(number=number).first()
        if session is None or session.state != SessionState.WAITING_QR or not session.qr_code:
            raise Http404("The number is not waiting for a QR scan.")
        response = HttpResponse(qr_svg(session.qr_code), content_type="image/svg+xml")
        response["Cache-Control"] = "no-store"
        return response

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync_registry": self.can_sync_registry(request)}
        return super().changelist_view(request, extra_context=extra_context)

    def sync_registry_view(self, request: HttpRequest):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.can_sync_registry(request):
            raise PermissionDenied
        dry_run = request.POST.get("dry_run") == "1"
        run = number_sync_from_registry(trigger=RegistrySyncRun.Trigger.ADMIN, dry_run=dry_run, user=request.user)
        self.message_report(request, run)
        return HttpResponseRedirect(reverse("admin:wa_sessions_whatsappnumber_changelist"))

    def message_report(self, request: HttpRequest, run: RegistrySyncRun) -> None:
        """The run's report as admin messages, as much of it as the user may read (registry_report_for_user)."""
        report = registry_report_for_user(run.report, user=request.user)
        level = messages.SUCCESS if run.success else messages.ERROR
        run_url = reverse("admin:wa_sessions_registrysyncrun_change", args=[run.pk])
        self.message_user(
            request, format_html('{} (<a href="{}">run {}</a>)', report["summary"], run_url, run.pk), level
        )
        lines = [(messages.ERROR, f"{_where(e)}: {e['message']}") for e in report["errors"]]
        if report.get("hidden_errors"):
            lines.append((messages.ERROR, "The registry file has errors; a superuser can read them in the run."))
        lines += [(messages.INFO, f"Created {n['alias']} ({n['phone_number_id']})") for n in report["created"]]
        lines += [
            (messages.INFO, f"Updated {n['alias']} ({n['phone_number_id']}): {', '.join(n['fields'])}")
            for n in report["updated"]
        ]
        lines += [
            (messages.INFO, f"Corrected id {f['from']} → {f['to']} ({f['alias']})") for f in report["ids_corrected"]
        ]
        lines += [
            (messages.WARNING, f"Not in the registry: {n['alias']} ({n['phone_number_id']})")
            for n in report["missing_from_registry"]
        ]
        lines += [
            (messages.WARNING, f"No queue: {n['alias']} ({n['phone_number_id']})") for n in report["without_queue"]
        ]
        for line_level, text in lines[:MAX_REPORT_MESSAGES]:
            self.message_user(request, text, line_level)
        if len(lines) > MAX_REPORT_MESSAGES:
            self.message_user(
                request, f"… and {len(lines) - MAX_REPORT_MESSAGES} more in the run's report.", messages.INFO
            )


def _where(error: dict) -> str:
    if error["index"] is None:
        return "Registry file"
    return f"Entry {error['index']}" + (f" (id {error['id']})" if error["id"] else "")


@admin.register(NumberSession)
class NumberSessionAdmin(ClientScopedAdmin):
    list_display = ["number", "state", "state_reason", "state_changed_at", "last_connected_at"]
    list_filter = ["state", "number__engine", "number__client"]
    search_fields = ["number__alias", "number__display_number"]
    list_select_related = ["number"]
    readonly_fields = ["number", "state", "state_reason", "state_changed_at", "device_jid", "last_connected_at"]

    def has_add_permission(self, request) -> bool:
        return False  # created with its number; states are written by the process that owns the connection


@admin.register(RegistrySyncRun)
class RegistrySyncRunAdmin(admin.ModelAdmin):
    """Every reconciliation, whatever started it. Users limited to some clients see their clients' part."""

    list_display = ["started_at", "trigger", "triggered_by", "dry_run", "success", "visible_summary"]
    list_filter = ["success", "trigger", "dry_run"]
    fields = [
        "started_at",
        "finished_at",
        "trigger",
        "triggered_by",
        "file_path",
        "dry_run",
        "success",
        "pretty_report",
    ]
    readonly_fields = fields

    @admin.display(description="summary")
    def visible_summary(self, obj: RegistrySyncRun) -> str:
        return registry_report_for_user(obj.report, user=_viewer.get())["summary"]

    @admin.display(description="report")
    def pretty_report(self, obj: RegistrySyncRun) -> str:
        report = registry_report_for_user(obj.report, user=_viewer.get())
        return format_html(
            "<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(report, indent=2, ensure_ascii=False)
        )

    # Display methods get no request; the views tell them who is looking (a context variable: per request).
    def changelist_view(self, request, extra_context=None):
        token = _viewer.set(request.user)
        try:
            return super().changelist_view(request, extra_context).render()
        finally:
            _viewer.reset(token)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        token = _viewer.set(request.user)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            return response.render() if hasattr(response, "render") else response
        finally:
            _viewer.reset(token)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser
