"""The API's own endpoint: who is calling (docs/api.md)."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.auth import api_access, api_token
from crm.api.errors import error_body
from crm.models import Client


class MeApi(APIView):
    """The caller as the API sees it: a token (its name, scope and client) or a signed-in person."""

    class OutputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=["token", "user"])
        name = serializers.CharField()
        scope = serializers.CharField(allow_null=True, help_text="read, send or admin; null for a person.")
        is_staff = serializers.BooleanField()
        clients = serializers.ListField(child=serializers.DictField(), help_text="id, name and slug of each.")

    @extend_schema(responses=OutputSerializer, operation_id="me", tags=["me"])
    def get(self, request: Request) -> Response:
        access = api_access(request)
        token = api_token(request)
        clients = Client.objects.filter(is_active=True).order_by("name")
        if access.client_ids is not None:
            clients = clients.filter(pk__in=access.client_ids)
        data = {
            "kind": "token" if token else "user",
            "name": token.name if token else request.user.get_username(),
            "scope": token.scope if token else None,
            "is_staff": access.is_staff,
            "clients": [{"id": c.pk, "name": c.name, "slug": c.slug} for c in clients],
        }
        return Response(self.OutputSerializer(data).data)


@csrf_exempt  # a POST to no endpoint is a 404 in the API's body, not the CSRF failure page
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)
