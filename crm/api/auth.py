"""Who calls the API and what they may do (docs/api.md "Authentication").

An integration sends `Authorization: Bearer wcrm_…` (an ApiToken); a browser signed in to the CRM uses its
session. Either way `api_access(request)` answers with the CRM's own rules (crm/access.py): a token sees its
client as that client's staff would; a person sees what the CRM shows them. Views declare the scope an
operation needs (`required_scope`): read < send < admin. People need no scope, but admin operations are for
staff, as in the operator console.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from crm.access import Access, access_for
from crm.models import ApiToken
from crm.services import TOKEN_PREFIX, api_token_hash

logger = logging.getLogger(__name__)

LAST_USED_EVERY = timedelta(minutes=1)  # how stale "last used" may get: one write a minute per token at most


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        header = get_authorization_header(request).decode("latin-1").strip()
        kind, _sep, key = header.partition(" ")
        if kind.lower() != "bearer":
            return None  # not ours: the session (or nobody)
        key = key.strip()
        if not key.startswith(TOKEN_PREFIX) or len(key) > 200:
            raise exceptions.AuthenticationFailed("The bearer token is not an API token of this product (wcrm_…).")
        token = ApiToken.objects.select_related("user", "client").filter(key_hash=api_token_hash(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown API token.")
        if token.revoked_at is not None:
            when = f"{token.revoked_at:%Y-%m-%d %H:%M}"
            raise exceptions.AuthenticationFailed(f"This API token was revoked on {when} UTC.")
        if not token.client.is_active or not token.user.is_active:
            raise exceptions.AuthenticationFailed("This API token's client is inactive.")
        now = timezone.now()
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def api_token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def api_access(request: Request) -> Access:
    """What the caller may see and do, worked out once per request."""
    access = getattr(request, "_api_access", None)
    if access is None:
        token = api_token(request)
        if token is not None:
            access = Access(
                user=token.user,
                is_staff=True,
                client_ids=frozenset({token.client_id}),
                queue_ids=frozenset(),
                supervised_queue_ids=frozenset(),
            )
        else:
            access = access_for(request.user)
        request._api_access = access
    return access


class ScopePermission(BasePermission):
    """A token needs the view's `required_scope` (read when a view names none); a person signed in needs to be
    one of the CRM's users, and staff for admin operations."""

    message = "Not allowed."

    def has_permission(self, request: Request, view) -> bool:
        scope = getattr(view, "required_scope", ApiToken.Scope.READ)
        token = api_token(request)
        if token is not None:
            if not token.allows(scope):
                self.message = f"This API token's scope is {token.scope}; this operation needs {scope}."
                return False
            return True
        if not request.user or not request.user.is_authenticated:
            return False
        access = api_access(request)
        if scope == ApiToken.Scope.ADMIN and not access.is_staff:
            self.message = "Only staff may do this."
            return False
        if not (access.is_staff or access.queue_ids):
            self.message = "Only staff and the agents of a queue use the API with their session."
            return False
        return True


class ApiRateThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT requests per token (or per signed-in person), counted in Redis across web processes."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT  # read when used, so a changed setting applies without a restart of DRF

    def allow_request(self, request: Request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # Redis away: serve the request rather than fail every call with a 500
            logger.warning("API rate limit not checked: its cache is unavailable", exc_info=True)
            return True

    def get_cache_key(self, request: Request, view) -> str | None:
        token = api_token(request)
        if token is not None:
            return f"throttle:api:token:{token.pk}"
        if request.user and request.user.is_authenticated:
            return f"throttle:api:user:{request.user.pk}"
        return f"throttle:api:ip:{self.get_ident(request)}"
