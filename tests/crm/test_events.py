"""The background live-event publisher: in order, never blocking the publisher, never holding up an exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.layers import get_channel_layer

from crm.events import live_events_of, publish_flush, publish_now
from tests.conftest import ROOT, project_env


def _in_own_loop(make_coroutine):
    """Run a coroutine on a fresh loop in its own thread (a browser test may have left a loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def test_events_arrive_in_the_order_they_were_published():
    layer = get_channel_layer()

    async def join():
        channel = await layer.new_channel()
        await layer.group_add("test.order", channel)
        return channel

    channel = _in_own_loop(join)
    for n in range(20):
        publish_now("test.order", {"type": "tick", "data": {"n": n}})
    assert publish_flush(timeout=10)

    async def receive_all():
        numbers: list[int] = []
        while len(numbers) < 20:
            numbers += [e["data"]["n"] for e in live_events_of(await asyncio.wait_for(layer.receive(channel), 5))]
        return numbers

    assert _in_own_loop(receive_all) == list(range(20))


@pytest.mark.django_db
def test_a_process_that_published_exits_at_once():
    code = (
        "import django; django.setup()\n"
        "from crm.events import publish_now, publish_flush\n"
        "publish_now('test.exit', {'type': 'tick', 'data': {}})\n"
        "assert publish_flush(timeout=10)\n"
        "print('published')\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "published"
