"""`manage.py sync_numbers`: prints the report, exits non-zero with a clear message when the run fails."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sessions.models import RegistrySyncRun, WhatsAppNumber
from tests.conftest import project_env, run_manage
from tests.sessions.conftest import connection_entry, table_snapshot
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def sync_numbers(*args: str) -> str:
    out = StringIO()
    call_command("sync_numbers", *args, stdout=out)
    return out.getvalue()


def test_prints_each_change_and_a_summary(registry_file, default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id="wsp-1", display_number="+51 900 001 001")
    WhatsAppNumberFactory(client=default_client, phone_number_id="777", alias="Old", engine="cloud")
    path = registry_file([connection_entry(1), connection_entry(2)])

    output = sync_numbers("--file", str(path))

    assert output.splitlines() == [
        f"{path}: wrote 2 number(s): 1 created, 1 updated, 1 ids corrected, 0 unchanged, 1 missing from registry, "
        "3 without queue",
        "  created    106540352200002  Linea 2  [default]",
        "  updated    106540352200001  Linea 1: access_token, alias, phone_number_id, verify_token, waba_id",
        "  id fixed   wsp-1 -> 106540352200001  Linea 1",
        "  missing    777  Old",
        "  no queue   106540352200001  Linea 1  [default]",
        "  no queue   106540352200002  Linea 2  [default]",
        "  no queue   777  Old  [default]",
    ]


def test_dry_run_says_so_and_changes_nothing(registry_file, default_client):
    path = registry_file([connection_entry(1)])
    before = table_snapshot()

    output = sync_numbers("--file", str(path), "--dry-run")

    assert output.startswith(f"DRY RUN — {path}: dry run: would write 1 number(s): 1 created")
    assert table_snapshot() == before
    assert RegistrySyncRun.objects.get().dry_run


def test_a_rerun_says_nothing_to_change(registry_file, default_client):
    path = registry_file([connection_entry(1)])
    sync_numbers("--file", str(path))

    assert sync_numbers("--file", str(path)).startswith(f"{path}: nothing to change (0 created, 0 updated")


def test_json_output_is_the_whole_report(registry_file, default_client):
    path = registry_file([connection_entry(1)])

    report = json.loads(sync_numbers("--file", str(path), "--json"))

    assert report["success"] is True and report["entries"] == 1
    assert report["created"][0]["phone_number_id"] == "106540352200001"


def test_the_file_defaults_to_the_setting(registry_file, default_client, settings):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))

    sync_numbers()

    assert WhatsAppNumber.objects.filter(phone_number_id="106540352200001").exists()


def test_deactivate_missing_flag(registry_file, default_client):
    old = WhatsAppNumberFactory(client=default_client, phone_number_id="777", alias="Old")

    output = sync_numbers("--file", str(registry_file([connection_entry(1)])), "--deactivate-missing")

    old.refresh_from_db()
    assert not old.is_active
    assert "  missing    777  Old (deactivated)" in output.splitlines()


def test_errors_are_listed_and_the_command_fails(registry_file, default_client):
    path = registry_file([connection_entry(1), connection_entry(2, displayNumber="+51 1")])
    out = StringIO()

    with pytest.raises(CommandError, match=r"registry sync failed \(run \d+\): nothing was changed"):
        call_command("sync_numbers", "--file", str(path), stdout=out)

    assert out.getvalue().splitlines() == [
        f"{path}: failed: 1 error(s), nothing changed",
        "  error  entry 1 (id conn-2): `displayNumber` '+51 1' is not a possible phone number in international form "
        "(+CC …)",
    ]
    assert not WhatsAppNumber.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_missing_file_exits_1_with_one_clear_line_and_no_traceback(tmp_path):
    result = run_manage("sync_numbers", "--file", str(tmp_path / "nope.json"), env=project_env())

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"  error  file: registry file {tmp_path / 'nope.json'} does not exist" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("CommandError: registry sync failed (run ")
