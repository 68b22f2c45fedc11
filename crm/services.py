"""Writes of the crm app: API tokens (docs/api.md)."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from crm.models import ApiToken, Client

TOKEN_PREFIX = "wcrm_"


def api_token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *, client: Client, name: str, scope: str, created_by: AbstractBaseUser | None = None
) -> tuple[ApiToken, str]:
    """A new token and its key (`wcrm_<prefix>_<secret>`), which is never stored nor shown again."""
    prefix = secrets.token_hex(4)
    while ApiToken.objects.filter(prefix=prefix).exists():
        prefix = secrets.token_hex(4)
    key = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    user = get_user_model().objects.create(
        username=f"api-{prefix}", first_name=name[:150], is_active=True, is_staff=False
    )
    user.set_unusable_password()
    user.save(update_fields=["password"])
    token = ApiToken.objects.create(
        client=client,
        name=name,
        scope=scope,
        prefix=prefix,
        key_hash=api_token_hash(key),
        user=user,
        created_by=created_by,
    )
    return token, key


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """From now on the key is refused (401). Kept, with its last use, for the record."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
    return token
