"""Row locks of the queues app, always taken in primary-key order so two workers never deadlock on them."""

from __future__ import annotations

from queues.models import QueueMembership


def queue_memberships_lock(*, queue_id: int) -> list[QueueMembership]:
    """Lock every membership of the queue (pk order) for the rest of the transaction.

    Whoever assigns conversations of a queue holds these locks, so two workers counting an agent's open
    conversations can never both decide there is room for one more."""
    return list(
        QueueMembership.objects.select_for_update(of=("self",))
        .filter(queue_id=queue_id)
        .select_related("user")
        .order_by("pk")
    )
