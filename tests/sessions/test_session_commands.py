"""`sessions_status`, `connect_session` and `reset_session`, run as a developer runs them (manage.py in a child
process), and the state services under them."""

from __future__ import annotations

import pytest

from sessions.models import NumberSession, SandboxAccount, SessionStateChange
from sessions.services import SessionStateError, session_state_set
from tests.conftest import project_env, run_manage
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_number(db):
    number = WhatsAppNumberFactory(
        engine="sandbox", alias="Tienda Lima", display_number="+51 900 200 001", access_token="", verify_token=""
    )
    jid = "51900200001.0:7@s.whatsapp.net"
    NumberSession.objects.filter(number=number).update(device_jid=jid, keep_connected=False)
    SandboxAccount.objects.create(number=number, device_jid=jid)
    return number


def test_sessions_status_prints_every_number_with_engine_state_owner_and_since(sandbox_number):
    cloud = WhatsAppNumberFactory(alias="Ventas Cloud")
    session_state_set(number_id=sandbox_number.pk, state="connecting", reason="Connecting")

    result = run_manage("sessions_status", env=project_env())

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NUMBER", "CLIENT", "ENGINE", "STATE", "OWNER", "SINCE", "REASON"]
    row = next(line for line in lines if "Tienda Lima" in line)
    assert "sandbox" in row and "connecting (off)" in row and "s ago" in row and "Connecting" in row
    assert any("Ventas Cloud" in line and "cloud" in line and "disconnected" in line for line in lines)
    assert cloud.pk


def test_connect_session_turns_keep_connected_on_by_alias_display_number_or_id(sandbox_number):
    for identifier in ("tienda lima", "+51900200001", str(sandbox_number.pk)):
        NumberSession.objects.filter(number=sandbox_number).update(keep_connected=False)

        result = run_manage("connect_session", identifier, env=project_env())

        assert result.returncode == 0, result.stderr
        assert f"#{sandbox_number.pk} Tienda Lima" in result.stdout
        assert NumberSession.objects.get(number=sandbox_number).keep_connected


def test_an_unknown_or_ambiguous_number_gets_a_clear_error_listing_matches(sandbox_number):
    WhatsAppNumberFactory(engine="sandbox", alias="Tienda Lima", display_number="+51 900 200 002")

    unknown = run_manage("connect_session", "Tienda Cusco", env=project_env())
    ambiguous = run_manage("connect_session", "Tienda Lima", env=project_env())
    near = run_manage("reset_session", "Tienda", "--yes", env=project_env())

    assert unknown.returncode != 0 and "No number matches 'Tienda Cusco'" in unknown.stderr
    assert ambiguous.returncode != 0 and "2 numbers match 'Tienda Lima'" in ambiguous.stderr
    assert f"#{sandbox_number.pk} Tienda Lima (+51 900 200 001" in ambiguous.stderr
    assert near.returncode != 0 and "Similar: #" in near.stderr
    assert "Traceback" not in unknown.stderr + ambiguous.stderr + near.stderr
    assert NumberSession.objects.get(number=sandbox_number).device_jid  # nothing changed


def test_connect_session_refuses_a_cloud_api_number(db):
    cloud = WhatsAppNumberFactory(alias="Ventas Cloud")

    result = run_manage("connect_session", str(cloud.pk), env=project_env())

    assert result.returncode != 0 and "only WhatsApp Web and sandbox numbers" in result.stderr


def test_reset_session_asks_first_and_then_logs_out_and_deletes_the_device_data(sandbox_number):
    session_state_set(number_id=sandbox_number.pk, state="connecting", reason="Connecting")
    session_state_set(number_id=sandbox_number.pk, state="connected", reason="Connected")

    declined = run_manage("reset_session", "Tienda Lima", env=project_env(), input="no\n")
    assert declined.returncode != 0 and "Cancelled; nothing changed" in declined.stderr
    assert NumberSession.objects.get(number=sandbox_number).state == "connected"

    confirmed = run_manage("reset_session", "Tienda Lima", env=project_env(), input="yes\n")

    assert confirmed.returncode == 0, confirmed.stderr
    session = NumberSession.objects.get(number=sandbox_number)
    assert (session.state, session.device_jid, session.keep_connected) == ("disconnected", "", False)
    assert "connect again for a new QR code" in session.state_reason
    assert SandboxAccount.objects.get(number=sandbox_number).device_jid == ""
    assert SessionStateChange.objects.filter(number=sandbox_number).latest("created_at").from_state == "connected"


def test_state_changes_are_stored_with_reason_and_outages_and_refused_when_not_a_transition(sandbox_number):
    number_id = sandbox_number.pk
    with pytest.raises(SessionStateError, match="disconnected -> connected is not a session transition"):
        session_state_set(number_id=number_id, state="connected", reason="skipping ahead")
    assert not SessionStateChange.objects.filter(number=sandbox_number).exists()

    for state, reason in [
        ("connecting", "Connecting"),
        ("connected", "Connected"),
        ("disconnected", "Network lost"),
        ("connecting", "Connecting"),
        ("connected", "Connected"),
    ]:
        assert session_state_set(number_id=number_id, state=state, reason=reason)
    assert not session_state_set(number_id=number_id, state="connected", reason="Connected")  # no change

    changes = list(SessionStateChange.objects.filter(number=sandbox_number).order_by("created_at", "id"))
    assert [(c.from_state, c.state, c.reason) for c in changes] == [
        ("disconnected", "connecting", "Connecting"),
        ("connecting", "connected", "Connected"),
        ("connected", "disconnected", "Network lost"),
        ("disconnected", "connecting", "Connecting"),
        ("connecting", "connected", "Connected"),
    ]
    (outage,) = sandbox_number.outages.all()
    assert outage.reason == "Network lost" and outage.ended_at is not None
    assert outage.started_at == changes[2].created_at and outage.ended_at == changes[4].created_at
