"""The numbers of the REST API (docs/api.md, docs/sessions.md): WhatsApp numbers with their session state, the
QR code to pair a WhatsApp Web / sandbox number, and staff's connect / disconnect / reset.

Who sees a number: tokens and staff every number of their client(s); supervisors and agents the numbers whose
queue is one of theirs. A number outside that answers 404. The QR code (and the pairing code) links a phone to
the number, so among people only staff get it, as only staff pair numbers in admin. Secrets of a number (Cloud API
access token, verify token) are never part of an answer.
"""

from __future__ import annotations

import base64

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.access import Access
from crm.api.auth import api_access, api_token
from crm.api.errors import ApiRefused
from crm.api.pagination import ApiPagination, paginated_response
from crm.models import ApiToken
from sessions.models import Engine, NumberSession, SessionState, WhatsAppNumber
from sessions.qr import qr_png
from sessions.selectors import (
    number_get_for_access,
    number_has_connection,
    number_list_for_access,
    number_session_get,
    session_qr_waiting,
    session_state_change_list,
)
from sessions.services import (
    SessionActionError,
    session_connect_request,
    session_disconnect_request,
    session_reset,
)

TAGS = ["numbers"]
HISTORY_LIMIT = 20
ERROR_REF = {"$ref": "#/components/schemas/Error"}  # crm/api/schema.py adds the component
NUMBER_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The number's id.")


# -- what the answers show ----------------------------------------------------------------------------------


def _number_get(access: Access, pk: int) -> WhatsAppNumber:
    """The number if the caller may see it; 404 otherwise."""
    number = number_get_for_access(access=access, pk=pk)
    if number is None:
        raise exceptions.NotFound("No such number.")
    return number


def number_data(number: WhatsAppNumber) -> dict:
    """A number as the list and the detail show it (`NumberListApi.OutputSerializer`)."""
    session = number_session_get(number=number)
    return {
        "id": number.pk,
        "alias": number.alias,
        "display_number": number.display_number,
        "phone_number_id": number.phone_number_id,
        "engine": number.engine,
        "has_connection": number_has_connection(number=number),
        "is_active": number.is_active,
        "client": number.client_id,
        "queue": {"id": number.queue.pk, "name": number.queue.name} if number.queue else None,
        "state": session.state,
        "state_label": session.get_state_display(),
        "state_since": session.state_changed_at,
        "needs_attention": number.attention_since is not None,
        "attention_reason": number.attention_reason or None,
        "attention_since": number.attention_since,
        "created_at": number.created_at,
        "updated_at": number.updated_at,
    }


def may_pair(request: Request) -> bool:
    """Whether the caller may see what links a phone to a number (its QR code, its pairing code): staff in person,
    and tokens with the admin scope. A read token is for looking (a BI tool); pairing would let it read and send
    every chat of the number."""
    token = api_token(request)
    if token is not None:
        return token.allows(ApiToken.Scope.ADMIN)
    return api_access(request).is_staff


def state_data(number: WhatsAppNumber, session: NumberSession, *, may_pair: bool) -> dict:
    """A number's session as `NumberStateApi.OutputSerializer` shows it; the pairing code only to who may pair."""
    waiting = session_qr_waiting(session)
    return {
        "number": number.pk,
        "state": session.state,
        "state_label": session.get_state_display(),
        "reason": session.state_reason,
        "since": session.state_changed_at,
        "keep_connected": session.keep_connected,
        "has_connection": number_has_connection(number=number),
        "qr_available": waiting,
        "qr_expires_at": session.qr_expires_at if waiting else None,
        "pairing_code": (session.pairing_code or None) if may_pair else None,
        "last_connected_at": session.last_connected_at,
        "banned_until": session.banned_until,
    }


def refusal(number: WhatsAppNumber, error: SessionActionError | NumberSession.DoesNotExist) -> ApiRefused:
    """A session service's refusal as 409 with a stable code: the service's own (`no_connection`: a Cloud API
    number, nothing to connect; `inactive`: deactivated number), or `no_session` (the number has no session
    row)."""
    if isinstance(error, SessionActionError):
        return ApiRefused(error.code, error.message)
    return ApiRefused("no_session", f"{number.alias} has no session yet; save it once in admin.")


# -- numbers -------------------------------------------------------------------------------------------------


