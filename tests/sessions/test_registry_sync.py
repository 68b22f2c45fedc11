"""number_sync_from_registry: the one reconciliation under the command, the beat task and the admin button."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from conversations.models import Conversation
from sessions.models import Engine, NumberSession, RegistrySyncRun, WhatsAppNumber
from sessions.services import number_sync_from_registry
from sessions.tasks import number_sync_from_registry_task
from tests.conversations.factories import ConversationFactory
from tests.crm.factories import ClientFactory
from tests.queues.factories import QueueFactory
from tests.sessions.conftest import connection_entry, table_snapshot
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db


def sync(path, **kwargs) -> RegistrySyncRun:
    return number_sync_from_registry(trigger=RegistrySyncRun.Trigger.COMMAND, file_path=str(path), **kwargs)


def test_first_run_creates_cloud_numbers_with_sessions_under_the_default_client(registry_file, default_client):
    path = registry_file([connection_entry(1), connection_entry(2, isActive=False)])

    run = sync(path)

    assert run.success and not run.dry_run
    numbers = list(WhatsAppNumber.objects.order_by("phone_number_id"))
    assert [(n.phone_number_id, n.alias, n.is_active, n.client) for n in numbers] == [
        ("106540352200001", "Linea 1", True, default_client),
        ("106540352200002", "Linea 2", False, default_client),
    ]
    first = numbers[0]
    assert first.engine == Engine.CLOUD
    assert first.access_token.reveal() == "EAAG-registry-token-000001-abcdefgh"
    assert first.verify_token.reveal() == "verify-1" and first.waba_id == "200000000001"
    assert NumberSession.objects.filter(number__in=numbers).count() == 2
    assert run.report["created"] == [
        {"id": first.pk, "phone_number_id": "106540352200001", "alias": "Linea 1", "client": "default"},
        {"id": numbers[1].pk, "phone_number_id": "106540352200002", "alias": "Linea 2", "client": "default"},
    ]
    # Active and without a queue: staff must assign one; inactive numbers are not nagged about.
    assert [n["phone_number_id"] for n in run.report["without_queue"]] == ["106540352200001"]
    assert run.summary == (
        "wrote 2 number(s): 2 created, 0 updated, 0 ids corrected, 0 unchanged, 0 missing from registry, "
        "1 without queue"
    )


def test_tokens_are_stored_encrypted(registry_file, default_client):
    from django.db import connection

    sync(registry_file([connection_entry(1)]))

    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, verify_token FROM wa_sessions_whatsappnumber")
        stored = cursor.fetchone()
    assert all(value.startswith("enc:v1:") for value in stored)
    assert "EAAG-registry-token" not in str(stored)


def test_a_client_slug_places_a_new_number_under_that_client(registry_file, default_client):
    ventas = ClientFactory(name="Ventas", slug="ventas")

    sync(registry_file([connection_entry(1, client="ventas")]))

    assert WhatsAppNumber.objects.get().client == ventas


def test_second_run_with_the_same_file_writes_nothing_and_says_so(registry_file, default_client):
    path = registry_file([connection_entry(n) for n in range(1, 6)])
    sync(path)
    before = table_snapshot()

    run = sync(path)

    assert table_snapshot() == before
    assert run.success
    assert run.report["writes"] == 0 and run.report["unchanged"] == 5
    assert run.summary.startswith("nothing to change (0 created, 0 updated, 0 ids corrected, 5 unchanged")


def test_registry_fields_win_and_the_queue_stays_as_staff_set_it(registry_file, default_client):
    queue = QueueFactory(client=default_client, name="Ventas")
    number = WhatsAppNumberFactory(
        client=default_client, phone_number_id="106540352200001", display_number="+51 900 001 001", queue=queue
    )
    before_update = number.updated_at
    entry = connection_entry(1, alias="Ventas Lima", wabaId="999", isActive=False)

    run = sync(registry_file([entry]))

    number.refresh_from_db()
    assert (number.alias, number.waba_id, number.is_active, number.queue) == ("Ventas Lima", "999", False, queue)
    assert number.access_token.reveal() == entry["accessToken"]
    assert number.updated_at > before_update
    assert run.report["updated"] == [
        {
            "id": number.pk,
            "phone_number_id": "106540352200001",
            "alias": "Ventas Lima",
            "client": "default",
            "fields": ["access_token", "alias", "is_active", "verify_token", "waba_id"],
        }
    ]


def test_a_registry_entry_without_tokens_keeps_the_stored_ones(registry_file, default_client):
    number = WhatsAppNumberFactory(
        client=default_client, phone_number_id="106540352200001", display_number="+51 900 001 001", alias="Linea 1"
    )
    number.refresh_from_db()
    token = number.access_token.reveal()
    entry = {k: v for k, v in connection_entry(1).items() if k not in ("accessToken", "verifyToken", "wabaId")}

    run = sync(registry_file([entry]))

    number.refresh_from_db()
    assert number.access_token.reveal() == token
    assert run.report["unchanged"] == 1


def test_a_placeholder_id_is_corrected_in_place_keeping_queue_session_and_conversations(registry_file, default_client):
    queue = QueueFactory(client=default_client)
    number = WhatsAppNumberFactory(
        client=default_client, phone_number_id="wsp-ventas-lima", display_number="+51 987 654 321", queue=queue
    )
    session = number.session
    conversation = ConversationFactory(client=default_client, number=number, queue=queue)
    entry = connection_entry(1, phoneNumberId="106540352242922", displayNumber="+51987654321", alias="Ventas Lima")

    run = sync(registry_file([entry]))

    assert run.success
    number.refresh_from_db()
    assert WhatsAppNumber.objects.count() == 1
    assert number.phone_number_id == "106540352242922"
    assert number.queue == queue
    assert NumberSession.objects.get(number=number).pk == session.pk
    assert Conversation.objects.get(pk=conversation.pk).number_id == number.pk
    assert run.report["ids_corrected"] == [
        {
            "id": number.pk,
            "from": "wsp-ventas-lima",
            "to": "106540352242922",
            "alias": "Ventas Lima",
            "client": "default",
        }
    ]
    assert "phone_number_id" in run.report["updated"][0]["fields"]


def test_two_placeholders_with_the_same_number_are_an_error_not_a_guess(registry_file, default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id="wsp-a", display_number="+51 987 654 321")
    WhatsAppNumberFactory(client=default_client, phone_number_id="wsp-b", display_number="+51987654321")
    before = table_snapshot()

    run = sync(registry_file([connection_entry(1, displayNumber="+51 987 654 321")]))

    assert not run.success and table_snapshot() == before
    assert run.report["errors"] == [
        {
            "index": 0,
            "id": "conn-1",
            "message": "several numbers with placeholder ids (wsp-a, wsp-b) have display number +51987654321",
        }
    ]


def test_missing_numbers_are_reported_never_deleted_and_deactivated_only_on_request(registry_file, default_client):
    kept = WhatsAppNumberFactory(client=default_client, phone_number_id="106540352200001", alias="Linea 1")
    gone = WhatsAppNumberFactory(client=default_client, phone_number_id="555000", alias="Old line")
    WhatsAppNumberFactory(client=default_client, phone_number_id="wsp-web", engine=Engine.WEB)  # not a registry number
    entry = connection_entry(1, displayNumber=kept.display_number)
    path = registry_file([entry])

    run = sync(path)

    gone.refresh_from_db()
    assert gone.is_active
    assert run.report["missing_from_registry"] == [
        {"id": gone.pk, "phone_number_id": "555000", "alias": "Old line", "client": "default", "deactivated": False}
    ]

    run = sync(path, deactivate_missing=True)

    gone.refresh_from_db()
    assert not gone.is_active and WhatsAppNumber.objects.count() == 3
    assert run.report["missing_from_registry"][0]["deactivated"] is True
    assert run.report["writes"] == 1


def test_dry_run_reports_the_changes_and_writes_nothing(registry_file, default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id="wsp-1", display_number="+51 900 001 001")
    WhatsAppNumberFactory(client=default_client, phone_number_id="106540352200002", display_number="+51 900 002 002")
    before = table_snapshot()
    path = registry_file([connection_entry(1), connection_entry(2, alias="Renamed"), connection_entry(3)])

    run = sync(path, dry_run=True, deactivate_missing=True)

    assert table_snapshot() == before
    assert run.success and run.dry_run
    assert [n["phone_number_id"] for n in run.report["created"]] == ["106540352200003"]
    assert [n["alias"] for n in run.report["updated"]] == ["Linea 1", "Renamed"]
    assert run.report["ids_corrected"][0]["from"] == "wsp-1"
    assert run.summary.startswith("dry run: would write 3 number(s)")


@pytest.mark.parametrize(
    "case",
    [
        "invalid json",
        "missing field",
        "bad phone",
        "duplicate id",
        "duplicate display number",
        "unknown client",
        "client move",
        "display number of another number",
        "missing file",
    ],
)
def test_bad_input_fails_the_whole_run_and_leaves_the_tables_unchanged(case, registry_file, default_client, tmp_path):
    ventas = ClientFactory(name="Ventas", slug="ventas")
    ClientFactory(name="Marketing", slug="marketing")
    WhatsAppNumberFactory(client=ventas, phone_number_id="106540352200001", display_number="+51 900 001 001")
    WhatsAppNumberFactory(client=default_client, phone_number_id="106540352200009", display_number="+51 955 555 555")
    good = [connection_entry(1, alias="Would change"), connection_entry(2)]
    bad = {
        "invalid json": '[{"phoneNumberId": "1"',
        "missing field": [*good, {"id": "x", "phoneNumberId": "106540352200003"}],
        "bad phone": [*good, connection_entry(3, displayNumber="+51 1")],
        "duplicate id": [*good, connection_entry(3, phoneNumberId="106540352200002")],
        "duplicate display number": [*good, connection_entry(3, displayNumber="+51900002002")],
        "unknown client": [*good, connection_entry(3, client="nobody")],
        "client move": [connection_entry(1, client="marketing"), connection_entry(2)],
        "display number of another number": [*good, connection_entry(3, displayNumber="+51 955 555 555")],
    }
    path = tmp_path / "absent.json" if case == "missing file" else registry_file(bad[case])
    before = table_snapshot()

    run = sync(path)

    assert table_snapshot() == before
    assert not run.success
    assert run.summary.startswith("failed:") and run.summary.endswith("nothing changed")
    assert run.report["created"] == run.report["updated"] == run.report["ids_corrected"] == []
    (error,) = run.report["errors"]
    expected = {
        "invalid json": (None, "", "invalid JSON at line 1"),
        "missing field": (2, "x", "`displayNumber` is required"),
        "bad phone": (2, "conn-3", "is not a possible phone number"),
        "duplicate id": (2, "conn-3", "repeats entry 1 (id conn-2)"),
        "duplicate display number": (2, "conn-3", "is also entry 1 (id conn-2)"),
        "unknown client": (2, "conn-3", "unknown client 'nobody'"),
        "client move": (0, "conn-1", "belongs to client 'ventas'; sync never moves a number to client 'marketing'"),
        "display number of another number": (2, "conn-3", "already belongs to WhatsApp Cloud API number"),
        "missing file": (None, "", "absent.json does not exist"),
    }[case]
    assert (error["index"], error["id"]) == expected[:2]
    assert expected[2] in error["message"]


def test_an_unconfigured_registry_is_a_clear_error(default_client):
    run = number_sync_from_registry(trigger=RegistrySyncRun.Trigger.COMMAND)

    assert not run.success
    assert run.report["errors"][0]["message"] == "no registry file: set WHATSAPP_CONNECTIONS_FILE or pass --file"


def test_every_run_is_recorded_with_its_trigger_and_report(registry_file, default_client, admin_user):
    path = registry_file([connection_entry(1)])

    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.ADMIN, file_path=str(path), user=admin_user)

    run = RegistrySyncRun.objects.get()
    assert run.trigger == "admin" and run.triggered_by == admin_user
    assert run.file_path == str(path) and run.finished_at >= run.started_at
    assert run.report["entries"] == 1 and run.report["success"] is True


def test_the_hourly_schedule_exists_after_migrate():
    task = PeriodicTask.objects.get(task="sessions.tasks.number_sync_from_registry_task")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")
    assert task.queue == "default"


def test_the_beat_task_syncs_the_configured_registry(registry_file, default_client, settings):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))

    result = number_sync_from_registry_task.apply().get()

    run = RegistrySyncRun.objects.get()
    assert result == {"run": run.pk, "success": True, "summary": run.summary}
    assert run.trigger == "schedule"
    assert WhatsAppNumber.objects.filter(phone_number_id="106540352200001").exists()


def test_the_beat_task_does_nothing_without_a_registry(default_client):
    result = number_sync_from_registry_task.apply().get()

    assert result == {"skipped": "WHATSAPP_CONNECTIONS_FILE is not set"}
    assert not RegistrySyncRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_take_turns_and_never_collide(registry_file, default_client):
    from threading import Thread

    from django.db import connection

    path = registry_file([connection_entry(n) for n in range(1, 51)])
    runs: list[RegistrySyncRun] = []

    def run() -> None:
        try:
            runs.append(sync(path))
        finally:
            connection.close()

    threads = [Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [run.success for run in runs] == [True, True, True]
    assert sorted(len(run.report["created"]) for run in runs) == [0, 0, 50]
    assert WhatsAppNumber.objects.count() == 50


def test_a_database_error_is_recorded_as_a_failed_run_and_changes_nothing(registry_file, default_client):
    import psycopg
    from django.db import connection

    from sessions.services import REGISTRY_SYNC_LOCK

    db = connection.settings_dict
    before = table_snapshot()
    # Another session holds the sync lock; this one gives up waiting after 100 ms.
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [REGISTRY_SYNC_LOCK])
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '100ms'")
        run = sync(registry_file([connection_entry(1)]))

    assert not run.success
    assert run.report["errors"][0]["message"].startswith("database error (OperationalError): canceling statement")
    assert table_snapshot() == before


def test_a_sync_that_waits_too_long_for_another_reports_it(registry_file, default_client, settings):
    import psycopg
    from django.db import connection

    from sessions.services import REGISTRY_SYNC_LOCK

    settings.REGISTRY_SYNC_LOCK_TIMEOUT = 0.1
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [REGISTRY_SYNC_LOCK])
        run = sync(registry_file([connection_entry(1)]))

    assert not run.success
    assert run.report["errors"][0]["message"] == "another registry sync is still running; nothing was changed"
    assert not WhatsAppNumber.objects.exists()


@pytest.mark.parametrize(
    "raw, message",
    [
        ('[{"id": ' + "1" * 5000 + "}]", "invalid JSON: a number is too long"),
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
        (
            '[{"id": "x", "phoneNumberId": "123", "displayNumber": "+51987654321", "alias": "\\ud800"}]',
            "invalid Unicode",
        ),
        ('[{"id": "a\\u0000b", "phoneNumberId": "123", "displayNumber": "+51987654321", "alias": "a\\u0000"}]', "NUL"),
        ('[{"id": "x", "phoneNumberId": "   ", "displayNumber": "+51987654321"}]', "`phoneNumberId` is required"),
        (
            '[{"id": "x", "phoneNumberId": "\\u0661\\u0662", "displayNumber": "+51987654321"}]',
            "neither Meta's numeric id",
        ),
    ],
    ids=["huge number", "deep nesting", "lone surrogate", "NUL", "blank id", "non-ASCII digits"],
)
def test_hostile_files_fail_cleanly_and_the_run_is_recorded(raw, message, registry_file, default_client):
    before = table_snapshot()

    run = sync(registry_file(raw))

    assert table_snapshot() == before
    assert not run.success
    assert any(message in error["message"] for error in run.report["errors"]), run.report["errors"]
    assert RegistrySyncRun.objects.get(pk=run.pk).report["errors"]  # stored, even with a NUL in the file


def test_a_web_number_is_never_taken_over_by_the_registry(registry_file, default_client):
    web = WhatsAppNumberFactory(
        client=default_client, phone_number_id="wsp-web-1", display_number="+51 987 654 321", engine=Engine.WEB
    )
    before = table_snapshot()

    run = sync(registry_file([connection_entry(1, displayNumber="+51987654321")]))

    assert not run.success and table_snapshot() == before
    assert run.report["errors"][0]["message"] == (
        f"display number +51987654321 already belongs to WhatsApp Web (linked device) number {web.alias!r} "
        "(id wsp-web-1)"
    )


def test_an_update_may_not_take_another_numbers_display_number(registry_file, default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id="106540352200001", display_number="+51 900 001 001")
    WhatsAppNumberFactory(client=default_client, phone_number_id="777", display_number="+51 955 555 555", alias="Other")

    run = sync(registry_file([connection_entry(1, displayNumber="+51 955 555 555")]))

    assert not run.success
    assert "already belongs to WhatsApp Cloud API number 'Other' (id 777)" in run.report["errors"][0]["message"]


def test_a_display_number_may_move_from_an_updated_number_to_a_new_one(registry_file, default_client):
    WhatsAppNumberFactory(client=default_client, phone_number_id="106540352200001", display_number="+51 955 555 555")

    run = sync(
        registry_file(
            [connection_entry(1, displayNumber="+51 900 001 001"), connection_entry(2, displayNumber="+51 955 555 555")]
        )
    )

    assert run.success, run.report["errors"]
    assert WhatsAppNumber.objects.get(phone_number_id="106540352200002").display_number == "+51 955 555 555"


def test_an_empty_registry_never_deactivates_everything(registry_file, default_client):
    number = WhatsAppNumberFactory(client=default_client)

    run = sync(registry_file([]), deactivate_missing=True)

    number.refresh_from_db()
    assert number.is_active and not run.success
    assert run.report["errors"][0]["message"] == "the registry is empty: refusing to deactivate every Cloud API number"
