"""The live socket joins exactly the groups the pages' rules allow (crm/access.py), and keeps the agent present:
an agent whose last CRM tab closed is set away after the grace period (crm/presence.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from crm.consumers import live_groups_for
from crm.events import client_group, queue_group, sessions_group, user_group
from crm.presence import presence_absent, presence_leave, presence_touch
from queues.models import AgentAvailability
from queues.services import agent_availability_set, agents_presence_sweep
from tests.crm.test_consumers import communicator, session_cookie_for


def test_agent_joins_her_own_group_and_her_queues_only(world):
    assert live_groups_for(world.ana) == [user_group(world.ana.pk), queue_group(world.soporte.pk)]
    assert live_groups_for(world.carla) == [user_group(world.carla.pk), queue_group(world.ventas.pk)]


def test_supervisor_joins_the_queues_she_oversees(world):
    assert live_groups_for(world.supervisor) == [user_group(world.supervisor.pk), queue_group(world.soporte.pk)]


def test_staff_join_every_queue_of_their_clients_their_unrouted_conversations_and_number_states_only(world):
    groups = live_groups_for(world.staff)

    assert groups == [
        user_group(world.staff.pk),
        queue_group(world.soporte.pk),
        queue_group(world.ventas.pk),
        client_group(world.client.pk),
        sessions_group(world.client.pk),
    ]
    assert queue_group(world.foreign.queue_id) not in groups
    assert client_group(world.foreign.client_id) not in groups


@pytest.mark.django_db(transaction=True)
def test_an_agent_socket_receives_her_queue_events_and_not_another_queues(client, world):
    cookie = session_cookie_for(client, world.ana)
    other = {"type": "message.created", "data": {"conversation": world.ventas_waiting.pk}}
    mine = {"type": "message.created", "data": {"conversation": world.waiting.pk}}

    async def scenario():
        ws = communicator(cookie=cookie)
        await ws.connect()
        await ws.receive_json_from(timeout=5)  # hello
        layer = get_channel_layer()
        await layer.group_send(queue_group(world.ventas.pk), {"type": "live.event", "event": other})
        await layer.group_send(queue_group(world.foreign.queue_id), {"type": "live.event", "event": other})
        await layer.group_send(queue_group(world.soporte.pk), {"type": "live.event", "event": mine})
        received = await ws.receive_json_from(timeout=5)
        nothing_else = await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return received, nothing_else

    received, nothing_else = async_to_sync(scenario)()

    assert received == mine
    assert nothing_else


@pytest.mark.django_db(transaction=True)
def test_closing_the_last_tab_sets_an_online_agent_away_after_the_grace_period(client, world, settings):
    settings.AGENT_AWAY_GRACE_SECONDS = 60
    agent_availability_set(user=world.ana, status=AgentAvailability.Status.ONLINE)
    cookie = session_cookie_for(client, world.ana)

    async def open_ping_close():
        ws = communicator(cookie=cookie)
        await ws.connect()
        await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "ping"})
        await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()

    async_to_sync(open_ping_close)()

    # Within the grace period (a page reload, a flaky network) nothing happens.
    assert agents_presence_sweep() == []
    assert AgentAvailability.objects.get(user=world.ana).status == AgentAvailability.Status.ONLINE

    # Past it, the agent is away and gets no new conversations; the sweep forgets her.
    settings.AGENT_AWAY_GRACE_SECONDS = 0
    assert agents_presence_sweep() == [world.ana.pk]
    assert AgentAvailability.objects.get(user=world.ana).status == AgentAvailability.Status.AWAY
    assert agents_presence_sweep() == []


def test_a_tab_that_keeps_pinging_keeps_its_agent_present_and_a_silent_one_does_not(world, settings):
    settings.AGENT_AWAY_GRACE_SECONDS = 60
    presence_touch(user_id=world.ana.pk, channel="tab-1", now=1000)
    presence_touch(user_id=world.beto.pk, channel="tab-2", now=1000)
    presence_touch(user_id=world.ana.pk, channel="tab-1", now=1100)  # ana's page pings; beto's web process died

    assert presence_absent(now=1120) == [world.beto.pk]


def test_an_agent_with_two_tabs_stays_present_when_one_closes(world, settings):
    settings.AGENT_AWAY_GRACE_SECONDS = 60
    presence_touch(user_id=world.ana.pk, channel="tab-1", now=1000)
    presence_touch(user_id=world.ana.pk, channel="tab-2", now=1000)
    presence_leave(user_id=world.ana.pk, channel="tab-1", now=1010)
    presence_touch(user_id=world.ana.pk, channel="tab-2", now=1060)

    assert presence_absent(now=1100) == []


def test_agents_who_never_opened_the_crm_are_left_alone(world, settings):
    settings.AGENT_AWAY_GRACE_SECONDS = 0
    agent_availability_set(user=world.beto, status=AgentAvailability.Status.ONLINE)  # e.g. set online in the admin

    assert agents_presence_sweep() == []
    assert AgentAvailability.objects.get(user=world.beto).status == AgentAvailability.Status.ONLINE


def test_beat_runs_the_auto_away_sweep_every_30_seconds(db):
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="queues.tasks.agents_presence_sweep_task")

    assert task.enabled and task.queue == "default"
    assert (task.interval.every, task.interval.period) == (30, "seconds")
