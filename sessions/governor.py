"""The sending governor: one pace per number, shared by every process that sends from it (docs/campaigns.md).

Every message handed to a provider first reserves a slot here: campaign sends (campaigns/dispatch.py) and every
other send (conversations.services.outbound.message_deliver) alike, so an agent's reply and a campaign share
the number's rate instead of adding up. Two limits hold together, in Redis, in one atomic script (GCRA: the
"theoretical arrival time" of the next allowed send is kept per key):

- the number's rate: slots at least `1 / rate` apart (Cloud API 80/s by default; WhatsApp Web and sandbox one
  every GOVERNOR_WEB_INTERVAL seconds with jitter). The interval is widened by GOVERNOR_RATE_MARGIN so the
  provider never sees more than the rate in any second, however the network delays each request;
- the pair limit: one message to the same recipient every GOVERNOR_PAIR_INTERVAL seconds (Meta's 1 per 6 s),
  with GOVERNOR_PAIR_BURST messages allowed back to back before it applies (1 by default: no burst).

A reservation is a promise: the caller sleeps until its slot and then sends. A reservation that would wait
longer than the caller's `max_wait` is not made; the caller learns how long to wait and comes back (a worker
never blocks for long, and campaigns never hold more than a slot or two ahead, so a reply to a customer waits
for at most about one interval behind them). Daily caps, warm-up and quiet hours are campaign rules
(campaigns/dispatch.py): a customer waiting for an answer is never held back by them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from django.conf import settings

from sessions.engines import engine_class
from sessions.leases import redis_connection
from sessions.models import WhatsAppNumber

KEY_PREFIX = "governor:"

# KEYS: [rate key, then one pair key per message ("" for none)]; ARGV: [interval µs, pair interval µs, max wait µs,
# pair burst tolerance µs]. Reserves consecutive slots, in order, while they are within max wait; a message held back
# by its pair limit gets no slot and -(its wait) - 1. Returns {wait of the number's next free slot µs, then per
# message considered: its wait µs, or -(pair wait µs) - 1}; fewer entries than messages when the rest would wait
# longer than max wait.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local pair_interval = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local pair_tolerance = tonumber(ARGV[4])
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then start = now end
local tat = start
local out = {0}
for i = 2, #KEYS do
  if tat - now > max_wait then break end
  local pair_tat = tat
  if KEYS[i] ~= '' then
    pair_tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if pair_tat < tat then pair_tat = tat end
  end
  if pair_tat - tat > pair_tolerance then
    table.insert(out, -(pair_tat - pair_tolerance - now) - 1)
  else
    table.insert(out, tat - now)
    if KEYS[i] ~= '' then
      local ttl = math.ceil((pair_tat + pair_interval - now) / 1000) + 1000
      redis.call('SET', KEYS[i], string.format('%.0f', pair_tat + pair_interval), 'PX', ttl)
    end
    tat = tat + interval
  end
end
if tat > start then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
out[1] = tat - now
return out
"""

_script = None


@dataclass(frozen=True)
class Slot:
    """A reservation: `granted` with `wait` seconds until the slot, or refused with how long to wait and why.
    `at` is the slot's time on this process's monotonic clock."""

    granted: bool
    wait: float
    limit: str  # "rate" or "pair"
    at: float = 0.0

    def sleep_until(self) -> None:
        """Sleep until the slot (at once when it is already due)."""
        delay = self.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def number_interval(number: WhatsAppNumber) -> float:
    """Seconds between two sends from `number` (before jitter and margin)."""
    if number.send_rate:
        return 1.0 / number.send_rate
    if engine_class(number.engine).owns_connections:  # WhatsApp Web or sandbox: a phone, not a platform
        return settings.GOVERNOR_WEB_INTERVAL
    return 1.0 / settings.GOVERNOR_CLOUD_RATE


def number_rate(number: WhatsAppNumber) -> float:
    """Messages per second the governor lets `number` send (what progress ETAs use)."""
    return 1.0 / (number_interval(number) / (1.0 - settings.GOVERNOR_RATE_MARGIN))


