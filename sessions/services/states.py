"""Session states: every transition stored with its reason and time, outage windows, and live events
(docs/sessions.md "States").

The supervisor of the sessions worker is the one writer of what a connection reports (`session_state_set`);
staff and developers ask for changes (`session_connect_request`, `session_disconnect_request`, `session_reset`)
and the supervisor that owns the number carries them out, woken through Redis.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from crm.events import publish_on_commit, sessions_group
from crm.models import WebhookEventType
from crm.webhooks import webhook_events_emit
from sessions.leases import redis_connection
from sessions.models import NumberSession, SessionOutage, SessionState, SessionStateChange, WhatsAppNumber
from sessions.selectors import number_has_connection, session_state_data

logger = logging.getLogger(__name__)

CONTROL_CHANNEL = "sessions:control"

# A session may end up disconnected, in error, logged out, in conflict or banned from any state; the way up is
# connecting -> (waiting_qr ->) connected.
OUTCOMES = frozenset(
    {SessionState.DISCONNECTED, SessionState.ERROR, SessionState.LOGGED_OUT, SessionState.CONFLICT, SessionState.BANNED}
)
ALLOWED_FROM: dict[str, frozenset[str]] = {
    SessionState.CONNECTING: OUTCOMES,
    SessionState.WAITING_QR: frozenset({SessionState.CONNECTING, SessionState.WAITING_QR}),
    SessionState.CONNECTED: frozenset({SessionState.CONNECTING, SessionState.WAITING_QR}),
    **{state: frozenset(SessionState.values) for state in OUTCOMES},
}


class SessionStateError(Exception):
    """A transition the state machine does not allow; nothing was written."""


class SessionActionError(Exception):
    """The action does not apply to this number; nothing was changed. `code` for programs (no_connection: a number
    without a connection, such as Cloud API; inactive: a deactivated number; not_waiting_qr: no QR code is shown
    now), `message` (also its `str`) for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _publish(session: NumberSession, number: WhatsAppNumber) -> None:
    """The session's state to staff watching its client's numbers, and to those watching every client."""
    event = {"type": "session.state", "data": session_state_data(session=session, number=number)}
    publish_on_commit(sessions_group(number.client_id), event)
    publish_on_commit(sessions_group(None), event)


@transaction.atomic
def session_state_set(
    *,
    number_id: int,
    state: str,
    reason: str = "",
    owner: str | None = None,
    device_jid: str | None = None,
    qr_code: str | None = None,
    qr_expires_at: datetime | None = None,
    banned_until: datetime | None = None,
    keep_connected: bool | None = None,
    reconnect_attempts: int | None = None,
    at: datetime | None = None,
) -> bool:
    """Move the number's session to `state` for `reason`. True when the state or reason changed (then a history row
    is written, outage windows opened or closed, and staff told live); the same state and reason again only
    updates the other fields given. Raises `SessionStateError` for a transition the machine does not allow."""
    now = at or timezone.now()
    session = NumberSession.objects.select_for_update().select_related("number").get(number_id=number_id)
    number = session.number
    previous = session.state
    if state not in ALLOWED_FROM or (state != previous and previous not in ALLOWED_FROM[state]):
        raise SessionStateError(f"number {number_id}: {previous} -> {state} is not a session transition")
    reason = reason[:255]
    changed = previous != state or session.state_reason != reason
    fields = {"updated_at"}

    def put(name: str, value: Any) -> None:
        if getattr(session, name) != value:
            setattr(session, name, value)
            fields.add(name)

    if changed:
        put("state", state)
        put("state_reason", reason)
        put("state_changed_at", now)
    if owner is not None:
        put("owner", owner)
    if device_jid is not None:
        put("device_jid", device_jid)
    if keep_connected is not None:
        put("keep_connected", keep_connected)
    if reconnect_attempts is not None:
        put("reconnect_attempts", reconnect_attempts)
    if state == SessionState.WAITING_QR:
        if qr_code is not None:
            put("qr_code", qr_code)
            put("qr_expires_at", qr_expires_at)
    else:
        put("qr_code", "")
        put("qr_expires_at", None)
        put("pairing_code", "")
    if state == SessionState.BANNED:
        put("banned_until", banned_until)
    elif state == SessionState.CONNECTED:
        put("banned_until", None)  # a ban that let it connect is over
    if state == SessionState.CONNECTED and previous != SessionState.CONNECTED:
        put("last_connected_at", now)
    if len(fields) == 1:
        return False
    session.save(update_fields=sorted(fields))

    if changed:
        SessionStateChange.objects.create(
            number_id=number_id, from_state=previous, state=state, reason=reason, owner=session.owner, created_at=now
        )
        if previous == SessionState.CONNECTED and state != SessionState.CONNECTED:
            SessionOutage.objects.create(number_id=number_id, started_at=now, reason=reason or state)
        elif state == SessionState.CONNECTED:
            open_outage = SessionOutage.objects.filter(number_id=number_id, ended_at__isnull=True)
            open_outage.update(ended_at=now, updated_at=now)
        logger.info("session %s: %s -> %s (%s)", number_id, previous, state, reason or "-")
        webhook_events_emit(
            client_id=number.client_id,
            type=WebhookEventType.SESSION_STATE,
            data={
                "number": number.pk,
                "alias": number.alias,
                "engine": number.engine,
                "state": state,
                "previous_state": previous,
                "reason": reason,
                "at": now,
            },
        )
    _publish(session, number)
    return changed


