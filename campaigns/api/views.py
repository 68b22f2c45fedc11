"""Campaigns over the REST API (docs/api.md, docs/campaigns.md): list, detail, create a draft, import recipients,
start, pause, resume, cancel and progress, with the admin's rules and services.

Campaigns are an operator (admin) domain: a person signed in must be staff for every endpoint, reads included; a
token needs the read scope to read and the admin scope to change anything.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.api.serializers import (
    CampaignNumberSerializer,
    CampaignRecipientCountsSerializer,
    CampaignScheduleSerializer,
    CampaignTemplateSerializer,
)
from campaigns.models import WEEKDAYS, Campaign, RecipientImport
from campaigns.selectors import (
    campaign_counts,
    campaign_list_for_access,
    campaign_progress,
    recipient_counts_by_campaign,
)
from campaigns.services import (
    CampaignError,
    ImportRefused,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_resume,
    campaign_start,
    recipients_import,
)
from conversations.models import MessageTemplate
from crm.api.auth import ScopePermission, api_access, api_token
from crm.api.errors import ApiRefused, error_body
from crm.api.pagination import ApiPagination, paginated_response
from crm.models import ApiToken
from sessions.models import WhatsAppNumber

TAGS = ["campaigns"]
STATUS_HELP = "draft, scheduled, running, paused, completed or cancelled."


class StaffOnly(BasePermission):
    """Campaigns are run by operators: a person must be staff (tokens act as staff of their client)."""

    message = "Campaigns are for staff."

    def has_permission(self, request: Request, view) -> bool:
        return api_token(request) is not None or api_access(request).is_staff


class CampaignApi(APIView):
    """What every campaign endpoint shares: who may call it, and the campaigns the caller may see."""

    permission_classes = [IsAuthenticated, ScopePermission, StaffOnly]

    def campaigns(self, filters: dict | None = None) -> QuerySet[Campaign]:
        return campaign_list_for_access(access=api_access(self.request), filters=filters)

    def campaign(self, pk: int) -> Campaign:
        campaign = self.campaigns().filter(pk=pk).first()
        if campaign is None:
            raise NotFound("No such campaign.")
        return campaign


# --- output -------------------------------------------------------------------------------------------------


def _summary(campaign: Campaign, counts: dict[str, int]) -> dict:
    return {
        "id": campaign.pk,
        "client": campaign.client_id,
        "name": campaign.name,
        "number": {"id": campaign.number_id, "alias": campaign.number.alias, "engine": campaign.number.engine},
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "start_at": campaign.start_at,
        "started_at": campaign.started_at,
        "paused_at": campaign.paused_at,
        "finished_at": campaign.finished_at,
        "counts": counts,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


def _detail(campaign: Campaign) -> dict:
    template = campaign.template
    return {
        **_summary(campaign, campaign_counts(campaign)),
        "is_editable": campaign.is_editable,
        "message": campaign.message,
        "template": (
            {"id": template.pk, "name": template.name, "language": template.language} if template is not None else None
        ),
        "template_parameters": campaign.template_parameters or [],
        "schedule": {
            "start_at": campaign.start_at,
            "quiet_from": campaign.quiet_from,
            "quiet_until": campaign.quiet_until,
            "send_days": campaign.send_days or [],
        },
    }


# --- list and detail ----------------------------------------------------------------------------------------


class CampaignListApi(CampaignApi):
    """The caller's campaigns, newest first."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Campaign.Status.values, required=False, help_text=STATUS_HELP)
        number = serializers.IntegerField(required=False, min_value=1, help_text="Only this number's campaigns.")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        client = serializers.IntegerField(help_text="The client's id.")
        name = serializers.CharField()
        number = CampaignNumberSerializer()
        status = serializers.CharField(help_text=STATUS_HELP)
        status_reason = serializers.CharField(help_text="Why it paused or stopped; empty otherwise.")
        start_at = serializers.DateTimeField(allow_null=True, help_text="When it may start; null: when started.")
        started_at = serializers.DateTimeField(allow_null=True)
        paused_at = serializers.DateTimeField(allow_null=True)
        finished_at = serializers.DateTimeField(allow_null=True)
        counts = CampaignRecipientCountsSerializer()
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        operation_id="campaigns_list",
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)

        def rows(page: list) -> list[dict]:
            counts = recipient_counts_by_campaign(campaign_ids=[c.pk for c in page])
            return [_summary(c, counts[c.pk]) for c in page]

        campaigns = self.campaigns(filters.validated_data)
        return paginated_response(request, self, campaigns, self.OutputSerializer, rows=rows)


