"""The REST API's conversations (docs/api.md): list and read them, read and send messages, assign and resolve.

Every view asks `api_access(request)` what the caller may see and do, with the CRM's own rules (crm/access.py,
as crm/views/agent.py uses them): a conversation the caller may not see answers 404, one they may see but not act
on answers 403, and a service's refusal keeps its code (409). A token acts as staff of its one client. Views
validate input and read through `conversations.selectors`; changes go through `conversations.services.actions`.

People reply through `conversation_reply`, as in the CRM (a reply to a conversation nobody has takes it). A token
is nobody's agent (its user is in no queue), so it never takes a conversation: `conversation_send_for_integration`
sends as the integration (origin `api`) and leaves the assignment as it is.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.api.serializers import ConversationDetailSerializer, ConversationRowSerializer, MessageSerializer
from conversations.models import Conversation, Message, MessageTemplate
from conversations.selectors import (
    conversation_detail_get_for_api,
    conversation_get_for_api,
    conversation_list_for_api,
    message_list_for_api,
)
from conversations.services.actions import (
    ConversationActionError,
    conversation_reply,
    conversation_resolve,
    conversation_send_for_integration,
    conversation_take,
    conversation_transfer,
)
from conversations.services.outbound import (
    MAX_TEMPLATE_VALUE,
    MAX_TEXT_CHARS,
    OutboundRefused,
    Template,
    template_to_send,
)
from crm import inbox
from crm.access import Access
from crm.api.auth import api_access, api_token
from crm.api.errors import ApiRefused
from crm.api.pagination import ApiPagination, paginated_response
from crm.models import ApiToken

READ, SEND = ApiToken.Scope.READ, ApiToken.Scope.SEND
MAX_ID = 2**63 - 1
# `since` reaches this far back: a write committed just after a poll may carry an `updated_at` slightly older than
# the poll (the CRM's conversation page does the same). The overlap repeats a few messages; callers keep ids.
SINCE_MARGIN = timedelta(seconds=5)
SEND_REFUSED = OpenApiResponse(
    description="Not sent; `error.code` says why: window_closed (only a template now), opted_out, "
    "templates_unsupported, number_inactive, engine_unavailable, no_address, resolved, assigned_elsewhere."
)
ACTION_REFUSED = OpenApiResponse(
    description="The conversation's state does not allow it; `error.code` says why: resolved, same_queue, "
    "invalid_agent, invalid_queue, assigned_elsewhere (a colleague took it meanwhile)."
)


def _id_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def _rows_wanted(request: Request) -> int:
    """How many rows of the list the requested page reaches (for the inbox's search, which reads only those)."""
    size = ApiPagination().get_page_size(request)
    page = inbox.int_or_none(request.query_params.get("page")) or 1
    return min(max(page, 1), inbox.MAX_PAGE) * size + 1


def _visible(request: Request, pk: int) -> tuple[Access, Conversation]:
    access = api_access(request)
    conversation = conversation_get_for_api(access=access, pk=pk)
    if conversation is None:
        raise NotFound(_("No such conversation."))
    return access, conversation


def _actionable(request: Request, pk: int) -> tuple[Access, Conversation]:
    access, conversation = _visible(request, pk)
    if not access.can_act(conversation):
        raise PermissionDenied(_("This conversation is assigned to someone else; ask a supervisor."))
    return access, conversation


def _acted_on(pk: int) -> Response:
    """The conversation after an action, as its detail. The caller acted on it, so it is shown even when a
    transfer took it out of what they may see."""
    conversation = conversation_detail_get_for_api(pk=pk, access=None)
    return Response(ConversationGetApi.OutputSerializer(conversation).data)


def _refused(exc: ConversationActionError | OutboundRefused) -> ApiRefused:
    return ApiRefused(exc.code, exc.message)


# -- conversations --------------------------------------------------------------------------------------------


class ConversationListApi(APIView):
    """The conversations the caller may see, newest activity first."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=["active", "pending", "ai", "open", "resolved"],
            required=False,
            help_text="active: any but resolved; ai: answered by the AI assistant.",
        )
        queue = _id_field(required=False, help_text="A queue's id.")
        number = _id_field(required=False, help_text="A number's id.")
        assigned_to = serializers.CharField(
            required=False, help_text='A user\'s id, "me" (the caller) or "none" (nobody\'s).'
        )
        contact = _id_field(required=False, help_text="A contact's id.")
        q = serializers.CharField(
            required=False, max_length=100, help_text="Contact name, username or phone, or a word of a message."
        )
        updated_since = serializers.DateTimeField(required=False, help_text="ISO 8601; changed at or after it.")

        def validate_assigned_to(self, value: str) -> str | int:
            if value in ("me", "none"):
                return value
            if value.isascii() and value.isdecimal() and len(value) <= 19 and 0 < int(value) <= MAX_ID:
                return int(value)
            raise serializers.ValidationError(_('A user id, "me" or "none".'))

    class OutputSerializer(ConversationRowSerializer):
        pass

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        operation_id="conversations_list",
        tags=["conversations"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = conversation_list_for_api(
            access=api_access(request), filters=filters.validated_data, search_rows=_rows_wanted(request)
        )
        return paginated_response(request, self, rows, self.OutputSerializer)


class ConversationGetApi(APIView):
    """One conversation, with whether free text can be sent now."""

    class OutputSerializer(ConversationDetailSerializer):
        pass

    @extend_schema(responses=OutputSerializer, operation_id="conversations_get", tags=["conversations"])
    def get(self, request: Request, pk: int) -> Response:
        conversation = conversation_detail_get_for_api(pk=pk, access=api_access(request))
        if conversation is None:
            raise NotFound(_("No such conversation."))
        return Response(self.OutputSerializer(conversation).data)


# -- messages -------------------------------------------------------------------------------------------------


class ConversationMessageListApi(APIView):
    """A conversation's messages, notes and notices: oldest first, or newest first; `since` for polling."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        order = serializers.ChoiceField(
            choices=["oldest", "newest"], default="oldest", help_text="oldest first (default) or newest first."
        )
        since = serializers.DateTimeField(
            required=False,
            help_text="ISO 8601: messages written or changed since then (a few seconds before, to be safe: "
            "keep what you have by id).",
        )

        def validate_since(self, value):
            try:
                return value - SINCE_MARGIN
            except OverflowError:
                raise serializers.ValidationError(_("Too long ago.")) from None

    class OutputSerializer(MessageSerializer):
        pass

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        description="A conversation's messages, notes and notices (direction int), oldest first unless "
        "`order=newest`. Poll with `since` (the newest `updated_at` you have) for new messages and new statuses.",
        operation_id="conversations_messages_list",
        tags=["conversations"],
    )
    def get(self, request: Request, pk: int) -> Response:
        _access, conversation = _visible(request, pk)
        filters = ConversationMessageListApi.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        messages = message_list_for_api(
            conversation=conversation, since=wanted.get("since"), newest_first=wanted["order"] == "newest"
        )
        return paginated_response(request, self, messages, ConversationMessageListApi.OutputSerializer)


