from django.contrib import admin

from conversations.models import Contact, Conversation, Message, UnroutedConversation
from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline


@admin.register(Contact)
class ContactAdmin(ClientScopedAdmin):
    list_display = ["__str__", "phone", "client", "opted_out_at", "created_at"]
    list_filter = ["client"]
    search_fields = ["name", "phone", "wa_id"]


class MessageInline(ClientScopedTabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "direction", "kind", "body", "status", "error_reason", "sent_by"]
    readonly_fields = fields
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # messages are written by the inbound and outbound services, not typed into admin


@admin.register(Conversation)
class ConversationAdmin(ClientScopedAdmin):
    list_display = ["contact", "number", "queue", "assigned_to", "status", "last_message_at"]
    list_filter = ["status", "client", "queue", "number"]
    search_fields = ["contact__name", "contact__phone"]
    list_select_related = ["contact", "number", "queue", "assigned_to"]
    autocomplete_fields = ["contact", "number", "queue"]
    readonly_fields = ["last_message_at", "last_inbound_at"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(ClientScopedAdmin):
    list_display = ["id", "conversation", "direction", "kind", "status", "provider_message_id", "created_at"]
    list_filter = ["direction", "kind", "status"]
    search_fields = ["provider_message_id"]
    list_select_related = ["conversation__contact", "conversation__number"]
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UnroutedConversation)
class UnroutedConversationAdmin(ConversationAdmin):
    """Conversations that reached a number without a queue. Setting the number's queue routes them."""

    list_display = ["contact", "number", "status", "last_message_at", "created_at"]
    list_filter = ["client", "number"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(queue__isnull=True).exclude(status=Conversation.Status.RESOLVED)
