"""The REST API's contacts (docs/api.md): list and read them, with the CRM's rules (crm/access.py): staff and
tokens see every contact of their clients, agents and supervisors those with a conversation they see; a contact
outside that answers 404. Reads go through `conversations.selectors`.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.api.serializers import ConversationNumberSerializer
from conversations.selectors import contact_get_for_access, contact_list_for_access
from crm.api.auth import api_access
from crm.api.pagination import ApiPagination, paginated_response


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
        contacts = contact_list_for_access(
            access=api_access(request), q=wanted.get("q"), opted_out=wanted.get("opted_out")
        )
        return paginated_response(request, self, contacts, self.OutputSerializer)


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
        contact = contact_get_for_access(access=api_access(request), pk=pk)
        if contact is None:
            raise NotFound(_("No such contact."))
        return Response(self.OutputSerializer(contact).data)