class ConversationMessageSendApi(APIView):
    """Send a text or an approved template to the conversation's customer (queued: status pending).

    A person's reply takes a conversation nobody has, as in the CRM; a token's does not (origin `api`)."""

    required_scope = SEND

    class InputSerializer(serializers.Serializer):
        class TemplateSerializer(serializers.Serializer):
            name = serializers.CharField(max_length=512)
            language = serializers.CharField(max_length=15, help_text="Meta's language code, e.g. es, en_US.")
            parameters = serializers.ListField(
                child=serializers.CharField(max_length=MAX_TEMPLATE_VALUE),
                required=False,
                default=list,
                max_length=100,
                help_text="One value per placeholder of the template's body, {{1}} first.",
            )

        text = serializers.CharField(required=False, max_length=MAX_TEXT_CHARS)
        template = TemplateSerializer(required=False)
        reply_to = _id_field(required=False, help_text="The id of a message of this conversation to quote.")

        def validate(self, attrs: dict) -> dict:
            if ("text" in attrs) == ("template" in attrs):
                raise ValidationError({"text": [_("Send either a text or a template, not both or neither.")]})
            return attrs

    class OutputSerializer(MessageSerializer):
        pass

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 409: SEND_REFUSED},
        description="Send a text, or an approved template of the client usable on the conversation's number, "
        "to the customer: stored as pending, sent by a worker. A person's message takes a conversation nobody "
        "has (as in the CRM); a token's is the integration's (origin api) and assigns nobody. Either stops the AI "
        "assistant if it was answering.",
        operation_id="conversations_messages_send",
        tags=["conversations"],
    )
    def post(self, request: Request, pk: int) -> Response:
        access, conversation = _actionable(request, pk)
        incoming = ConversationMessageSendApi.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        reply_to = None
        if "reply_to" in data:
            reply_to = Message.objects.filter(pk=data["reply_to"], conversation=conversation).first()
            if reply_to is None:
                raise ValidationError({"reply_to": [_("No such message in this conversation.")]})
        template = _template_wanted(conversation, data["template"]) if "template" in data else None
        text = None if template else data["text"]
        token = api_token(request)
        try:
            if token is None:
                message = conversation_reply(
                    conversation=conversation,
                    by=request.user,
                    text=text,
                    template=template,
                    reply_to=reply_to,
                    supervising=access.supervises(conversation),
                )
            else:
                message = conversation_send_for_integration(
                    conversation=conversation, by=token, text=text, template=template, reply_to=reply_to
                )
        except (ConversationActionError, OutboundRefused) as exc:
            raise _refused(exc) from None
        return Response(ConversationMessageSendApi.OutputSerializer(message).data, status=status.HTTP_201_CREATED)


