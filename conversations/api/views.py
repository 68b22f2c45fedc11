"""The REST API's conversations and contacts (docs/api.md): list and read them, read and send messages, assign
and resolve.

Every view asks `api_access(request)` what the caller may see and do, with the CRM's own rules (crm/access.py,
as crm/views/agent.py uses them): a conversation the caller may not see answers 404, one they may see but not act
on answers 403, and a service's refusal keeps its code (409). A token acts as staff of its one client.

People reply through `conversation_reply`, as in the CRM (a reply to a conversation nobody has takes it). A token
is nobody's agent (its user is in no queue), so it never takes a conversation: `_integration_send` sends as the
integration (origin `api`) and leaves the assignment as it is.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.api.serializers import (
    ConversationDetailSerializer,
    ConversationNumberSerializer,
    ConversationRowSerializer,
    MessageSerializer,
)
from conversations.models import Contact, Conversation, Message, MessageTemplate
from conversations.services.actions import (
    ConversationActionError,
    conversation_reply,
    conversation_resolve,
    conversation_take,
    conversation_transfer,
)
from conversations.services.ai import ai_hand_off
from conversations.services.outbound import MAX_TEXT_CHARS, OutboundRefused, Template, message_send
from crm import inbox
from crm.access import Access
from crm.api.auth import api_access, api_token
from crm.api.errors import ApiRefused
from crm.api.pagination import ApiPagination
from crm.models import ApiToken
from sessions.engines import EngineUnavailable
from sessions.selectors import number_send_rules

READ, SEND = ApiToken.Scope.READ, ApiToken.Scope.SEND
MAX_ID = 2**63 - 1
MAX_TEMPLATE_VALUE = 1024  # Meta's limit for a body parameter (as the CRM's composer)
CONTACT_CONVERSATIONS = 20  # conversations shown with a contact
# `since` reaches this far back: a write committed just after a poll may carry an `updated_at` slightly older than
# the poll (the CRM's conversation page does the same). The overlap repeats a few messages; callers keep ids.
SINCE_MARGIN = timedelta(seconds=5)

# What a conversation row shows, nothing more: a number's encrypted tokens would be decrypted row by row.
ROW_FIELDS = (
    "client_id",
    "status",
    "queue_id",
    "number_id",
    "contact_id",
    "assigned_to_id",
    "last_message_at",
    "last_inbound_at",
    "unread_count",
    "ai_stop_reason",
    "created_at",
    "contact__name",
    "contact__phone",
    "number__alias",
    "queue__name",
    "assigned_to__username",
    "assigned_to__first_name",
    "assigned_to__last_name",
)
DETAIL_FIELDS = (*ROW_FIELDS, "waiting_since", "assigned_at", "resolved_at", "snoozed_until", "number__engine")
MESSAGE_FIELDS = (
    "conversation_id",
    "direction",
    "origin",
    "kind",
    "body",
    "status",
    "error_code",
    "error_reason",
    "provider_message_id",
    "quoted_id",
    "sent_by_id",
    "sent_by__username",
    "created_at",
    "updated_at",
    "status_at",
    "media_id",
    "media_mime_type",
    "media_filename",
)
NEWEST_FIRST = ["-last_message_at", "-pk"]  # the inbox's order, served by its indexes
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


def _paginated(request: Request, view: APIView, queryset, serializer_class) -> Response:
    paginator = ApiPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _rows_wanted(request: Request) -> int:
    """How many rows of the list the requested page reaches (for the inbox's search, which reads only those)."""
    size = ApiPagination().get_page_size(request)
    page = inbox.int_or_none(request.query_params.get("page")) or 1
    return min(max(page, 1), inbox.MAX_PAGE) * size + 1


# -- reads (they belong in conversations/selectors.py, which this change may not touch) --------------------------


def _conversations(access: Access) -> QuerySet[Conversation]:
    return access.conversations().select_related("contact", "number", "queue", "assigned_to").only(*ROW_FIELDS)


def _conversation_detail(queryset: QuerySet[Conversation], pk: int) -> Conversation | None:
    conversation = queryset.select_related("contact", "number", "queue", "assigned_to").only(*DETAIL_FIELDS)
    conversation = conversation.filter(pk=pk).first()
    if conversation is not None:
        conversation.window = _window(conversation)
    return conversation


def _window(conversation: Conversation) -> dict:
    """Whether free text can be sent now, or only an approved template (Cloud API's 24-hour window): what
    crm/views/agent.py `_window` shows the agent."""
    try:
        rules = number_send_rules(number=conversation.number)
    except EngineUnavailable:
        return {"open": False, "templates": False, "closes_at": None}
    if rules.reply_window is None:
        return {"open": True, "templates": rules.supports_templates, "closes_at": None}
    last = conversation.last_inbound_at
    closes_at = last + rules.reply_window if last else None
    return {
        "open": closes_at is not None and closes_at > timezone.now(),
        "templates": rules.supports_templates,
        "closes_at": closes_at,
    }


def _visible(request: Request, pk: int) -> tuple[Access, Conversation]:
    access = api_access(request)
    conversation = _conversations(access).filter(pk=pk).first()
    if conversation is None:
        raise NotFound(_("No such conversation."))
    return access, conversation


def _actionable(request: Request, pk: int) -> tuple[Access, Conversation]:
    access, conversation = _visible(request, pk)
    if not access.can_act(conversation):
        raise PermissionDenied(_("This conversation is assigned to someone else; ask a supervisor."))
    return access, conversation


def _supervising(access: Access, conversation: Conversation) -> bool:
    """As crm/views/agent.py: staff (and tokens) and supervisors of its queue act whoever has it."""
    return access.is_staff or conversation.queue_id in access.supervised_queue_ids


def _acted_on(pk: int) -> Response:
    """The conversation after an action, as its detail. The caller acted on it, so it is shown even when a
    transfer took it out of what they may see."""
    return Response(ConversationGetApi.OutputSerializer(_conversation_detail(Conversation.objects.all(), pk)).data)


def _refused(exc: ConversationActionError | OutboundRefused) -> ApiRefused:
    return ApiRefused(exc.code, exc.message)


def _contacts(access: Access) -> QuerySet[Contact]:
    """The contacts of the caller's clients; for agents and supervisors, those with a conversation they see."""
    contacts = Contact.objects.all()
    if access.client_ids is not None:
        contacts = contacts.filter(client_id__in=access.client_ids)
    if not access.is_staff:
        contacts = contacts.filter(Exists(access.conversations().filter(contact_id=OuterRef("pk"))))
    return contacts


def _contact_search(contacts: QuerySet[Contact], q: str) -> QuerySet[Contact]:
    """Name, username or phone (any spacing), through the contact trigram index, as the inbox searches."""
    digits = re.sub(r"\D", "", q)
    indexed = Q(search_text__contains=q.upper())
    exact = Q(name__icontains=q) | Q(username__icontains=q)
    if len(digits) >= 3:
        indexed |= Q(search_text__contains=digits)
        exact |= Q(phone__contains=digits)
    return contacts.annotate(search_text=inbox.CONTACT_SEARCH_TEXT).filter(indexed).filter(exact)


# -- writes (an integration's send belongs in conversations/services/actions.py, which this change may not touch)


@transaction.atomic
def _integration_send(
    *,
    conversation: Conversation,
    token: ApiToken,
    text: str | None,
    template: Template | None,
    reply_to: Message | None,
) -> Message:
    """An integration's message, sent as itself (origin `api`, sent by the token's user). Unlike an agent's reply
    it assigns nobody: the token's user is in no queue, and a conversation given to it would reach no person.
    If the AI assistant was answering, it hands over as when an agent steps in (reason agent_replied): the
    conversation waits in its queue and the policy gives it to an agent. All or nothing.

    Raises `ConversationActionError` (resolved) or `OutboundRefused` (nothing written)."""
    current = Conversation.objects.select_for_update(of=("self",)).select_related("number").get(pk=conversation.pk)
    if current.status == Conversation.Status.RESOLVED:
        raise ConversationActionError("resolved", _("The conversation is resolved: reopen it first."))
    if current.status == Conversation.Status.AI:
        ai_hand_off(
            conversation=current,
            reason=Conversation.AIStopReason.AGENT_REPLIED,
            detail=_("%(name)s sent a message through the API.") % {"name": token.name},
        )
    message = message_send(
        conversation=current,
        text=text,
        template=template,
        origin=Message.Origin.API,
        sent_by=token.user,
        reply_to=reply_to,
    )
    Conversation.objects.filter(pk=current.pk, unread_count__gt=0).update(unread_count=0)
    return message


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
            if value.isdigit() and 0 < int(value) <= MAX_ID:
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
        wanted = filters.validated_data
        access = api_access(request)
        rows = _conversations(access)
        state = wanted.get("status")
        if state == "active":
            rows = rows.exclude(status=Conversation.Status.RESOLVED)
        elif state:
            rows = rows.filter(status=state)
        for field in ("queue", "number", "contact"):
            if field in wanted:
                rows = rows.filter(**{f"{field}_id": wanted[field]})
        assigned_to = wanted.get("assigned_to")
        if assigned_to == "me":
            rows = rows.filter(assigned_to_id=request.user.pk)
        elif assigned_to == "none":
            rows = rows.filter(assigned_to__isnull=True)
        elif assigned_to is not None:
            rows = rows.filter(assigned_to_id=assigned_to)
        if "updated_since" in wanted:
            rows = rows.filter(updated_at__gte=wanted["updated_since"])
        if wanted.get("q"):
            rows = inbox._search(rows, wanted["q"], access, NEWEST_FIRST, wanted=_rows_wanted(request))
        return _paginated(request, self, rows.order_by(*NEWEST_FIRST), self.OutputSerializer)


class ConversationGetApi(APIView):
    """One conversation, with whether free text can be sent now."""

    class OutputSerializer(ConversationDetailSerializer):
        pass

    @extend_schema(responses=OutputSerializer, operation_id="conversations_get", tags=["conversations"])
    def get(self, request: Request, pk: int) -> Response:
        conversation = _conversation_detail(api_access(request).conversations(), pk)
        if conversation is None:
            raise NotFound(_("No such conversation."))
        return Response(self.OutputSerializer(conversation).data)


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
        messages = Message.objects.filter(conversation=conversation).select_related("sent_by").only(*MESSAGE_FIELDS)
        if "since" in wanted:
            messages = messages.filter(updated_at__gte=wanted["since"])
        order = ["-created_at", "-id"] if wanted["order"] == "newest" else ["created_at", "id"]
        return _paginated(request, self, messages.order_by(*order), ConversationMessageListApi.OutputSerializer)


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
        template = _template_to_send(conversation, data["template"]) if "template" in data else None
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
                    supervising=_supervising(access, conversation),
                )
            else:
                message = _integration_send(
                    conversation=conversation, token=token, text=text, template=template, reply_to=reply_to
                )
        except (ConversationActionError, OutboundRefused) as exc:
            raise _refused(exc) from None
        return Response(ConversationMessageSendApi.OutputSerializer(message).data, status=status.HTTP_201_CREATED)


