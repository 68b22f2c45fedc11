"""Campaigns in Django admin: create, import recipients, preview, start, pause, resume, cancel, retry unknown,
live progress and a CSV export of outcomes (docs/campaigns.md "Operating a campaign")."""

from __future__ import annotations

import csv
from datetime import datetime, time

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.http.response import StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import slugify

from campaigns.models import WEEKDAYS, Campaign, Recipient, RecipientImport
from campaigns.selectors import campaign_export_rows, campaign_preview, campaign_progress
from campaigns.services import (
    CampaignError,
    ImportRefused,
    campaign_cancel,
    campaign_pause,
    campaign_recipients_retry_unknown,
    campaign_resume,
    campaign_start,
    recipients_add_from_contacts,
    recipients_import,
)
from crm.admin_scope import ClientScopedAdmin
from crm.selectors import client_scope
from queues.models import Queue
from sessions.models import WhatsAppNumber

C = Campaign.Status
CONTENT_FIELDS = ["client", "number", "message", "template", "template_parameters", "start_at"]

# (action, label, allowed statuses, confirmation)
BUTTONS = [
    ("start", "Start", (C.DRAFT,), "Start sending this campaign?"),
    ("pause", "Pause", (C.RUNNING, C.SCHEDULED), ""),
    ("resume", "Resume", (C.PAUSED,), ""),
    ("retry-unknown", "Retry unknown", (C.RUNNING, C.PAUSED, C.COMPLETED), ""),
    (
        "cancel",
        "Cancel",
        (C.DRAFT, C.SCHEDULED, C.RUNNING, C.PAUSED),
        "Cancel for good? Unsent recipients are skipped.",
    ),
]


class CampaignForm(forms.ModelForm):
    send_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        initial=[day for day, _label in WEEKDAYS],
        help_text="Days on which it may send (the number's time zone).",
    )

    class Meta:
        model = Campaign
        fields = [
            "client",
            "name",
            "number",
            "message",
            "template",
            "template_parameters",
            "start_at",
            "quiet_from",
            "quiet_until",
            "send_days",
        ]


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV or XLSX: a phone column (phone, telefono, celular…) and one per variable.")
    mode = forms.ChoiceField(
        choices=RecipientImport.Mode.choices,
        initial=RecipientImport.Mode.KEEP_GOOD,
        widget=forms.RadioSelect,
    )


class ContactsForm(forms.Form):
    queue = forms.ModelChoiceField(queryset=Queue.objects.none(), required=False, help_text="Had a conversation here.")
    number = forms.ModelChoiceField(
        queryset=WhatsAppNumber.objects.none(), required=False, help_text="Wrote to this number."
    )
    active_since = forms.DateField(
        required=False, help_text="Wrote or was written to since this day (YYYY-MM-DD).", widget=forms.DateInput()
    )
    search = forms.CharField(required=False, max_length=100, help_text="Name or phone contains.")


