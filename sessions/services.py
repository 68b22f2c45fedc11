"""Writes for numbers and their sessions (docs/sessions.md)."""

from __future__ import annotations

from django.db import transaction

from sessions.models import NumberSession, WhatsAppNumber


@transaction.atomic
def number_session_ensure(*, number: WhatsAppNumber) -> NumberSession:
    """Every number has exactly one session row; create it the first time the number is saved."""
    session, _created = NumberSession.objects.get_or_create(number=number)
    return session
