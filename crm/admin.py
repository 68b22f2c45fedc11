from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from crm.admin_scope import ClientScopedAdmin
from crm.models import Client, ClientMembership


@admin.register(Client)
class ClientAdmin(ClientScopedAdmin):
    list_display = ["name", "slug", "is_default", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and not (obj and obj.is_default)


class ClientMembershipInline(admin.TabularInline):
    model = ClientMembership
    extra = 0
    autocomplete_fields = ["client"]
    verbose_name = "client access"
    verbose_name_plural = "client access (non-superusers see only these clients)"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class CrmUserAdmin(UserAdmin):
    inlines = [ClientMembershipInline]
    list_display = [*UserAdmin.list_display, "is_superuser"]

    # Managing users grants power over every client; only superusers do it.
    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser
