"""The sending governor against the real Redis: its rate holds over any window, across threads and processes'
worth of callers; the pair limit; refusals beyond a caller's patience; one-to-one sends wait their turn."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Message
from conversations.services import message_deliver, message_send
from sessions.governor import governor_reserve, governor_wait, number_rate
from tests.conversations.factories import ConversationFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any half-open window of `window` seconds (a sliding window over sorted times)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_rate_holds_over_every_window_with_many_callers(settings):
    # given a number allowed 40 messages a second and four threads sending as fast as they are let
    settings.GOVERNOR_RATE_MARGIN = 0.02
    number = WhatsAppNumberFactory(send_rate=40)
    times: list[float] = []
    lock = threading.Lock()

    def sender() -> None:
        for _ in range(25):
            slot = governor_wait(number=number, to=None, max_wait=0.1)
            assert slot.granted
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=sender) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    # then no second ever saw more than 40, none of the 100 slots came closer than the interval allows, and the
    # whole ran at the configured pace less the safety margin (not slower)
    assert len(times) == 100
    assert max_in_window(times, 1.0) <= 40
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert min(gaps) > (1 / 40) * 0.5  # sleep jitter of the measuring threads, never a burst
    assert 99 / number_rate(number) * 0.97 <= elapsed <= 99 / number_rate(number) * 1.15


def test_a_reservation_beyond_the_callers_patience_is_refused_and_not_made():
    # given a slow number (one a second) whose next slot was just taken
    number = WhatsAppNumberFactory(send_rate=1)
    first = governor_reserve(number=number, to=None, max_wait=0.5)
    assert first.granted and first.wait == 0

    # when another caller will wait at most half a second
    refused = governor_reserve(number=number, to=None, max_wait=0.5)

    # then it is refused with the time left, and that refusal did not push the next slot further away
    assert not refused.granted and refused.limit == "rate"
    assert 0.9 < refused.wait <= 1.03
    again = governor_reserve(number=number, to=None, max_wait=2)
    assert again.granted and 0.9 < again.wait <= 1.03


def test_pair_limit_spaces_messages_to_one_recipient_only(settings):
    settings.GOVERNOR_PAIR_INTERVAL = 0.6
    number = WhatsAppNumberFactory(send_rate=100)

    assert governor_reserve(number=number, to="51987000001", max_wait=1).granted
    same = governor_reserve(number=number, to="51987000001", max_wait=1)
    other = governor_reserve(number=number, to="51987000002", max_wait=1)

    assert not same.granted and same.limit == "pair" and 0.5 < same.wait <= 0.6
    assert other.granted
    time.sleep(same.wait)
    assert governor_reserve(number=number, to="51987000001", max_wait=1).granted


def test_pair_burst_allows_messages_back_to_back_before_the_interval(settings):
    settings.GOVERNOR_PAIR_INTERVAL = 5
    settings.GOVERNOR_PAIR_BURST = 3
    number = WhatsAppNumberFactory(send_rate=100)

    granted = [governor_reserve(number=number, to="51987000009", max_wait=1).granted for _ in range(4)]

    assert granted == [True, True, True, False]


def test_whatsapp_web_pace_is_slow_and_jittered(settings):
    # given a sandbox number (it behaves as WhatsApp Web) without its own rate
    settings.GOVERNOR_WEB_INTERVAL = 0.08
    settings.GOVERNOR_WEB_JITTER = 0.5
    settings.GOVERNOR_RATE_MARGIN = 0.0
    number = WhatsAppNumberFactory(engine="sandbox", send_rate=None)
    times = []
    for _ in range(12):
        assert governor_wait(number=number, to=None, max_wait=1).granted
        times.append(time.monotonic())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]

    # then each gap lies within the jitter's band, and they are not all the same
    assert all(0.035 <= gap <= 0.135 for gap in gaps), gaps
    assert max(gaps) - min(gaps) > 0.01


def test_one_to_one_send_waits_its_turn_and_is_requeued_when_the_wait_is_long(settings, graph_api):
    # given a Cloud API conversation whose window is open, and a pair limit longer than a worker waits
    settings.GOVERNOR_PAIR_INTERVAL = 30
    settings.GOVERNOR_REPLY_MAX_WAIT = 0.2
    conversation = ConversationFactory(last_inbound_at=timezone.now() - timedelta(minutes=5))
    graph_api.tokens[conversation.number.phone_number_id] = conversation.number.access_token
    first = message_send(conversation=conversation, text="Hola")
    second = message_send(conversation=conversation, text="¿Sigues ahí?")

    # when both are delivered at once
    outcomes = [message_deliver(message_id=first.pk), message_deliver(message_id=second.pk)]

    # then the first went, the second waits (still pending: it never reached the provider) for its turn
    assert outcomes == ["accepted", "throttled"]
    second.refresh_from_db()
    assert second.status == Message.Status.PENDING
    assert len([r for r in graph_api.requests if r.method == "POST"]) == 1
