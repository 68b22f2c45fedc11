"""What drf-spectacular needs to describe the API's authentication and errors in the OpenAPI schema."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class ApiAutoSchema(AutoSchema):
    """Component names from where a serializer is declared: `ConversationListApi.OutputSerializer` becomes
    `ConversationListOutput`, so the nested Input/OutputSerializer of every operation (STYLE.md) get distinct
    names; module-level serializers keep theirs."""

    def get_serializer_name(self, serializer, direction) -> str:
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return super().get_serializer_name(serializer, direction)
        parts = [part.removesuffix("Serializer").removesuffix("Api") for part in qualname.split(".")]
        return "".join(parts)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "crm.api.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "wcrm_<prefix>_<secret>",
            "description": "An API token created by staff in admin (API tokens); its scope is read, send or admin.",
        }


ERROR_RESPONSES = {
    "400": "The request is not valid: `error.fields` says what is wrong where.",
    "401": "No credentials, or an unknown, malformed or revoked token.",
    "403": "The token's scope, or the user's role, does not allow this.",
    "404": "No such object among those the caller may see.",
    "406": "The `Accept` header asks for something other than JSON.",
    "409": "The object's state does not allow this now: the refusal's code says why (e.g. window_closed).",
    "415": "The body's `Content-Type` is not one this operation reads (JSON; multipart for file uploads).",
    "429": "Too many requests for this token (API_RATE_LIMIT); `Retry-After` says when to come back.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        }
    },
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation may answer the error body."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_RESPONSES.items():
                responses.setdefault(code, {"description": description, "content": reference})
    return result