def _jittered(number: WhatsAppNumber, interval: float) -> float:
    if number.send_rate is None and engine_class(number.engine).owns_connections:
        spread = settings.GOVERNOR_WEB_JITTER
        interval *= random.uniform(1.0 - spread, 1.0 + spread)  # noqa: S311 - pacing, not security
    return interval / (1.0 - settings.GOVERNOR_RATE_MARGIN)


def _reserve(*, number: WhatsAppNumber, to: list[str | None], max_wait: float) -> tuple[list[Slot], float]:
    """One round trip: a Slot per message considered (granted, or refused by its pair limit) and the wait until
    the number's next free slot."""
    global _script
    client = redis_connection()
    if _script is None:
        _script = client.register_script(_RESERVE)
    keys = [f"{KEY_PREFIX}{number.pk}"] + [f"{KEY_PREFIX}{number.pk}:to:{address}" if address else "" for address in to]
    interval_us = int(_jittered(number, number_interval(number)) * 1_000_000)
    pair_us = int(settings.GOVERNOR_PAIR_INTERVAL * 1_000_000)
    tolerance_us = pair_us * (max(settings.GOVERNOR_PAIR_BURST, 1) - 1)
    answer = _script(keys=keys, args=[interval_us, pair_us, int(max_wait * 1_000_000), tolerance_us], client=client)
    # Counted from the answer, not the request: a slow round trip makes a slot a little late here, never early.
    now = time.monotonic()
    slots = []
    for value in (int(v) for v in answer[1:]):
        wait = (value if value >= 0 else -value - 1) / 1_000_000
        slots.append(Slot(granted=value >= 0, wait=wait, limit="rate" if value >= 0 else "pair", at=now + wait))
    return slots, int(answer[0]) / 1_000_000


def governor_reserve(*, number: WhatsAppNumber, to: str | None, max_wait: float) -> Slot:
    """Reserve the next slot of `number` for a message to `to` (None: skip the pair limit), unless it is more than
    `max_wait` seconds away."""
    slots, next_free = _reserve(number=number, to=[to], max_wait=max_wait)
    if slots:
        return slots[0]
    return Slot(granted=False, wait=next_free, limit="rate", at=time.monotonic() + next_free)


def governor_reserve_many(*, number: WhatsAppNumber, to: list[str], max_wait: float) -> tuple[list[Slot | None], float]:
    """Reserve consecutive slots of `number` for messages to `to`, in order, as far as `max_wait` ahead (one
    round trip for all). Returns one entry per message considered (a granted Slot, or None when its recipient's
    pair limit holds it back) and the wait until the number's next free slot; messages beyond the list's length
    were not considered (they would wait too long)."""
    slots, next_free = _reserve(number=number, to=list(to), max_wait=max_wait)
    return [slot if slot.granted else None for slot in slots], next_free


def governor_wait(
    *, number: WhatsAppNumber, to: str | None, max_wait: float, deadline: float | None = None, sleep: bool = True
) -> Slot:
    """Block until `number` may send to `to`: reserve a slot at most `max_wait` ahead (retrying while the number is
    busier than that) and sleep until it (`sleep=False`: return the reservation at once; the caller prepares and
    then calls `slot.sleep_until()`, so its own work does not delay the send). Gives up when the slot would come
    after `deadline` (time.monotonic()), returning the refused reservation; the caller leaves the message for
    later."""
    while True:
        slot = governor_reserve(number=number, to=to, max_wait=max_wait)
        if slot.granted:
            if sleep:
                slot.sleep_until()
            return slot
        pause = max(slot.wait - max_wait, 0.001)
        if deadline is not None and time.monotonic() + pause > deadline:
            return slot
        time.sleep(min(pause, 1.0))


def governor_forget(*, number_id: int) -> None:
    """Drop the number's pace (tests, and a number whose rate staff just changed)."""
    redis_connection().delete(f"{KEY_PREFIX}{number_id}")
