from django.contrib import admin

from crm.admin_scope import ClientScopedAdmin
from sessions.models import NumberSession, WhatsAppNumber
from sessions.services import number_session_ensure


@admin.register(WhatsAppNumber)
class WhatsAppNumberAdmin(ClientScopedAdmin):
    list_display = ["alias", "display_number", "client", "engine", "queue", "is_active", "state", "token"]
    list_filter = ["engine", "is_active", "client", "queue"]
    search_fields = ["alias", "display_number", "phone_number_id", "waba_id"]
    list_select_related = ["client", "queue", "session"]
    autocomplete_fields = ["queue"]
    fieldsets = [
        (None, {"fields": ["client", "alias", "display_number", "engine", "is_active", "queue"]}),
        ("Meta Cloud API", {"fields": ["phone_number_id", "waba_id", "access_token", "verify_token"]}),
    ]

    @admin.display(description="session")
    def state(self, obj: WhatsAppNumber) -> str:
        session = getattr(obj, "session", None)
        return session.get_state_display() if session else "—"

    @admin.display(description="access token")
    def token(self, obj: WhatsAppNumber) -> str:
        return obj.access_token.masked() if obj.access_token else "—"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        number_session_ensure(number=obj)


@admin.register(NumberSession)
class NumberSessionAdmin(ClientScopedAdmin):
    list_display = ["number", "state", "state_reason", "state_changed_at", "last_connected_at"]
    list_filter = ["state", "number__engine", "number__client"]
    search_fields = ["number__alias", "number__display_number"]
    list_select_related = ["number"]
    readonly_fields = ["number", "state", "state_reason", "state_changed_at", "device_jid", "last_connected_at"]

    def has_add_permission(self, request) -> bool:
        return False  # created with its number; states are written by the process that owns the connection
