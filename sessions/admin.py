import json
from contextvars import ContextVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from conversations.services import conversation_route_unrouted
from crm.admin_scope import ClientScopedAdmin
from sessions.models import NumberSession, RegistrySyncRun, WhatsAppNumber
from sessions.selectors import registry_report_for_user
from sessions.services import number_attention_clear, number_session_ensure, number_sync_from_registry

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


@admin.register(WhatsAppNumber)
class WhatsAppNumberAdmin(ClientScopedAdmin):
    list_display = ["alias", "display_number", "client", "engine", "queue", "is_active", "state", "token", "attention"]
    list_editable = ["queue"]
    list_filter = [QueueAssignmentFilter, ActiveFilter, AttentionFilter, "engine", "client", "queue"]
    actions = ["clear_attention"]
    readonly_fields = ["attention_reason", "attention_since"]
    search_fields = ["alias", "display_number", "phone_number_id", "waba_id"]
    list_select_related = ["client", "queue", "session"]
    autocomplete_fields = ["queue"]
    fieldsets = [
        (None, {"fields": ["client", "alias", "display_number", "engine", "is_active", "queue"]}),
        ("Meta Cloud API", {"fields": ["phone_number_id", "waba_id", "access_token", "verify_token"]}),
        ("Attention", {"fields": ["attention_reason", "attention_since"]}),
    ]

    @admin.display(description="attention", ordering="attention_since")
    def attention(self, obj: WhatsAppNumber) -> str:
        return obj.attention_reason or "—"

    @admin.action(description="Clear “needs attention” on the selected numbers (the cause was fixed)")
    def clear_attention(self, request, queryset) -> None:
        flagged = queryset.filter(attention_since__isnull=False)
        cleared = sum(number_attention_clear(number=number) for number in flagged)
        self.message_user(request, f"{cleared} number(s) cleared; the next failed send flags them again.")

    @admin.display(description="session")
    def state(self, obj: WhatsAppNumber) -> str:
        session = getattr(obj, "session", None)
        return session.get_state_display() if session else "—"

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
        return [path("sync-registry/", sync, name="wa_sessions_whatsappnumber_sync_registry"), *super().get_urls()]

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