class NumberListApi(APIView):
    """The numbers the caller may see, a page at a time: tokens and staff every number of their client(s),
    supervisors and agents those of their queues."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        engine = serializers.ChoiceField(choices=Engine.choices, required=False)
        is_active = serializers.BooleanField(required=False, allow_null=True, default=None)
        state = serializers.ChoiceField(choices=SessionState.choices, required=False, help_text="Session state.")
        queue = serializers.IntegerField(required=False, min_value=1, help_text="A queue's id.")

    class OutputSerializer(serializers.Serializer):
        class QueueSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            name = serializers.CharField()

        id = serializers.IntegerField()
        alias = serializers.CharField()
        display_number = serializers.CharField()
        phone_number_id = serializers.CharField(
            help_text="Meta's phone-number id for Cloud API numbers; a placeholder (wsp-…) for the others."
        )
        engine = serializers.ChoiceField(choices=Engine.choices)
        has_connection = serializers.BooleanField(
            help_text="WhatsApp Web and sandbox numbers have a connection (state, QR code, connect / disconnect); "
            "Cloud API numbers have none (their session stays disconnected)."
        )
        is_active = serializers.BooleanField()
        client = serializers.IntegerField(help_text="The client's id.")
        queue = QueueSerializer(allow_null=True, help_text="Where the number's conversations go; null: nowhere.")
        state = serializers.ChoiceField(choices=SessionState.choices, help_text="The session's state.")
        state_label = serializers.CharField()
        state_since = serializers.DateTimeField(allow_null=True, help_text="When the session entered its state.")
        needs_attention = serializers.BooleanField(
            help_text="The provider stopped accepting sends from the number until staff act (expired token, "
            "restricted account)."
        )
        attention_reason = serializers.CharField(allow_null=True)
        attention_since = serializers.DateTimeField(allow_null=True)
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        operation_id="numbers_list",
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        numbers = number_list_for_access(access=api_access(request), filters=filters.validated_data)
        return paginated_response(
            request, self, numbers, self.OutputSerializer, rows=lambda page: [number_data(n) for n in page]
        )


class NumberDetailApi(APIView):
    """One number: what the list shows, its sending pace and its newest session state changes."""

    class OutputSerializer(NumberListApi.OutputSerializer):
        class HistorySerializer(serializers.Serializer):
            from_state = serializers.CharField(help_text="A session state code, as `state`.")
            state = serializers.ChoiceField(choices=SessionState.choices)
            reason = serializers.CharField()
            at = serializers.DateTimeField()

        send_rate = serializers.FloatField(
            allow_null=True, help_text="Messages per second; null: the engine's default."
        )
        daily_cap = serializers.IntegerField(allow_null=True, help_text="Campaign messages per day; null: no cap.")
        warmup_days = serializers.IntegerField()
        time_zone = serializers.CharField(
            help_text="IANA time zone of the daily cap and quiet hours (the site's when the number names none)."
        )
        state_history = HistorySerializer(
            many=True, help_text=f"The session's newest state changes, newest first (at most {HISTORY_LIMIT})."
        )

    @extend_schema(parameters=[NUMBER_ID], responses=OutputSerializer, operation_id="numbers_retrieve", tags=TAGS)
    def get(self, request: Request, id: int) -> Response:
        number = _number_get(api_access(request), id)
        history = session_state_change_list(number=number, limit=HISTORY_LIMIT)
        data = {
            **number_data(number),
            "send_rate": number.send_rate,
            "daily_cap": number.daily_cap,
            "warmup_days": number.warmup_days,
            "time_zone": number.zone.key,
            "state_history": [
                {"from_state": c.from_state, "state": c.state, "reason": c.reason, "at": c.created_at} for c in history
            ],
        }
        return Response(self.OutputSerializer(data).data)


# -- the session: state, QR code, actions ---------------------------------------------------------------------


class NumberStateApi(APIView):
    """The number's live session state, as the sessions worker last reported it."""

    class OutputSerializer(serializers.Serializer):
        number = serializers.IntegerField(help_text="The number's id.")
        state = serializers.ChoiceField(choices=SessionState.choices, help_text="The session's state.")
        state_label = serializers.CharField()
        reason = serializers.CharField(help_text="Why the session is in its state (may be empty).")
        since = serializers.DateTimeField(allow_null=True)
        keep_connected = serializers.BooleanField(
            help_text="What staff asked for: connect and stay connected (turned off by a disconnect, a logout "
            "from the phone, a conflict or an unscanned QR code)."
        )
        has_connection = serializers.BooleanField(help_text="False for Cloud API numbers: nothing to connect.")
        qr_available = serializers.BooleanField(help_text="A QR code waits to be scanned: GET …/qr/.")
        qr_expires_at = serializers.DateTimeField(allow_null=True)
        pairing_code = serializers.CharField(
            allow_null=True, help_text="The code to type on the phone instead of scanning, if asked; staff only."
        )
        last_connected_at = serializers.DateTimeField(allow_null=True)
        banned_until = serializers.DateTimeField(allow_null=True)

    @extend_schema(parameters=[NUMBER_ID], responses=OutputSerializer, operation_id="numbers_state", tags=TAGS)
    def get(self, request: Request, id: int) -> Response:
        access = api_access(request)
        number = _number_get(access, id)
        return Response(
            self.OutputSerializer(
                state_data(number, number_session_get(number=number), may_pair=may_pair(request))
            ).data
        )


