"""Helpers for REST API tests (docs/api.md): tokens of each scope, and calls with a token or a session."""

from __future__ import annotations

from rest_framework.test import APIClient

from crm.models import ApiToken, Client
from crm.services import api_token_create


def token_for(client: Client, scope: str = ApiToken.Scope.READ, name: str = "n8n") -> tuple[ApiToken, str]:
    """A new API token of `client` with `scope`, and its key."""
    return api_token_create(client=client, name=name, scope=scope)


def api_client(key: str | None = None, *, user=None) -> APIClient:
    """An API client sending `Authorization: Bearer <key>`, or signed in as `user` (session and CSRF checks, as
    a browser), or anonymous."""
    api = APIClient(enforce_csrf_checks=user is not None)
    if key is not None:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    if user is not None:
        api.force_login(user)
    return api


def error_of(response) -> dict:
    """The error body every refusal carries: {"code", "message", "fields"}."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    return body["error"]
