"""/healthz reports the registry sync: the last run's age and outcome, unhealthy when syncs fail or stop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from crm.health import check_registry
from sessions.models import RegistrySyncRun
from sessions.services import number_sync_from_registry
from tests.sessions.conftest import connection_entry

pytestmark = pytest.mark.django_db


def registry_check(client) -> dict:
    result = check_registry()
    return {**result, "failing": not result["ok"]}


def test_healthz_includes_the_registry_check(client):
    body = client.get("/healthz").json()

    assert body["checks"]["registry"] == {**check_registry()}
    assert "registry" not in body["failing"]


def test_without_a_registry_the_check_is_informational(client):
    check = registry_check(client)

    assert check["ok"] is True and check["failing"] is False
    assert check["detail"] == {
        "configured": False,
        "last_run_age_seconds": None,
        "last_run_success": None,
        "last_success_age_seconds": None,
    }


def test_a_configured_registry_that_never_synced_is_unhealthy(client, settings, registry_file):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))

    check = registry_check(client)

    assert check["failing"] and check["error"] == "the registry has never synced successfully"


def test_after_a_successful_sync_the_age_is_reported(client, settings, registry_file, default_client):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))
    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)

    check = registry_check(client)

    assert check["ok"] and not check["failing"]
    assert check["detail"]["configured"] is True and check["detail"]["last_run_success"] is True
    assert 0 <= check["detail"]["last_run_age_seconds"] < 60


def test_a_failed_last_run_is_unhealthy_and_says_why(client, settings, registry_file, default_client):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))
    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)
    registry_file("not json")
    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)

    check = registry_check(client)

    assert check["failing"]
    assert check["error"] == "the last registry sync failed: failed: 1 error(s), nothing changed"
    assert check["detail"]["last_run_success"] is False
    assert check["detail"]["last_success_age_seconds"] is not None


def test_a_dry_run_does_not_count_as_a_sync(client, settings, registry_file, default_client):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))
    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.ADMIN, dry_run=True)

    assert registry_check(client)["error"] == "the registry has never synced successfully"


def test_a_stale_sync_is_unhealthy(client, settings, registry_file, default_client):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file([connection_entry(1)]))
    settings.REGISTRY_SYNC_MAX_AGE = 3600
    run = number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)
    RegistrySyncRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=2))

    check = registry_check(client)

    assert check["failing"]
    assert check["error"].startswith("last successful registry sync was 7") and "(limit 3600s)" in check["error"]


def test_healthz_answers_503_naming_the_registry_when_the_last_sync_failed(
    client, settings, registry_file, default_client
):
    settings.WHATSAPP_CONNECTIONS_FILE = str(registry_file("not json"))
    number_sync_from_registry(trigger=RegistrySyncRun.Trigger.SCHEDULE)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert "registry" in response.json()["failing"]
    assert response.json()["checks"]["registry"]["error"].startswith("the last registry sync failed")
