"""Connection leases in Redis: one owner per number across every sessions worker (docs/sessions.md).

A lease is a key `session-lease:<number id>` holding the owner's id, set with `SET NX PX` and renewed or released
only by its owner (a compare-and-set in Lua, so an owner that was too slow never extends or deletes a lease that
has passed to someone else). An owner that cannot renew has lost the number and must disconnect at once.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable

import redis
from django.conf import settings

KEY_PREFIX = "session-lease:"

# KEYS: lease keys; ARGV[1]: owner, ARGV[2]: ttl in ms. Returns 1/0 per key: still ours (and extended) or not.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: lease keys; ARGV[1]: owner, ARGV[2]: ttl in ms. Per key: 1 taken (free, or already ours: extended), else
# the milliseconds left on the other owner's lease (1 s when it has no expiry, which a lease never should).
_ACQUIRE = """
local out = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == false or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = -1
  else
    local left = redis.call('PTTL', key)
    if left < 0 then left = 1000 end
    out[i] = left
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(number_id: int) -> str:
    return f"{KEY_PREFIX}{number_id}"


def new_owner_id() -> str:
    """Unique per process start: host, pid and a random part (a restarted worker with the same pid is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_connection() -> redis.Redis:
    """This process's client for REDIS_URL (a thread-safe pool; a forked child makes its own)."""
    key = (os.getpid(), settings.REDIS_URL)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        _clients[key] = client
    return client


class Leases:
    """The leases one owner takes, renews and releases."""

    def __init__(self, owner: str, *, ttl_seconds: float, client: redis.Redis | None = None) -> None:
        self.owner = owner
        self.ttl_ms = int(ttl_seconds * 1000)
        self.redis = client if client is not None else redis_connection()
        self._renew = self.redis.register_script(_RENEW)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)

    def acquire(self, number_id: int) -> bool:
        return bool(self.redis.set(lease_key(number_id), self.owner, nx=True, px=self.ttl_ms))

    def acquire_many(self, number_ids: Iterable[int]) -> tuple[list[int], float | None]:
        """Take every free lease (and keep those already ours) in one round trip. Returns the numbers now ours,
        and the seconds until the first lease held by someone else expires: when to try again (None: none)."""
        ids = list(number_ids)
        if not ids:
            return [], None
        answers = self._acquire(keys=[lease_key(n) for n in ids], args=[self.owner, self.ttl_ms])
        ours = [n for n, answer in zip(ids, answers, strict=True) if answer == -1]
        left = [answer for answer in answers if answer != -1]
        return ours, (min(left) / 1000 if left else None)

    def renew(self, number_ids: Iterable[int]) -> dict[int, bool]:
        """Extend the leases still ours; the answer says, per number, whether it is still ours."""
        ids = list(number_ids)
        if not ids:
            return {}
        kept = self._renew(keys=[lease_key(n) for n in ids], args=[self.owner, self.ttl_ms])
        return {number_id: bool(flag) for number_id, flag in zip(ids, kept, strict=True)}

    def release(self, number_id: int) -> bool:
        return bool(self._release(keys=[lease_key(number_id)], args=[self.owner]))


def lease_owners(number_ids: Iterable[int], *, client: redis.Redis | None = None) -> dict[int, str | None]:
    """Who holds each number's lease now (None: nobody)."""
    ids = list(number_ids)
    if not ids:
        return {}
    client = client if client is not None else redis_connection()
    values = client.mget([lease_key(n) for n in ids])
    return {n: (v.decode() if v is not None else None) for n, v in zip(ids, values, strict=True)}
