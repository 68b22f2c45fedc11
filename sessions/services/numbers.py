"""Writes for numbers: their session row, sending through their engine, the attention flag (docs/sessions.md,
docs/outbound.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from crm.events import client_group, publish_on_commit
from sessions.engines import get_engine
from sessions.engines.base import OutboundContent, SendError, SendResult
from sessions.models import NumberSession, WhatsAppNumber

logger = logging.getLogger(__name__)


@transaction.atomic
def number_session_ensure(*, number: WhatsAppNumber) -> NumberSession:
    """Every number has exactly one session row; create it the first time the number is saved."""
    session, _created = NumberSession.objects.get_or_create(number=number)
    return session


def number_send(
    *, number: WhatsAppNumber, content: OutboundContent, before_send: Callable[[], None] | None = None
) -> SendResult:
    """Hand `content` to the number's engine: the one door to providers for every other app (docs/outbound.md).

    `before_send` (Cloud API only) runs right before the request leaves. Raises `SendError` (and
    `EngineUnavailable`). An error that makes the number itself unusable (expired token,
    restricted account) flags the number for staff; the next accepted send clears the flag.
    """
    engine = get_engine(number.engine)
    try:
        if before_send is not None:  # only the Cloud engine takes it (campaign pacing); the others send at once
            result = engine.send(number, content, before_send=before_send)
        else:
            result = engine.send(number, content)
    except SendError as error:
        if error.attention:
            number_attention_set(number=number, reason=f"{error.reason} (code {error.code})")
        raise
    if number.attention_since is not None:
        number_attention_clear(number=number)
    return result


@transaction.atomic
def number_attention_set(*, number: WhatsAppNumber, reason: str) -> bool:
    """Flag `number` as unable to send until staff act; staff of its client are told live and on the admin
    index. True when the flag is new or its reason changed (a repeated failure does not re-alert)."""
    reason = reason[:300]
    now = timezone.now()
    changed = (
        WhatsAppNumber.objects.filter(pk=number.pk)
        .exclude(attention_reason=reason, attention_since__isnull=False)
        .update(attention_reason=reason, attention_since=now, updated_at=now)
    )
    if not changed:
        return False
    number.attention_reason, number.attention_since = reason, now
    logger.warning("number %s needs attention: %s", number.pk, reason)
    publish_on_commit(
        client_group(number.client_id),
        {"type": "number.attention", "data": {"number": number.pk, "alias": number.alias, "reason": reason}},
    )
    return True


@transaction.atomic
def number_attention_clear(*, number: WhatsAppNumber) -> bool:
    """The number sends again (a send was accepted, or staff fixed the token). True when a flag was cleared."""
    now = timezone.now()
    cleared = WhatsAppNumber.objects.filter(pk=number.pk, attention_since__isnull=False).update(
        attention_reason="", attention_since=None, updated_at=now
    )
    number.attention_reason, number.attention_since = "", None
    if cleared:
        logger.info("number %s no longer needs attention", number.pk)
        publish_on_commit(
            client_group(number.client_id),
            {"type": "number.attention", "data": {"number": number.pk, "alias": number.alias, "reason": ""}},
        )
    return bool(cleared)
