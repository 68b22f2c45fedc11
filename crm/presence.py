"""Which agents have the CRM open: one Redis sorted set of live WebSocket channels per user (docs/crm.md).

The live consumer records a socket when it opens, on every ping the page sends (every 20 s) and when it closes;
that is the only state a consumer writes. `presence_absent` lists the users whose last socket closed (or went
silent, e.g. the web process was killed) longer ago than the grace period: `agents_presence_sweep` sets them
away. Users who never opened the CRM are never listed, so an agent kept online through the admin or the API is
left alone.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings

SEEN = "crm:presence:seen"  # user id -> last time one of their sockets was alive (epoch seconds)
KEEP_SECONDS = 86400


def _socket_key(user_id: int) -> str:
    return f"crm:presence:user:{user_id}"


_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


def presence_touch(*, user_id: int, channel: str, now: float | None = None) -> None:
    """A socket of the user is alive (opened, or pinged)."""
    now = time.time() if now is None else now
    pipe = _redis().pipeline()
    pipe.zadd(_socket_key(user_id), {channel: now})
    pipe.expire(_socket_key(user_id), KEEP_SECONDS)
    pipe.zadd(SEEN, {str(user_id): now})
    pipe.execute()


def presence_leave(*, user_id: int, channel: str, now: float | None = None) -> None:
    """A socket of the user closed."""
    now = time.time() if now is None else now
    pipe = _redis().pipeline()
    pipe.zrem(_socket_key(user_id), channel)
    pipe.zadd(SEEN, {str(user_id): now})
    pipe.execute()


def presence_absent(*, now: float | None = None) -> list[int]:
    """Users last seen longer ago than the grace period and without a live socket since."""
    now = time.time() if now is None else now
    cutoff = now - settings.AGENT_AWAY_GRACE_SECONDS
    candidates = [int(uid) for uid in _redis().zrangebyscore(SEEN, "-inf", cutoff)]
    pipe = _redis().pipeline()
    for uid in candidates:
        pipe.zcount(_socket_key(uid), cutoff, "+inf")
    return [uid for uid, live in zip(candidates, pipe.execute(), strict=True) if live == 0]


def presence_forget(*, user_id: int) -> None:
    """Stop watching the user (they were set away, or were not online). A socket they open later watches them
    again."""
    _redis().zrem(SEEN, str(user_id))
