"""The 5-minute check of every session (docs/sessions.md "Health check"): is each number staff want connected held
by a live sessions worker, with a fresh heartbeat and a state that matches? It repairs what it can and tells staff
what it cannot."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sessions.engines import connection_engine_names
from sessions.leases import lease_owners
from sessions.models import NumberSession, SessionState
from sessions.services.numbers import number_attention_set
from sessions.services.states import control_publish, session_state_set

logger = logging.getLogger(__name__)

LIVE_STATES = (SessionState.CONNECTING, SessionState.WAITING_QR, SessionState.CONNECTED)
STUCK_CONNECTING = timedelta(minutes=5)
NO_WORKER = (
    "No sessions worker holds this number: start the sessions worker (`celery -A config worker -Q sessions "
    "-P threads`); it connects the number without a new QR code"
)


def sessions_check() -> dict[str, int]:
    """One pass over the active WhatsApp Web and sandbox numbers. Returns counts of what it found and did."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=3 * settings.SESSIONS_HEARTBEAT_SECONDS)
    sessions = list(
        NumberSession.objects.filter(number__is_active=True, number__engine__in=connection_engine_names())
        .select_related("number")
        .order_by("number_id")
    )
    owners = lease_owners([s.number_id for s in sessions])
    counts = {"checked": len(sessions), "healthy": 0, "stale_state_fixed": 0, "restarted": 0, "without_worker": 0}
    for session in sessions:
        holder = owners.get(session.number_id)
        wanted = session.keep_connected and not (session.banned_until and session.banned_until > now)
        if holder is None and session.state in LIVE_STATES:
            # Look again, now: a worker may have taken the number since the first read.
            holder = lease_owners([session.number_id])[session.number_id]
        if holder is None and session.state in LIVE_STATES:
            # Whoever wrote this state is gone (a killed worker): never show "connected" from a dead process.
            session_state_set(
                number_id=session.number_id,
                state=SessionState.DISCONNECTED,
                reason="No sessions worker holds this number any more",
                owner="",
            )
            counts["stale_state_fixed"] += 1
        if not wanted:
            continue
        if holder is None:
            counts["without_worker"] += 1
            number_attention_set(number=session.number, reason=NO_WORKER)
            control_publish("wake", session.number_id)
        elif (
            session.heartbeat_at is None
            or session.heartbeat_at < stale_before
            or (
                session.state == SessionState.CONNECTING
                and session.state_changed_at
                and session.state_changed_at < now - STUCK_CONNECTING
            )
        ):
            counts["restarted"] += 1
            logger.warning(
                "session %s looks stalled (state %s); asking its owner to restart it", session.number_id, session.state
            )
            control_publish("restart", session.number_id)
        else:
            counts["healthy"] += 1
    if counts["without_worker"] or counts["restarted"] or counts["stale_state_fixed"]:
        logger.warning("sessions check: %s", counts)
    return counts
