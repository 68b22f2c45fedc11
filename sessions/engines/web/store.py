"""The WhatsApp Web engine's device store (docs/sessions.md): its URL, device lookup and removal, whatsmeow's JIDs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import connection as db_connection

if TYPE_CHECKING:
    from neonize.proto.Neonize_pb2 import JID

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
DEVICE_TABLE = "whatsmeow_device"
STORE_APPLICATION_NAME = "wa-device-store"  # how the device store's PostgreSQL sessions are named (a prefix)


def device_store_url(database: dict[str, Any] | None = None, *, application_name: str = STORE_APPLICATION_NAME) -> str:
    """The project's PostgreSQL (`database`: a DATABASES entry, the default one unless given) as a URL whatsmeow's
    store accepts (neonize's Go core picks PostgreSQL for a name starting with `postgres`); its sessions are named
    `application_name`."""
    db = database if database is not None else settings.DATABASES["default"]
    user = quote(str(db.get("USER") or ""), safe="")
    password = str(db.get("PASSWORD") or "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = str(db.get("HOST") or "")
    params = {"sslmode": (db.get("OPTIONS") or {}).get("sslmode") or "prefer"}
    if host.startswith("/"):  # a Unix socket directory
        params["host"] = host
        host = ""
    elif ":" in host:  # IPv6
        host = f"[{host}]"
    port = str(db.get("PORT") or "")
    netloc = f"{host}:{port}" if host and port else host
    if auth:
        netloc = f"{auth}@{netloc}"
    params["application_name"] = application_name[:63]
    return f"postgres://{netloc}/{quote(str(db['NAME']), safe='')}?{urlencode(params)}"


def jid_string(jid: JID) -> str:
    """whatsmeow's text form of a JID: `user[.agent][:device]@server` (what the device store keys on)."""
    if not jid.User:
        return jid.Server
    if jid.RawAgent > 0:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if jid.Device > 0:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    return f"{jid.User}@{jid.Server}"


def parse_jid(text: str) -> JID:
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = text.rpartition("@")
    device = agent = 0
    if ":" in user:
        user, device_text = user.split(":", 1)
        device = int(device_text)
    if "." in user:
        user, agent_text = user.split(".", 1)
        agent = int(agent_text)
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server or USER_SERVER, IsEmpty=False)


def _device_stored(device_jid: str) -> bool:
    """Whether the device store holds keys for `device_jid` (whatsmeow crashes when asked for a missing one)."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEVICE_TABLE])
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(f"SELECT 1 FROM {DEVICE_TABLE} WHERE jid = %s", [device_jid])  # noqa: S608
        return cursor.fetchone() is not None


def forget_device_keys(device_jid: str) -> int:
    """Delete a device's keys from the store (whatsmeow's tables cascade from `whatsmeow_device`); how many devices
    were removed. Nothing stored (or no store yet) is fine."""
    if not device_jid:
        return 0
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEVICE_TABLE])
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute(f"DELETE FROM {DEVICE_TABLE} WHERE jid = %s", [device_jid])  # noqa: S608
        return cursor.rowcount
