"""The WhatsApp Web engine: each number is a linked device, driven by neonize (whatsmeow) (docs/sessions.md).

One `WebConnection` per connected number, owned by the sessions worker holding the number's lease. The device
keys live in the project's PostgreSQL (whatsmeow's own `whatsmeow_*` tables, created by whatsmeow on first use),
so any worker can resume a paired device by its JID without a new QR code.

Threads of one connection:

- the native thread runs neonize's blocking `Neonize` entry point until the connection ends. It is called as
  `NewClient.connect_with_proxy` calls it, but from a daemon thread of ours: `connect` would run it on a non-daemon
  thread (a native call that never returns, below, would then block the worker's shutdown), print login
  statuses to stdout and obey neonize's process-wide stop event;
- neonize calls back (QR codes, pairing status, events) on threads of the Go runtime. Those callbacks only decode
  and queue; one dispatcher thread per connection translates what they queued and calls the listener, in order,
  with a database connection of its own (a ctypes callback gets a new Python thread state on every call, so Django
  connections opened there could never be reused or closed).

What neonize 0.5.2 makes us work around (its Go core, `goneonize/main.go`):

- its client table and context maps are plain Go maps: a second client starting while another is registered can
  crash the process ("concurrent map writes"). Starts are serialised (`START_GATE`): the next one waits until this
  one has shown a sign of life, or `START_SETTLE` seconds;
- `Stop` removes the client from that table, and the event loop looks it up once pairing or connecting is over:
  stopping a client before its event loop runs would crash the process. A connection is only `Stop`ped once its
  event loop runs (neonize's first event, the device, arrived) or after the native call returned. While it waits
  for a QR scan it is only disconnected;
- when nobody scans the QR code, the event loop waits forever for a device id that never comes: that native call
  never returns. Its thread and goroutine stay idle until the process ends (one per unscanned QR attempt, which
  only happens when staff ask for a QR code);
- resuming a JID the store does not hold crashes the process (whatsmeow gets no device): `start` checks the store
  first and reports such a number as logged out;
- every native call opens its own database pool (a live client keeps 1-2 PostgreSQL sessions) and never closes
  it. Each attempt names its sessions (`application_name` "wa-device-store:<client id>") and the engine terminates
  them once the attempt is over, or a reconnecting number would exhaust PostgreSQL's connections;
- events are acknowledged to WhatsApp before Python sees them: a worker killed in between loses them.

Optional setting: WHATSAPP_WEB_PROXY, a proxy URL (socks5://… or http://…) every connection goes through.

Inbound messages and receipts are translated into `conversations.inbound` dataclasses. Own messages, groups,
broadcasts, status updates and protocol messages (edits, deletions, key distribution) are skipped. Logs carry
ids, kinds and states: never message text or phone numbers.

The package: `store` (the device store and JIDs), `native` (neonize's thread, callbacks and the dispatcher),
`connection` (`WebConnection`), `translate` (inbound messages and receipts), `outbound` (what a send needs).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sessions.engines.base import ConnectionListener, OutboundContent, SendResult
from sessions.engines.web.connection import WebConnection
from sessions.engines.web.native import SUBSCRIBED_EVENTS
from sessions.engines.web.outbound import _send_error
from sessions.engines.web.store import (
    DEVICE_TABLE,
    STORE_APPLICATION_NAME,
    device_store_url,
    forget_device_keys,
    jid_string,
    parse_jid,
)

if TYPE_CHECKING:
    from sessions.models import WhatsAppNumber

__all__ = [
    "DEVICE_TABLE",
    "STORE_APPLICATION_NAME",
    "SUBSCRIBED_EVENTS",
    "WebConnection",
    "WebEngine",
    "_send_error",
    "device_store_url",
    "forget_device_keys",
    "jid_string",
    "parse_jid",
]

logger = logging.getLogger(__name__)


class WebEngine:
    name = "web"
    reply_window = None  # a linked device has no customer-service window
    supports_templates = False
    owns_connections = True

    def open(
        self, *, number: WhatsAppNumber, device_jid: str, listener: ConnectionListener, qr_timeout: float
    ) -> WebConnection:
        return WebConnection(number=number, device_jid=device_jid, listener=listener, qr_timeout=qr_timeout)

    def forget_device(self, *, number: WhatsAppNumber, device_jid: str) -> None:
        """Delete the device's keys from the store. A logout whatsmeow saw already deleted them: nothing is fine."""
        removed = forget_device_keys(device_jid)
        logger.info("number %s: device keys removed from the store (%s device)", number.pk, removed)

    def send(self, number: WhatsAppNumber, content: OutboundContent) -> SendResult:
        from sessions.connections import live_connection_send

        return live_connection_send(number, content)
