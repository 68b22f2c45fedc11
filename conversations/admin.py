import json
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from conversations.llm import LLMError, chat_complete
from conversations.models import (
    AIActivity,
    AISettings,
    Contact,
    Conversation,
    Message,
    MessageTemplate,
    UnmatchedStatus,
    UnroutedConversation,
    WebhookEvent,
)
from conversations.models.ai import working_days
from conversations.selectors import ai_usage
from conversations.services import webhook_events_process
from conversations.services.ai import ai_prompt_preview
from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from crm.models import WEEKDAYS

MAX_REPROCESS = 200  # events reprocessed in one admin request


@admin.register(Contact)
class ContactAdmin(ClientScopedAdmin):
    list_display = ["__str__", "phone", "client", "opted_out_at", "created_at"]
    list_filter = ["client"]
    search_fields = ["name", "phone", "wa_id"]


class MessageInline(ClientScopedTabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "direction", "origin", "kind", "body", "status", "error_reason", "sent_by"]
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
    list_display = ["id", "conversation", "direction", "origin", "kind", "status", "error_code", "created_at"]
    list_filter = ["direction", "status", "origin", "kind"]
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


def _pretty_json(value) -> str:
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(WebhookEvent)
class WebhookEventAdmin(ClientScopedAdmin):
    """Every webhook body as Meta delivered it, with what processing made of it. Failed events keep their
    messages and statuses: fix the cause (add the number, sync the registry) and reprocess them."""

    list_display = ["id", "created_at", "status", "client", "numbers", "attempts", "processed_at", "first_error"]
    list_filter = ["status", "client"]
    search_fields = ["error"]
    date_hierarchy = "created_at"
    list_select_related = ["client"]
    actions = ["reprocess"]
    fields = ["created_at", "status", "client", "phone_number_ids", "attempts", "processed_at", "error"]
    readonly_fields = [*fields, "pretty_report", "pretty_body"]

    def get_fields(self, request, obj=None):
        return [*self.fields, "pretty_report", "pretty_body"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # Events for numbers nobody knows yet belong to no client: only superusers see them.
        return queryset if request.user.is_superuser else queryset.exclude(client__isnull=True)

    @admin.display(description="phone number ids")
    def numbers(self, obj: WebhookEvent) -> str:
        return ", ".join(obj.phone_number_ids or []) or "—"

    @admin.display(description="error")
    def first_error(self, obj: WebhookEvent) -> str:
        return obj.error.splitlines()[0][:120] if obj.error else ""

    @admin.display(description="report")
    def pretty_report(self, obj: WebhookEvent) -> str:
        return _pretty_json(obj.report)

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookEvent) -> str:
        return _pretty_json(obj.body)

    @admin.action(
        description="Reprocess the selected events (duplicates are skipped, nothing is stored twice)",
        permissions=["change"],
    )
    def reprocess(self, request, queryset) -> None:
        ids = list(queryset.order_by("created_at").values_list("pk", flat=True)[: MAX_REPROCESS + 1])
        if len(ids) > MAX_REPROCESS:
            self.message_user(
                request, f"Select at most {MAX_REPROCESS} events at a time; nothing was reprocessed.", messages.ERROR
            )
            return
        outcomes = webhook_events_process(event_ids=ids, force=True)
        failed = [event.pk for event in outcomes if event.status == WebhookEvent.Status.FAILED]
        self.message_user(request, f"{len(ids) - len(failed)} event(s) processed.", messages.SUCCESS)
        if failed:
            shown = ", ".join(str(pk) for pk in failed[:20])
            self.message_user(request, f"{len(failed)} still failed (see their error): {shown}", messages.WARNING)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(UnmatchedStatus)
class UnmatchedStatusAdmin(ClientScopedAdmin):
    """Delivery statuses waiting for their message's provider id; applied by the outbound service or the sweep,
    forgotten after a week (statuses of messages sent outside the product)."""

    list_display = ["provider_message_id", "number", "status", "status_at", "error_code", "created_at"]
    list_filter = ["status", "number__client"]
    search_fields = ["provider_message_id"]
    list_select_related = ["number"]
    readonly_fields = [f.name for f in UnmatchedStatus._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ClientScopedAdmin):
    """Templates Meta approved, as agents may send them when a conversation's 24-hour window is closed."""

    list_display = ["name", "language", "client", "number", "is_active"]
    list_filter = ["is_active", "language", "client"]
    search_fields = ["name", "body"]
    ordering = ["client__name", "name", "language"]


