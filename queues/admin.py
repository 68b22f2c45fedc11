from django.contrib import admin, messages
from django.db.models import Count

from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from queues.models import AgentAvailability, Queue, QueueMembership, QuickReply
from queues.services import agent_availability_set
from sessions.models import WhatsAppNumber


class QueueMembershipInline(ClientScopedTabularInline):
    model = QueueMembership
    fields = ["user", "role", "capacity"]
    extra = 0


class QuickReplyInline(ClientScopedTabularInline):
    """Canned answers agents insert with /shortcut in the CRM's reply box."""

    model = QuickReply
    fields = ["shortcut", "text"]
    extra = 0


class QueueNumberInline(ClientScopedTabularInline):
    """The numbers whose conversations come to this queue (assign them on the numbers list)."""

    model = WhatsAppNumber
    fields = ["alias", "display_number", "engine", "is_active"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "numbers routed to this queue"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Queue)
class QueueAdmin(ClientScopedAdmin):
    list_display = ["name", "client", "is_active", "numbers_count", "agents_count", "created_at"]
    list_filter = ["is_active", "client"]
    search_fields = ["name", "client__name"]
    ordering = ["client__name", "name"]
    inlines = [QueueNumberInline, QueueMembershipInline, QuickReplyInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("client")
            .annotate(numbers_count=Count("numbers", distinct=True), agents_count=Count("memberships", distinct=True))
        )

    @admin.display(description="numbers", ordering="numbers_count")
    def numbers_count(self, obj: Queue) -> int:
        return obj.numbers_count

    @admin.display(description="agents", ordering="agents_count")
    def agents_count(self, obj: Queue) -> int:
        return obj.agents_count


def _set_availability(status: str, label: str):
    def action(modeladmin, request, queryset):
        users = {membership.user for membership in queryset.select_related("user")}
        for user in users:
            agent_availability_set(user=user, status=status)
        modeladmin.message_user(request, f"{len(users)} agent(s) set {label.lower()}.", messages.SUCCESS)

    action.__name__ = f"set_{status}"
    return admin.action(description=f"Set the selected members' agents {label.lower()}")(action)


@admin.register(QueueMembership)
class QueueMembershipAdmin(ClientScopedAdmin):
    """Who works which queue, how many open conversations each takes at once, and whether they take new ones now
    (availability; agents set it themselves in the CRM, staff can set it here)."""

    list_display = ["user", "queue", "role", "capacity", "availability", "created_at"]
    list_editable = ["capacity"]
    list_filter = ["role", "queue__client", "queue", "user__availability__status"]
    search_fields = ["user__username", "queue__name"]
    list_select_related = ["user__availability", "queue"]
    actions = [
        _set_availability(AgentAvailability.Status.ONLINE, "Online"),
        _set_availability(AgentAvailability.Status.AWAY, "Away"),
        _set_availability(AgentAvailability.Status.OFFLINE, "Offline"),
    ]

    @admin.display(description="availability", ordering="user__availability__status")
    def availability(self, obj: QueueMembership) -> str:
        availability = getattr(obj.user, "availability", None)
        return availability.get_status_display() if availability else AgentAvailability.Status.OFFLINE.label


@admin.register(QuickReply)
class QuickReplyAdmin(ClientScopedAdmin):
    list_display = ["shortcut", "queue", "text"]
    list_filter = ["queue"]
    search_fields = ["shortcut", "text", "queue__name"]
    ordering = ["queue__name", "shortcut"]
