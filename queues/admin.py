from django.contrib import admin

from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from queues.models import Queue, QueueMembership


class QueueMembershipInline(ClientScopedTabularInline):
    model = QueueMembership
    extra = 0


@admin.register(Queue)
class QueueAdmin(ClientScopedAdmin):
    list_display = ["name", "client", "is_active", "created_at"]
    list_filter = ["is_active", "client"]
    search_fields = ["name", "client__name"]
    inlines = [QueueMembershipInline]


@admin.register(QueueMembership)
class QueueMembershipAdmin(ClientScopedAdmin):
    list_display = ["user", "queue", "role", "created_at"]
    list_filter = ["role", "queue__client"]
    search_fields = ["user__username", "queue__name"]
    list_select_related = ["user", "queue"]