class CampaignDetailApi(CampaignApi):
    """One campaign: its message or template, its schedule, and its recipients by status."""

    class OutputSerializer(CampaignListApi.OutputSerializer):
        is_editable = serializers.BooleanField(help_text="Whether recipients may still be imported (not started).")
        message = serializers.CharField(help_text="Free text (WhatsApp Web and sandbox numbers); empty for a template.")
        template = CampaignTemplateSerializer(allow_null=True, help_text="Cloud API numbers: the approved template.")
        template_parameters = serializers.ListField(
            child=serializers.CharField(), help_text="One value per placeholder of the template, in order."
        )
        schedule = CampaignScheduleSerializer()

    @extend_schema(responses=OutputSerializer, operation_id="campaigns_retrieve", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(_detail(self.campaign(pk))).data)


def _detail_response(campaign: Campaign, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(CampaignDetailApi.OutputSerializer(_detail(campaign)).data, status=status_code)


# --- create -------------------------------------------------------------------------------------------------


def _model_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """A model's ValidationError as the API's `fields` (errors about no field in particular as non_field_errors)."""
    if not hasattr(exc, "error_dict"):
        return {"non_field_errors": list(exc.messages)}
    return {
        ("non_field_errors" if field == "__all__" else field): list(messages)
        for field, messages in exc.message_dict.items()
    }


class CampaignCreateApi(CampaignApi):
    """A new draft campaign, checked with the same rules as in admin (the model's validation)."""

    required_scope = ApiToken.Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        number = serializers.IntegerField(min_value=1, help_text="Id of a WhatsApp number of the client.")
        message = serializers.CharField(
            required=False,
            allow_blank=True,
            trim_whitespace=False,
            default="",
            help_text="WhatsApp Web and sandbox numbers: the text, with {{variable}} for a column of the recipients' "
            "file and {{variable|fallback}} for a value used when it is empty.",
        )
        template = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            default=None,
            help_text="Cloud API numbers: id of an approved message template of the client.",
        )
        template_parameters = serializers.ListField(
            child=serializers.CharField(allow_blank=True, trim_whitespace=False),
            required=False,
            default=list,
            help_text='One value per placeholder of the template, in order, e.g. ["{{nombre}}"].',
        )
        start_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        quiet_from = serializers.TimeField(required=False, allow_null=True, default=None)
        quiet_until = serializers.TimeField(required=False, allow_null=True, default=None)
        send_days = serializers.ListField(
            child=serializers.ChoiceField(choices=WEEKDAYS),
            required=False,
            help_text="Days it may send: 1 Monday … 7 Sunday (the number's time zone). Default: every day.",
        )

    @extend_schema(
        request=InputSerializer,
        responses={201: CampaignDetailApi.OutputSerializer},
        operation_id="campaigns_create",
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        access = api_access(request)
        # The client comes along for the service; no secret of the number or the client is decrypted.
        numbers = WhatsAppNumber.objects.select_related("client").defer(
            "access_token", "verify_token", "client__meta_app_secret"
        )
        if access.client_ids is not None:
            numbers = numbers.filter(client_id__in=access.client_ids)
        number = numbers.filter(pk=data["number"]).first()
        if number is None:
            raise ValidationError({"number": ["No such number."]})
        template = None
        if data["template"] is not None:
            template = MessageTemplate.objects.filter(pk=data["template"], client_id=number.client_id).first()
            if template is None:
                raise ValidationError({"template": ["No such message template of this client."]})
        try:
            campaign = campaign_create(
                client=number.client,
                number=number,
                name=data["name"],
                message=data["message"],
                template=template,
                template_parameters=data["template_parameters"],
                start_at=data["start_at"],
                quiet_from=data["quiet_from"],
                quiet_until=data["quiet_until"],
                send_days=data.get("send_days"),
                user=request.user,
            )
        except DjangoValidationError as exc:
            raise ValidationError(_model_errors(exc)) from None
        return _detail_response(campaign, status.HTTP_201_CREATED)


class CampaignsApi(CampaignListApi, CampaignCreateApi):
    """/campaigns/ answers two operations: GET lists (CampaignListApi, read), POST creates (CampaignCreateApi,
    admin). Django routes a path to one view, so this one joins them; each keeps its own serializers and schema."""

    @property
    def required_scope(self) -> str:
        return ApiToken.Scope.ADMIN if self.request.method == "POST" else ApiToken.Scope.READ


# --- recipients ---------------------------------------------------------------------------------------------


class CampaignRecipientsImportApi(CampaignApi):
    """Recipients from a CSV or XLSX file, exactly as admin imports them (campaigns/services/imports.py).

    - `keep_good`: the good rows are added; rejected rows are listed with their line and reason (201).
    - `all_or_nothing`: any rejected row refuses the whole file and nothing is added: 400 with code
      `rows_rejected`, and `error.fields.file` lists every rejected row as "line N: reason". The import is still
      recorded (admin → Recipient imports) with its rows.
    - A file that cannot be imported at all (not a table, too big, no phone column, a column the message needs
      missing): 400 with `error.fields.file`. A campaign that has started: 409 `not_editable`.
    """

    required_scope = ApiToken.Scope.ADMIN
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text="CSV (UTF-8, Windows-1252 or Latin-1; comma, semicolon or tab) or XLSX; the first row names "
            "the columns: a phone column (phone, telefono, celular, whatsapp…) and one per variable."
        )
        mode = serializers.ChoiceField(
            choices=RecipientImport.Mode.values,
            default=RecipientImport.Mode.KEEP_GOOD,
            help_text="all_or_nothing: any bad row rejects the whole file; keep_good (default): add the good rows "
            "and list the bad ones.",
        )

    class OutputSerializer(serializers.Serializer):
        class RejectedSerializer(serializers.Serializer):
            line = serializers.IntegerField(allow_null=True, help_text="Line of the file (the header is line 1).")
            reason = serializers.CharField()

        id = serializers.IntegerField(help_text="The import's record.")
        source = serializers.CharField(help_text="The file's name.")
        mode = serializers.CharField(help_text="all_or_nothing or keep_good.")
        applied = serializers.BooleanField(help_text="Whether its rows were added.")
        rows = serializers.IntegerField(help_text="Data rows read (the header not counted).")
        added = serializers.IntegerField()
        merged = serializers.IntegerField(help_text="Duplicates: rows of a person already in the file or campaign.")
        skipped = serializers.IntegerField(help_text="Opted-out contacts, added as skipped.")
        rejected = serializers.IntegerField()
        rejected_rows = RejectedSerializer(many=True, help_text="The first 1,000 rejected rows and why.")
        created_at = serializers.DateTimeField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            201: OutputSerializer,
            400: OpenApiResponse(
                description="The file cannot be imported (`error.fields.file`), or an all_or_nothing import had "
                "rejected rows: code `rows_rejected`, every row in `error.fields.file` as “line N: reason”."
            ),
            409: OpenApiResponse(description="The campaign has started: recipients can no longer be added."),
        },
        operation_id="campaigns_recipients_import",
        tags=TAGS,
    )
    def post(self, request: Request, pk: int) -> Response:
        campaign = self.campaign(pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        limit = settings.CAMPAIGN_IMPORT_MAX_BYTES
        if upload.size > limit:  # refused before reading it into memory
            raise ValidationError(
                {"file": [f"The file “{upload.name}” is {upload.size:,} bytes; files up to {limit:,} can be imported."]}
            )
        if not campaign.is_editable:
            raise ApiRefused("not_editable", "Recipients can be added only before the campaign starts.")
        try:
            record = recipients_import(
                campaign=campaign,
                filename=upload.name,
                data=upload.read(),
                mode=serializer.validated_data["mode"],
                user=request.user,
            )
        except ImportRefused as exc:
            campaign.refresh_from_db(fields=["status"])
            if not campaign.is_editable:  # started meanwhile
                raise ApiRefused("not_editable", exc.message) from None
            raise ValidationError({"file": [exc.message]}) from None
        if not record.applied:
            message = (
                f"Nothing imported: {record.rejected} of {record.rows} row(s) rejected and the mode is all_or_nothing "
                f"(import {record.pk})."
            )
            reasons = [error["reason"] for error in record.errors]
            return Response(error_body("rows_rejected", message, {"file": reasons}), status=status.HTTP_400_BAD_REQUEST)
        data = {
            "id": record.pk,
            "source": record.source,
            "mode": record.mode,
            "applied": record.applied,
            "rows": record.rows,
            "added": record.added,
            "merged": record.merged,
            "skipped": record.skipped,
            "rejected": record.rejected,
            "rejected_rows": record.errors,
            "created_at": record.created_at,
        }
        return Response(self.OutputSerializer(data).data, status=status.HTTP_201_CREATED)


# --- lifecycle ----------------------------------------------------------------------------------------------


class CampaignLifecycleApi(CampaignApi):
    """Start, pause, resume or cancel with the campaign services; a refusal is 409 with the service's code
    (`invalid_state`, `no_recipients`, `number_inactive`, `missing_variables`, `invalid`)."""

    required_scope = ApiToken.Scope.ADMIN

    def run(self, pk: int, action, **kwargs) -> Response:
        campaign = self.campaign(pk)
        try:
            campaign = action(campaign=campaign, user=self.request.user, **kwargs)
        except CampaignError as exc:
            raise ApiRefused(exc.code, exc.message) from None
        return _detail_response(campaign)


LIFECYCLE_RESPONSES = {
    200: CampaignDetailApi.OutputSerializer,
    409: OpenApiResponse(description="The campaign cannot do that now: `error.code` says why (e.g. invalid_state)."),
}


class CampaignStartApi(CampaignLifecycleApi):
    """Start a draft: scheduled when its start time is ahead, running (sending) otherwise."""

    @extend_schema(request=None, responses=LIFECYCLE_RESPONSES, operation_id="campaigns_start", tags=TAGS)
    def post(self, request: Request, pk: int) -> Response:
        return self.run(pk, campaign_start)


class CampaignPauseApi(CampaignLifecycleApi):
    """Stop sending until resumed (a running or scheduled campaign)."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False, allow_blank=True, max_length=500, default="", help_text="Shown as its status reason."
        )

    @extend_schema(request=InputSerializer, responses=LIFECYCLE_RESPONSES, operation_id="campaigns_pause", tags=TAGS)
    def post(self, request: Request, pk: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.run(pk, campaign_pause, reason=serializer.validated_data["reason"])


class CampaignResumeApi(CampaignLifecycleApi):
    """Continue a paused campaign where it stopped."""

    @extend_schema(request=None, responses=LIFECYCLE_RESPONSES, operation_id="campaigns_resume", tags=TAGS)
    def post(self, request: Request, pk: int) -> Response:
        return self.run(pk, campaign_resume)


class CampaignCancelApi(CampaignLifecycleApi):
    """Stop for good: recipients not yet sent are skipped ("cancelled")."""

    @extend_schema(request=None, responses=LIFECYCLE_RESPONSES, operation_id="campaigns_cancel", tags=TAGS)
    def post(self, request: Request, pk: int) -> Response:
        return self.run(pk, campaign_cancel)


# --- progress -----------------------------------------------------------------------------------------------


class CampaignProgressApi(CampaignApi):
    """What admin's live progress panel shows: counts by status, share done, pace and time left at that pace."""

    class OutputSerializer(serializers.Serializer):
        campaign = serializers.IntegerField()
        status = serializers.CharField(help_text=STATUS_HELP)
        status_display = serializers.CharField(help_text="The status as people read it.")
        status_reason = serializers.CharField()
        total = serializers.IntegerField(help_text="Recipients.")
        done = serializers.IntegerField(help_text="Recipients no longer pending or being sent.")
        left = serializers.IntegerField(help_text="Recipients pending or being sent.")
        percent = serializers.FloatField(help_text="Share done, 0-100, one decimal.")
        counts = CampaignRecipientCountsSerializer()
        rate = serializers.FloatField(help_text="Messages per second the number may send.")
        eta_seconds = serializers.IntegerField(allow_null=True, help_text="Time left at that pace; null when idle.")
        eta_at = serializers.DateTimeField(allow_null=True, help_text="When it should be done; null when idle.")

    @extend_schema(responses=OutputSerializer, operation_id="campaigns_progress", tags=TAGS)
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(campaign_progress(self.campaign(pk))).data)
