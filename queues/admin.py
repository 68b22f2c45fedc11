from django.contrib import admin
from django.db.models import Count

from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from queues.models import Queue, QueueMembership
from sessions.models import WhatsAppNumber


class QueueMembershipInline(ClientScopedTabularInline):
    model = QueueMembership
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
    inlines = [QueueNumberInline, QueueMembershipInline]

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


@admin.register(QueueMembership)
class QueueMembershipAdmin(ClientScopedAdmin):
    list_display = ["user", "queue", "role", "created_at"]
    list_filter = ["role", "queue__client"]
    search_fields = ["user__username", "queue__name"]
    list_select_related = ["user", "queue"]
