"""Writes of the sessions app (docs/sessions.md, docs/registry.md), one module per subject:

- `numbers`: a number's session row, sending through its engine, the attention flag;
- `registry_sync`: the JSON connection registry reconciled into the numbers table;
- `states`: session states, their history and outages, and what staff ask of a connection;
- `health`: the 5-minute check of every session;
- `media`: files customers sent, fetched from the provider when an agent opens them.
"""

from sessions.services.health import sessions_check
from sessions.services.media import MediaFile, MediaUnavailable, number_media_fetch
from sessions.services.numbers import (
    number_attention_clear,
    number_attention_set,
    number_send,
    number_session_ensure,
)
from sessions.services.registry_sync import REGISTRY_SYNC_LOCK, SyncReport, number_sync_from_registry
from sessions.services.states import (
    SessionActionError,
    SessionStateError,
    session_connect_request,
    session_disconnect_request,
    session_pairing_code_request,
    session_reset,
    session_state_set,
)

__all__ = [
    "MediaFile",
    "MediaUnavailable",
    "number_media_fetch",
    "REGISTRY_SYNC_LOCK",
    "SessionActionError",
    "SessionStateError",
    "session_connect_request",
    "session_disconnect_request",
    "session_pairing_code_request",
    "session_reset",
    "session_state_set",
    "sessions_check",
    "SyncReport",
    "number_attention_clear",
    "number_attention_set",
    "number_send",
    "number_session_ensure",
    "number_sync_from_registry",
]