def _template_wanted(conversation: Conversation, wanted: dict) -> Template:
    """The active template of the conversation's client usable on its number (crm/inbox.py `templates_for`) named
    in the request, with its values: 400 unless there is one, and a value for each of its placeholders."""
    chosen: MessageTemplate | None = next(
        (t for t in inbox.templates_for(conversation) if (t.name, t.language) == (wanted["name"], wanted["language"])),
        None,
    )
    if chosen is None:
        raise ValidationError({"template": {"name": [_("No active template of that name and language here.")]}})
    values = wanted["parameters"]
    if len(values) != len(chosen.placeholders):
        raise ValidationError(
            {
                "template": {
                    "parameters": [
                        _("This template takes %(n)s value(s), one per placeholder.") % {"n": len(chosen.placeholders)}
                    ]
                }
            }
        )
    return template_to_send(template=chosen, values=values)


class ConversationMessagesApi(ConversationMessageListApi, ConversationMessageSendApi):
    """/conversations/{id}/messages/: GET lists (read scope), POST sends (send scope). The two operations keep
    their own classes; this one only routes them, asking the scope of the method's operation."""

    @property
    def required_scope(self) -> str:
        if self.request.method == "POST":
            return ConversationMessageSendApi.required_scope
        return READ


# -- actions --------------------------------------------------------------------------------------------------


class ConversationAssignApi(APIView):
    """Give the conversation to an agent, to a queue, or to an agent of another queue; an agent id that is the
    caller's own takes it (as the CRM's Take)."""

    required_scope = SEND

    class InputSerializer(serializers.Serializer):
        agent = _id_field(required=False, help_text="A user id: an active member of the (new) queue.")
        queue = _id_field(required=False, help_text="An active queue of the conversation's business.")

        def validate(self, attrs: dict) -> dict:
            if not attrs:
                raise ValidationError({"agent": [_("Give an agent, a queue, or both.")]})
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={200: ConversationGetApi.OutputSerializer, 409: ACTION_REFUSED},
        operation_id="conversations_assign",
        tags=["conversations"],
    )
    def post(self, request: Request, pk: int) -> Response:
        access, conversation = _actionable(request, pk)
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        queues, members = inbox.transfer_targets(access=access, conversation=conversation)
        to_queue = None
        if "queue" in data:
            to_queue = next((q for q in queues if q.pk == data["queue"]), None)
            if to_queue is None:
                raise ValidationError({"queue": [_("No active queue with this id in the conversation's business.")]})
        queue_id = to_queue.pk if to_queue is not None else conversation.queue_id
        moves = queue_id != conversation.queue_id
        supervising = access.supervises(conversation)
        try:
            if "agent" not in data:
                conversation_transfer(
                    conversation=conversation, by=request.user, to_queue=to_queue, supervising=supervising
                )
            elif data["agent"] == request.user.pk and api_token(request) is None and not moves:
                conversation_take(conversation=conversation, user=request.user, supervising=supervising)
            else:
                member = next((m for m in members if (m.user_id, m.queue_id) == (data["agent"], queue_id)), None)
                if member is None:
                    raise ValidationError({"agent": [_("Not an active member of the conversation's (new) queue.")]})
                conversation_transfer(
                    conversation=conversation,
                    by=request.user,
                    to_user=member.user,
                    to_queue=to_queue if moves else None,
                    supervising=supervising,
                )
        except ConversationActionError as exc:
            raise _refused(exc) from None
        return _acted_on(conversation.pk)


class ConversationResolveApi(APIView):
    """Resolve the conversation (already resolved: unchanged)."""

    required_scope = SEND

    @extend_schema(
        request=None,
        responses={200: ConversationGetApi.OutputSerializer, 409: ACTION_REFUSED},
        operation_id="conversations_resolve",
        tags=["conversations"],
    )
    def post(self, request: Request, pk: int) -> Response:
        access, conversation = _actionable(request, pk)
        try:
            conversation_resolve(
                conversation=conversation, by=request.user, supervising=access.supervises(conversation)
            )
        except ConversationActionError as exc:
            raise _refused(exc) from None
        return _acted_on(conversation.pk)