class NumberQrApi(APIView):
    """The QR code to scan with the phone (WhatsApp > Linked devices) while the number waits for it. It links a
    phone to the number: only staff in person, and tokens with the admin scope, get it."""

    class OutputSerializer(serializers.Serializer):
        qr = serializers.CharField(help_text="The raw code, to draw with any QR library.")
        png = serializers.CharField(help_text="The code drawn as a PNG: data:image/png;base64,…")
        expires_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        parameters=[NUMBER_ID],
        responses={
            200: OutputSerializer,
            409: OpenApiResponse(
                response=ERROR_REF,
                description="`no_qr`: the number is not waiting for a scan; `no_connection`: a Cloud API number.",
            ),
        },
        operation_id="numbers_qr",
        tags=TAGS,
    )
    def get(self, request: Request, id: int) -> Response:
        access = api_access(request)
        number = _number_get(access, id)
        if not may_pair(request):
            raise exceptions.PermissionDenied("Only staff, and tokens with the admin scope, may pair a number.")
        if not number_has_connection(number=number):
            raise ApiRefused(
                "no_connection",
                f"{number.alias} uses the {number.get_engine_display()}, which has no QR code; only WhatsApp Web "
                "and sandbox numbers are paired.",
            )
        session = number_session_get(number=number)
        if not session_qr_waiting(session):
            raise ApiRefused(
                "no_qr",
                f"{number.alias} is not waiting for a QR scan ({session.get_state_display().lower()}); connect it "
                "first, or reset it if it is paired to another phone.",
            )
        png = base64.b64encode(qr_png(session.qr_code)).decode("ascii")
        data = {"qr": session.qr_code, "png": f"data:image/png;base64,{png}", "expires_at": session.qr_expires_at}
        response = Response(self.OutputSerializer(data).data)
        response["Cache-Control"] = "no-store"
        return response


ACTION_RESPONSES = {
    202: NumberStateApi.OutputSerializer,
    409: OpenApiResponse(
        response=ERROR_REF,
        description="`no_connection`: a Cloud API number; `inactive`: the number is deactivated; "
        "`no_session`: the number has no session row yet; `not_connectable`: the action does not apply now.",
    ),
}


class _NumberSessionActionApi(APIView):
    """A request to the sessions worker that owns the number; it carries it out (the answer says what was asked,
    the state changes follow)."""

    required_scope = ApiToken.Scope.ADMIN

    def number(self, request: Request, id: int) -> WhatsAppNumber:
        return _number_get(api_access(request), id)

    def act(self, request: Request, number: WhatsAppNumber, service) -> Response:
        try:
            service(number=number)
        except (SessionActionError, NumberSession.DoesNotExist) as error:
            raise refusal(number, error) from error
        session = NumberSession.objects.get(number=number)
        data = state_data(number, session, may_pair=True)  # only staff and admin tokens act on numbers
        return Response(NumberStateApi.OutputSerializer(data).data, status=status.HTTP_202_ACCEPTED)


class NumberConnectApi(_NumberSessionActionApi):
    """Connect the number and keep it connected; a QR code appears (…/qr/) when no phone is paired."""

    @extend_schema(
        parameters=[NUMBER_ID], request=None, responses=ACTION_RESPONSES, operation_id="numbers_connect", tags=TAGS
    )
    def post(self, request: Request, id: int) -> Response:
        return self.act(request, self.number(request, id), session_connect_request)


class NumberDisconnectApi(_NumberSessionActionApi):
    """Take the number offline; it stays paired and reconnects on connect without a new QR code."""

    @extend_schema(
        parameters=[NUMBER_ID],
        request=None,
        responses=ACTION_RESPONSES,
        operation_id="numbers_disconnect",
        tags=TAGS,
    )
    def post(self, request: Request, id: int) -> Response:
        return self.act(request, self.number(request, id), session_disconnect_request)


class NumberResetApi(_NumberSessionActionApi):
    """Log the number out and delete its device data: it ends disconnected and needs a new QR scan on connect.
    Asks for `{"confirm": true}`."""

    class InputSerializer(serializers.Serializer):
        confirm = serializers.BooleanField(
            help_text="Must be true: the phone is logged out and a new QR scan is needed to connect again."
        )

        def validate_confirm(self, value: bool) -> bool:
            if value is not True:
                raise serializers.ValidationError(
                    "Send true to confirm: the number is logged out and needs a new QR scan."
                )
            return value

    @extend_schema(
        parameters=[NUMBER_ID],
        request=InputSerializer,
        responses=ACTION_RESPONSES,
        operation_id="numbers_reset",
        tags=TAGS,
    )
    def post(self, request: Request, id: int) -> Response:
        number = self.number(request, id)
        self.InputSerializer(data=request.data).is_valid(raise_exception=True)
        return self.act(request, number, session_reset)