@admin.register(Campaign)
class CampaignAdmin(ClientScopedAdmin):
    form = CampaignForm
    list_display = ["name", "number", "status", "progress_summary", "started_at", "created_at"]
    list_filter = ["status", "client", "number"]
    search_fields = ["name"]
    list_select_related = ["number", "client"]
    autocomplete_fields = ["template"]
    readonly_fields = ["status", "status_reason", "started_at", "paused_at", "finished_at", "progress_panel"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    fieldsets = [
        (None, {"fields": ["client", "name", "number"]}),
        ("Message", {"fields": ["message", "template", "template_parameters"]}),
        ("Schedule", {"fields": ["start_at", "quiet_from", "quiet_until", "send_days"]}),
        (
            "Progress",
            {"fields": ["status", "status_reason", "progress_panel", "started_at", "paused_at", "finished_at"]},
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not obj.is_editable:
            fields += CONTENT_FIELDS
        return fields

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # nothing to show about progress before it exists
            return self.fieldsets[:3]
        return self.fieldsets

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="progress")
    def progress_summary(self, obj: Campaign) -> str:
        progress = campaign_progress(obj)
        return f"{progress['done']:,}/{progress['total']:,} ({progress['percent']}%)"

    @admin.display(description="progress")
    def progress_panel(self, obj: Campaign) -> str:
        progress = campaign_progress(obj)
        return render_to_string(
            "admin/campaigns/campaign/progress.html",
            {
                "campaign": obj,
                "progress": progress,
                "rows": [(s.value, s.label, progress["counts"][s.value]) for s in Recipient.Status],
                "progress_url": reverse("admin:campaigns_campaign_progress", args=[obj.pk]),
            },
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            can_change = self.has_change_permission(request, obj)
            context["campaign_buttons"] = [
                (action, label, confirm)
                for action, label, allowed, confirm in BUTTONS
                if can_change and obj.status in allowed
            ]
            context["can_import"] = can_change and obj.is_editable
            context["recipients_url"] = (
                reverse("admin:campaigns_recipient_changelist") + f"?campaign__id__exact={obj.pk}"
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- extra views -------------------------------------------------------------------------------------------

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("<int:object_id>/import/", view(self.import_view), name="campaigns_campaign_import"),
            path("<int:object_id>/from-contacts/", view(self.contacts_view), name="campaigns_campaign_contacts"),
            path("<int:object_id>/preview/", view(self.preview_view), name="campaigns_campaign_preview"),
            path("<int:object_id>/progress.json", view(self.progress_view), name="campaigns_campaign_progress"),
            path("<int:object_id>/export.csv", view(self.export_view), name="campaigns_campaign_export"),
            path("<int:object_id>/do/<str:action>/", view(self.action_view), name="campaigns_campaign_action"),
            *super().get_urls(),
        ]

    def _campaign(self, request: HttpRequest, object_id: int, *, change: bool) -> Campaign:
        campaign = self.get_object(request, str(object_id))
        if campaign is None or not self.has_view_or_change_permission(request, campaign):
            raise Http404("No such campaign.")
        if change and not self.has_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _back(self, campaign: Campaign) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def action_view(self, request: HttpRequest, object_id: int, action: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = self._campaign(request, object_id, change=True)
        user = request.user
        try:
            if action == "start":
                campaign = campaign_start(campaign=campaign, user=user)
                done = "Scheduled." if campaign.status == C.SCHEDULED else "Started: sending now."
            elif action == "pause":
                campaign_pause(campaign=campaign, user=user)
                done = "Paused: nothing more is sent until you resume."
            elif action == "resume":
                campaign_resume(campaign=campaign, user=user)
                done = "Resumed."
            elif action == "cancel":
                campaign_cancel(campaign=campaign, user=user)
                done = "Cancelled: recipients not yet sent were skipped."
            elif action == "retry-unknown":
                count = campaign_recipients_retry_unknown(campaign=campaign, user=user)
                done = f"{count} recipient(s) whose outcome was unknown will be sent again."
            else:
                raise Http404("No such action.")
        except CampaignError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return self._back(campaign)

    def import_view(self, request: HttpRequest, object_id: int):
        campaign = self._campaign(request, object_id, change=True)
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                record = recipients_import(
                    campaign=campaign,
                    filename=upload.name,
                    data=upload.read(),
                    mode=form.cleaned_data["mode"],
                    user=request.user,
                )
            except ImportRefused as exc:
                form.add_error("file", exc.message)
            else:
                self.report_import(request, record)
                return self._back(campaign)
        return self._form_page(request, campaign, form, "Import recipients", multipart=True)

    def contacts_view(self, request: HttpRequest, object_id: int):
        campaign = self._campaign(request, object_id, change=True)
        form = ContactsForm(request.POST or None)
        form.fields["queue"].queryset = client_scope(Queue.objects.filter(client=campaign.client), request.user)
        form.fields["number"].queryset = client_scope(
            WhatsAppNumber.objects.filter(client=campaign.client), request.user
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            since = data["active_since"]
            try:
                record = recipients_add_from_contacts(
                    campaign=campaign,
                    queue=data["queue"],
                    number=data["number"],
                    active_since=timezone.make_aware(datetime.combine(since, time.min)) if since else None,
                    search=data["search"],
                    user=request.user,
                )
            except ImportRefused as exc:
                form.add_error(None, exc.message)
            else:
                self.report_import(request, record)
                return self._back(campaign)
        return self._form_page(request, campaign, form, "Add recipients from contacts")

    def _form_page(self, request, campaign: Campaign, form, title: str, *, multipart: bool = False):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "campaign": campaign,
            "original": campaign,
            "form": form,
            "title": f"{title}: {campaign.name}",
            "multipart": multipart,
        }
        return render(request, "admin/campaigns/campaign/form_page.html", context)

    def report_import(self, request: HttpRequest, record: RecipientImport) -> None:
        url = reverse("admin:campaigns_recipientimport_change", args=[record.pk])
        summary = (
            f"{record.rows} row(s): {record.added} added, {record.merged} merged as duplicates, "
            f"{record.skipped} skipped (opted out), {record.rejected} rejected"
        )
        if not record.applied:
            self.message_user(
                request,
                format_html(
                    'Nothing imported: {} bad row(s) and you chose all or nothing. {}. <a href="{}">Full report</a>',
                    record.rejected,
                    summary,
                    url,
                ),
                messages.ERROR,
            )
        else:
            level = messages.WARNING if record.rejected else messages.SUCCESS
            self.message_user(request, format_html('{}. <a href="{}">Full report</a>', summary, url), level)
        for error in record.errors[:20]:
            where = f"line {error['line']}: " if error.get("line") else ""
            self.message_user(request, f"{where}{error['reason']}", messages.ERROR)
        if len(record.errors) > 20:
            self.message_user(request, f"… and {record.rejected - 20} more in the full report.", messages.ERROR)

    def preview_view(self, request: HttpRequest, object_id: int):
        campaign = self._campaign(request, object_id, change=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "campaign": campaign,
            "title": f"Preview: {campaign.name}",
            "rows": campaign_preview(campaign, limit=5),
        }
        return render(request, "admin/campaigns/campaign/preview.html", context)

    def progress_view(self, request: HttpRequest, object_id: int):
        campaign = self._campaign(request, object_id, change=False)
        return JsonResponse(campaign_progress(campaign))

    def export_view(self, request: HttpRequest, object_id: int):
        campaign = self._campaign(request, object_id, change=False)

        class Echo:
            def write(self, value):
                return value

        writer = csv.writer(Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in campaign_export_rows(campaign)), content_type="text/csv; charset=utf-8"
        )
        name = slugify(campaign.name) or f"campaign-{campaign.pk}"
        response["Content-Disposition"] = f'attachment; filename="{name}-recipients.csv"'
        return response


class RecipientStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Recipient.Status.choices

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Recipient)
class RecipientAdmin(ClientScopedAdmin):
    list_display = ["phone", "contact", "campaign", "status", "error_code", "error_reason", "sent_at", "line"]
    list_filter = [RecipientStatusFilter, "campaign"]
    search_fields = ["phone", "contact__name"]
    list_select_related = ["contact", "campaign"]
    actions = ["retry_unknown"]
    readonly_fields = [
        "campaign",
        "contact",
        "phone",
        "variables",
        "line",
        "status",
        "status_at",
        "error_code",
        "error_reason",
        "message",
        "claimed_at",
        "sent_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Send again to the selected recipients whose outcome is unknown", permissions=["change"])
    def retry_unknown(self, request, queryset) -> None:
        total = 0
        for campaign_id in (
            queryset.filter(status=Recipient.Status.UNKNOWN).values_list("campaign", flat=True).distinct()
        ):
            ids = list(queryset.filter(campaign_id=campaign_id).values_list("pk", flat=True))
            campaign = Campaign.objects.get(pk=campaign_id)
            try:
                total += campaign_recipients_retry_unknown(campaign=campaign, recipient_ids=ids, user=request.user)
            except CampaignError as exc:
                self.message_user(request, f"{campaign.name}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{total} recipient(s) will be sent again.", messages.SUCCESS)


@admin.register(RecipientImport)
class RecipientImportAdmin(ClientScopedAdmin):
    list_display = ["created_at", "campaign", "source", "mode", "applied", "rows", "added", "rejected"]
    list_filter = ["applied", "campaign"]
    readonly_fields = [
        "campaign",
        "source",
        "mode",
        "applied",
        "rows",
        "added",
        "merged",
        "skipped",
        "rejected",
        "error_list",
        "created_by",
        "created_at",
    ]
    exclude = ["errors"]

    @admin.display(description="rejected rows")
    def error_list(self, obj: RecipientImport) -> str:
        if not obj.errors:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{}{}</li>", ((f"line {e['line']}: " if e.get("line") else "", e["reason"]) for e in obj.errors)
            ),
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