@transaction.atomic
def session_pairing_code_set(*, number_id: int, code: str) -> None:
    session = NumberSession.objects.select_for_update().select_related("number").get(number_id=number_id)
    session.pairing_code = code
    session.save(update_fields=["pairing_code", "updated_at"])
    _publish(session, session.number)


def control_publish(action: str, number_id: int, **data: Any) -> None:
    """Tell every supervisor (after commit) what a number needs: `wake` (re-read what staff want), `logout` (after
    a reset), `pairing_code` or `restart` (a stalled connection). Supervisors that do not hold the number ignore
    it; one that misses it (down, or Redis away) finds out on its next heartbeat, except for a pairing code."""

    def send() -> None:
        try:
            redis_connection().publish(CONTROL_CHANNEL, json.dumps({"action": action, "number": number_id, **data}))
        except Exception:  # the supervisors still see the change on their next heartbeat
            logger.warning("could not notify the sessions workers about number %s (%s)", number_id, action)

    transaction.on_commit(send)


@transaction.atomic
def session_connect_request(*, number: WhatsAppNumber) -> NumberSession:
    """Staff want the number connected and kept connected: the owning supervisor (or the first with a free
    lease) connects it, showing a QR code when it has no paired device."""
    _require_connection_engine(number)
    if not number.is_active:
        raise SessionActionError("inactive", f"{number.alias} is inactive; activate it before connecting it.")
    session = NumberSession.objects.select_for_update().get(number=number)
    if not session.keep_connected:
        session.keep_connected = True
        session.reconnect_attempts = 0
        session.save(update_fields=["keep_connected", "reconnect_attempts", "updated_at"])
        _publish(session, number)
    control_publish("wake", number.pk)
    return session


@transaction.atomic
def session_disconnect_request(*, number: WhatsAppNumber) -> NumberSession:
    """Staff want the number offline (keeping its device paired); its owner closes the connection."""
    _require_connection_engine(number)
    session = NumberSession.objects.select_for_update().get(number=number)
    if session.keep_connected:
        session.keep_connected = False
        session.save(update_fields=["keep_connected", "updated_at"])
        _publish(session, number)
    control_publish("wake", number.pk)
    return session


def _require_connection_engine(number: WhatsAppNumber) -> None:
    if not number_has_connection(number=number):
        raise SessionActionError(
            "no_connection",
            f"{number.alias} uses the {number.get_engine_display()}, which has no connection to manage; "
            "only WhatsApp Web and sandbox numbers do.",
        )


def session_pairing_code_request(*, number: WhatsAppNumber) -> None:
    """Staff want to pair by typing a code on the phone instead of scanning: the owner asks WhatsApp for one,
    and it appears beside the QR code. Only while the number waits for a scan."""
    _require_connection_engine(number)
    session = NumberSession.objects.get(number=number)
    if session.state != SessionState.WAITING_QR:
        raise SessionActionError(
            "not_waiting_qr",
            f"{number.alias} is not waiting to be paired ({session.get_state_display().lower()}); connect it first.",
        )
    control_publish("pairing_code", number.pk)


def session_reset(*, number: WhatsAppNumber) -> NumberSession:
    """Log the number out and delete its device data: state `disconnected`, ready for a new QR code on Connect.
    The worker holding its connection logs it out and lets it go. A running ban is not lifted by a reset."""
    from sessions.engines import get_engine
    from sessions.services.numbers import number_attention_clear

    _require_connection_engine(number)
    with transaction.atomic():
        session = NumberSession.objects.select_for_update().get(number=number)
        if session.device_jid:
            get_engine(number.engine).forget_device(number=number, device_jid=session.device_jid)
        session_state_set(
            number_id=number.pk,
            state=SessionState.DISCONNECTED,
            reason="Reset: device data removed; connect again for a new QR code",
            device_jid="",
            keep_connected=False,
            reconnect_attempts=0,
        )
        number_attention_clear(number=number)
        control_publish("logout", number.pk)
    session.refresh_from_db()
    return session
