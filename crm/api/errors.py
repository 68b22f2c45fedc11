"""One error body for every refusal of the API (docs/api.md "Errors"):

    {"error": {"code": "invalid", "message": "…", "fields": {"text": ["This field is required."]}}}

`code` is stable for programs, `message` is for people, `fields` names what is wrong where (empty when it is not
about one field). The services' own refusals (a closed 24-hour window, an action the conversation's state does
not allow, a campaign that cannot start) keep their codes.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed",
    exceptions.ValidationError: "invalid",
}


class ApiRefused(exceptions.APIException):
    """A service said no (its code and sentence), as 409 Conflict unless told otherwise."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, code: str, message: str, *, status_code: int | None = None) -> None:
        super().__init__(detail=message, code=code)
        self.error_code = code
        if status_code is not None:
            self.status_code = status_code


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail) -> dict[str, list[str]]:
    """DRF's nested error details as {"field" or "field.sub" or "items.0.name": [messages]}."""
    found: dict[str, list[str]] = {}

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for index, inner in enumerate(value):
                walk(inner, f"{path}.{index}" if path else str(index))
        else:
            messages = value if isinstance(value, list) else [value]
            found.setdefault(path or "non_field_errors", []).extend(str(m) for m in messages)

    walk(detail, "")
    return found


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Not allowed.")
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 (logged), never a made-up answer
    if isinstance(exc, ApiRefused):
        body = error_body(exc.error_code, str(exc.detail))
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        general = fields.pop("non_field_errors", [])
        message = general[0] if general else "Some fields are not valid: " + ", ".join(sorted(fields)) + "."
        body = error_body("invalid", message, fields)
    else:
        code = next((c for kind, c in CODES.items() if isinstance(exc, kind)), "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = error_body(code, str(detail))
    response.data = body
    return response
