"""Encryption at rest for provider tokens (docs/clients.md): Fernet, keys from TOKEN_ENCRYPTION_KEY, first encrypts.

Values come back from the database wrapped in `Secret`, whose str/repr are masked, so a token that reaches a
log line, a template or an exception message shows as `••••abcd`, never in full. Call `.reveal()` at the one
place that hands the token to a provider.
"""

from __future__ import annotations

import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "enc:v1:"
MASK = "••••"


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class Secret:
    """A plaintext secret that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        if not self._value:
            return ""
        # Long provider tokens show their last 4 characters so staff can tell two apart; short ones show none.
        return MASK + self._value[-4:] if len(self._value) >= 16 else MASK

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    def __format__(self, spec: str) -> str:
        return format(self.masked(), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def _fernet() -> MultiFernet:
    keys = settings.TOKEN_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEY is not set; secrets cannot be stored")
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return PREFIX + _fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise SecretDecryptionError("stored value is not an encrypted secret")
    try:
        return _fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "a stored secret cannot be decrypted with TOKEN_ENCRYPTION_KEY; was the key replaced "
            "instead of rotated (new key first, old key after it)?"
        ) from None


def rotate(stored: str) -> str:
    """Re-encrypt a stored value with the first (current) key."""
    return PREFIX + _fernet().rotate(stored[len(PREFIX) :].encode()).decode()


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)
