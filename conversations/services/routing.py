"""Writes for conversations (docs/inbound.md)."""

from __future__ import annotations

import logging

from django.db import transaction

from conversations.models import Conversation
from sessions.models import WhatsAppNumber

logger = logging.getLogger(__name__)


@transaction.atomic
def conversation_route_unrouted(*, number: WhatsAppNumber) -> int:
    """Give the number's queue to its open conversations that arrived while it had none. Returns how many."""
    if number.queue_id is None:
        return 0
    routed = (
        Conversation.objects.filter(number=number, queue__isnull=True)
        .exclude(status=Conversation.Status.RESOLVED)
        .update(queue_id=number.queue_id)
    )
    if routed:
        logger.info("routed %s unrouted conversation(s) of number %s to queue %s", routed, number.pk, number.queue_id)
    return routed
