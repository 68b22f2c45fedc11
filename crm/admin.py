import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from crm.admin_scope import ClientScopedAdmin, ClientScopedTabularInline
from crm.models import (
    ApiToken,
    Client,
    ClientMembership,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
    validate_webhook_url,
    webhook_events_all,
)
from crm.services import api_token_create, api_token_revoke
from crm.webhooks import (
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_ping,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_update,
    webhook_url_problem,
)


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


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["client", "name", "scope"]


@admin.register(ApiToken)
class ApiTokenAdmin(ClientScopedAdmin):
    """Staff create a token for an integration and see its key once; they revoke it when it leaks or retires."""

    form = ApiTokenForm
    list_display = ["name", "client", "scope", "key_start", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", "client", "revoked_at"]
    search_fields = ["name", "prefix"]
    list_select_related = ["client"]
    actions = ["revoke"]

    @admin.display(description=_("key"))
    def key_start(self, obj: ApiToken) -> str:
        return f"wcrm_{obj.prefix}_…"

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["key_start"]
        return ["client", "name", "scope", "key_start", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["client", "name", "scope"]
        return ["client", "name", "scope", "key_start", "created_by", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return  # nothing of a token changes after it is made, except being revoked
        token, key = api_token_create(
            client=form.cleaned_data["client"],
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            created_by=request.user,
        )
        obj.pk = token.pk
        messages.warning(
            request,
            format_html(
                _('The key of “{}”, shown only now: <code id="api-token-key">{}</code> Copy it into the integration.'),
                token.name,
                key,
            ),
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or obj.revoked_at is None)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, never deleted: its use stays on record

    @admin.action(description=_("Revoke the selected tokens"), permissions=["change"])
    def revoke(self, request, queryset) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            count += 1
        messages.success(request, _("%(n)s token(s) revoked: their keys are refused from now on.") % {"n": count})


# --- Event webhooks (docs/webhooks.md) ---------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        label=gettext_lazy("events"),
        choices=WebhookEventType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=webhook_events_all,
        help_text=gettext_lazy("The events sent to this URL."),
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        validate_webhook_url(url)  # the form asks before the model does: the plain "not an http URL" first
        problem = webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(_("Events cannot be sent there: %(problem)s.") % {"problem": problem})
        return url

    class Meta:
        model = WebhookEndpoint
        fields = ["client", "url", "description", "events", "is_active"]


def _show_secret(request, endpoint: WebhookEndpoint, secret: str) -> None:
    messages.warning(
        request,
        format_html(
            _(
                'The signing secret of “{}”, shown only now: <code class="webhook-secret">{}</code> Copy it into '
                "the receiver to check X-Webhook-Signature (docs/webhooks.md)."
            ),
            endpoint,
            secret,
        ),
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ClientScopedAdmin):
    """Staff register a client's URL and the events it wants; its secret is shown once (and on "Rotate secret")."""

    form = WebhookEndpointForm
    list_display = [
        "__str__",
        "client",
        "url",
        "event_list",
        "is_active",
        "last_success_at",
        "last_failure_at",
        "consecutive_failures",
    ]
    list_filter = ["is_active", "client"]
    search_fields = ["url", "description"]
    list_select_related = ["client"]
    actions = ["send_test_event", "rotate_secret"]
    readonly = [
        "secret_hint",
        "deliveries",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
        "created_by",
        "created_at",
    ]

    @admin.display(description=gettext_lazy("events"))
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description=gettext_lazy("secret"))
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return f"{obj.secret.masked()} " + _("(shown in full only when created or rotated)")

    @admin.display(description=gettext_lazy("deliveries"))
    def deliveries(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:crm_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Deliveries and their attempts"))

    def get_fields(self, request, obj=None):
        fields = ["client", "url", "description", "events", "is_active"]
        return fields if obj is None else [*fields, *self.readonly]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["client", *self.readonly]  # an endpoint stays with its client

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(
                endpoint=obj,
                url=data["url"],
                events=data["events"],
                description=data["description"],
                is_active=data["is_active"],
            )
            return
        endpoint, secret = webhook_endpoint_create(
            client=data["client"],
            url=data["url"],
            events=data["events"],
            description=data["description"],
            is_active=data["is_active"],
            created_by=request.user,
        )
        obj.pk = endpoint.pk
        _show_secret(request, endpoint, secret)

    def delete_model(self, request, obj) -> None:
        webhook_endpoint_delete(endpoint=obj)

    def delete_queryset(self, request, queryset) -> None:
        for endpoint in queryset:
            webhook_endpoint_delete(endpoint=endpoint)

    @admin.action(
        description=gettext_lazy("Send a test event (ping) to the selected endpoints"), permissions=["change"]
    )
    def send_test_event(self, request, queryset) -> None:
        count = 0
        for endpoint in queryset:
            webhook_endpoint_ping(endpoint=endpoint)
            count += 1
        messages.success(
            request,
            _("%(n)s test event(s) queued; see their deliveries for the receiver's answer.") % {"n": count},
        )

    @admin.action(description=gettext_lazy("Rotate the secret of the selected endpoints"), permissions=["change"])
    def rotate_secret(self, request, queryset) -> None:
        for endpoint in queryset:
            _show_secret(request, endpoint, webhook_endpoint_secret_rotate(endpoint=endpoint))
        messages.info(request, _("Deliveries are signed with the new secret from now on; the old one stops working."))


class WebhookAttemptInline(ClientScopedTabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["created_at", "status_code", "error", "duration_ms"]
    readonly_fields = fields
    verbose_name_plural = gettext_lazy("attempts")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ClientScopedAdmin):
    """Every event on its way to an endpoint, with its attempts. "Send again" re-sends by hand."""

    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", "endpoint"]
    date_hierarchy = "created_at"
    list_select_related = ["endpoint__client"]
    actions = ["send_again"]
    fields = [
        "endpoint",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "give_up_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
        "pretty_body",
    ]
    readonly_fields = fields
    inlines = [WebhookAttemptInline]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("endpoint__secret")  # never decrypted to list deliveries

    def get_search_results(self, request, queryset, search_term):
        """Search by event id (X-Webhook-Id), exact."""
        try:
            return queryset.filter(event_id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return queryset.none() if search_term.strip() else queryset, False

    def get_search_fields(self, request):
        return ["event_id"]

    @admin.display(description=gettext_lazy("body"))
    def pretty_body(self, obj: WebhookDelivery) -> str:
        text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=gettext_lazy("Send again the selected deliveries"), permissions=["change"])
    def send_again(self, request, queryset) -> None:
        sent = busy = 0
        for delivery in queryset.select_related("endpoint"):
            if webhook_delivery_resend(delivery=delivery):
                sent += 1
            else:
                busy += 1
        messages.success(request, _("%(n)s delivery(ies) queued to be sent again.") % {"n": sent})
        if busy:
            messages.warning(request, _("%(n)s being sent right now; not queued again.") % {"n": busy})