# --- The AI assistant (docs/ai.md) ------------------------------------------------------------------------------

USAGE_PERIODS = {"1": 1, "7": 7, "30": 30, "90": 90}


class AISettingsForm(forms.ModelForm):
    business_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        initial=working_days,
        help_text=_("Days with business hours (the number's time zone)."),
    )

    class Meta:
        model = AISettings
        fields = [
            "number",
            "queue",
            "enabled",
            "model",
            "system_prompt",
            "business_context",
            "language",
            "temperature",
            "max_history",
            "max_replies",
            "hours",
            "business_days",
            "opens_at",
            "closes_at",
            "handoff_keywords",
            "handoff_message",
        ]


class AITryForm(forms.Form):
    question = forms.CharField(
        label=_("A customer writes"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        initial="Hola, ¿a qué hora abren mañana?",
    )


@admin.register(AISettings)
class AISettingsAdmin(ClientScopedAdmin):
    form = AISettingsForm
    list_display = ["__str__", "enabled", "model_name", "hours", "max_replies", "client", "updated_at"]
    list_filter = ["enabled", "hours", "client"]
    list_select_related = ["client", "number", "queue"]
    search_fields = ["number__alias", "queue__name"]
    fieldsets = [
        (None, {"fields": ["number", "queue", "enabled"]}),
        (_("How it answers"), {"fields": ["model", "system_prompt", "business_context", "language", "temperature"]}),
        (_("Limits"), {"fields": ["max_history", "max_replies"]}),
        (_("When it answers"), {"fields": ["hours", "business_days", "opens_at", "closes_at"]}),
        (_("Hand-off to people"), {"fields": ["handoff_keywords", "handoff_message"]}),
    ]
    change_list_template = "admin/conversations/aisettings/change_list.html"
    change_form_template = "admin/conversations/aisettings/change_form.html"

    @admin.display(description=_("model"))
    def model_name(self, obj: AISettings) -> str:
        return obj.model or f"{settings.AI_DEFAULT_MODEL} (default)"

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("usage/", view(self.usage_view), name="conversations_aisettings_usage"),
            path("<int:object_id>/try/", view(self.try_view), name="conversations_aisettings_try"),
            *super().get_urls(),
        ]

    def usage_view(self, request: HttpRequest):
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = USAGE_PERIODS.get(request.GET.get("days", "30"), 30)
        usage = ai_usage(user=request.user, since=timezone.now() - timedelta(days=days))
        context = {
            **self.admin_site.each_context(request),
            "title": _("AI assistant usage"),
            "opts": self.model._meta,
            "days": days,
            "periods": list(USAGE_PERIODS.values()),
            "reasons": Conversation.AIStopReason.choices,
            "usage": usage,
        }
        return TemplateResponse(request, "admin/conversations/aisettings/usage.html", context)

    def try_view(self, request: HttpRequest, object_id: int):
        """Ask the model as a customer would, with these settings, without any conversation: the prompt it gets
        and its answer (or why there is none)."""
        row = self.get_object(request, str(object_id))
        if row is None or not self.has_view_or_change_permission(request, row):
            raise Http404("No such settings.")
        if not self.has_change_permission(request, row):
            raise PermissionDenied  # it spends the business's tokens
        form = AITryForm(request.POST or None)
        answer = error = None
        prompt: list[dict[str, str]] = []
        if request.method == "POST" and form.is_valid():
            prompt = ai_prompt_preview(row, form.cleaned_data["question"])
            try:
                answer = chat_complete(
                    model=row.model.strip() or settings.AI_DEFAULT_MODEL, messages=prompt, temperature=row.temperature
                )
            except LLMError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "title": _("Try the AI assistant"),
            "opts": self.model._meta,
            "original": row,
            "form": form,
            "prompt": prompt,
            "answer": answer,
            "error": error,
            "marker": settings.AI_HANDOFF_MARKER,
        }
        return TemplateResponse(request, "admin/conversations/aisettings/try.html", context)


@admin.register(AIActivity)
class AIActivityAdmin(ClientScopedAdmin):
    list_display = ["created_at", "kind", "reason", "conversation", "number", "queue", "tokens", "latency_ms"]
    list_filter = ["kind", "reason", "client", "number", "queue"]
    list_select_related = ["conversation__contact", "conversation__number", "number", "queue"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AIActivity._meta.fields]

    @admin.display(description=_("tokens"))
    def tokens(self, obj: AIActivity) -> int:
        return obj.prompt_tokens + obj.completion_tokens

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