def _template_to_send(conversation: Conversation, wanted: dict) -> Template:
    """The active template of the conversation's client usable on its number (crm/inbox.py `templates_for`), with
    a value for each placeholder, as the CRM's composer builds it."""
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
    components = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}] if values else []
    return Template(name=chosen.name, language=chosen.language, components=components)


class ConversationMessagesApi(ConversationMessageListApi, ConversationMessageSendApi):
    """/conversations/{id}/messages/: GET lists (read scope), POST sends (send scope). The two operations keep
    their own classes; this one only routes them, asking the scope of the method's operation."""

    @property
    def required_scope(self) -> str:
        if self.request.method == "POST":
            return ConversationMessageSendApi.required_scope
        return READ


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
        supervising = _supervising(access, conversation)
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
                conversation=conversation, by=request.user, supervising=_supervising(access, conversation)
            )
        except ConversationActionError as exc:
            raise _refused(exc) from None
        return _acted_on(conversation.pk)


# -- contacts -------------------------------------------------------------------------------------------------

CONTACT_FIELDS = ("id", "name", "phone", "wa_id", "username", "opted_out_at", "created_at")


class ContactListApi(APIView):
    """The contacts of the caller's clients (agents and supervisors: those with a conversation they see)."""

    pagination_class = ApiPagination

    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, max_length=100, help_text="Name, username or phone (any spacing).")
        opted_out = serializers.BooleanField(
            required=False, allow_null=True, default=None, help_text="true: only those who opted out; false: others."
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        phone = serializers.CharField(help_text="E.164; blank for a contact known only by its business-scoped id.")
        wa_id = serializers.CharField()
        username = serializers.CharField()
        opted_out_at = serializers.DateTimeField(allow_null=True)
        created_at = serializers.DateTimeField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        operation_id="contacts_list",
        tags=["contacts"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        contacts = _contacts(api_access(request)).only(*CONTACT_FIELDS)
        if wanted.get("q"):
            contacts = _contact_search(contacts, wanted["q"])
        if wanted.get("opted_out") is not None:
            contacts = contacts.filter(opted_out_at__isnull=not wanted["opted_out"])
        return _paginated(request, self, contacts.order_by("name", "phone", "pk"), self.OutputSerializer)


class ContactGetApi(APIView):
    """One contact, with its newest conversations the caller may see."""

    class OutputSerializer(ContactListApi.OutputSerializer):
        class ConversationSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            status = serializers.CharField(help_text="pending, open, resolved or ai.")
            number = ConversationNumberSerializer()
            last_message_at = serializers.DateTimeField(allow_null=True)

        conversations = ConversationSerializer(
            many=True, source="visible_conversations", help_text="The newest 20 the caller may see."
        )

    @extend_schema(responses=OutputSerializer, operation_id="contacts_get", tags=["contacts"])
    def get(self, request: Request, pk: int) -> Response:
        access = api_access(request)
        contact = _contacts(access).only(*CONTACT_FIELDS).filter(pk=pk).first()
        if contact is None:
            raise NotFound(_("No such contact."))
        contact.visible_conversations = list(
            access.conversations()
            .filter(contact_id=contact.pk)
            .select_related("number")
            .only("status", "last_message_at", "number_id", "number__alias")
            .order_by(*NEWEST_FIRST)[:CONTACT_CONVERSATIONS]
        )
        return Response(self.OutputSerializer(contact).data)
