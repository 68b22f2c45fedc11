"""The manage.py commands behind `make run`."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.conftest import project_env, run_manage


def database_exists(name: str) -> bool:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_ensure_database_creates_a_missing_database_once():
    name = f"crm_ensure_{uuid.uuid4().hex[:8]}"
    env = project_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}")
    try:
        first = run_manage("ensure_database", env=env)
        second = run_manage("ensure_database", env=env)

        assert first.returncode == 0, first.stderr
        assert f"created database '{name}'" in first.stdout
        assert second.returncode == 0 and f"database '{name}' exists" in second.stdout
        assert database_exists(name)
    finally:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_ensure_database_explains_an_unreachable_server():
    env = project_env(DATABASE_URL="postgres://postgres:hunter2pw@127.0.0.1:1/crm")

    result = run_manage("ensure_database", env=env)

    assert result.returncode != 0
    assert "cannot reach PostgreSQL at 127.0.0.1:1" in result.stderr
    assert "hunter2pw" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_demo_setup_creates_the_demo_login_prints_it_and_keeps_it(tmp_path, settings):
    env = project_env(DJANGO_SETTINGS_MODULE="config.settings.local", DEBUG="true")
    env["DATABASE_URL"] = project_env()["DATABASE_URL"]
    credentials = tmp_path / "demo-login"

    first = run_manage("demo_setup", "--credentials-file", str(credentials), env=env)
    second = run_manage("demo_setup", "--credentials-file", str(credentials), env=env)

    assert first.returncode == 0, first.stderr
    password = credentials.read_text().strip()
    assert f"Demo staff login: admin / {password}" in first.stdout
    assert second.stdout == first.stdout  # the same login on every `make run`

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    settings.PASSWORD_HASHERS = [f"{PBKDF2PasswordHasher.__module__}.{PBKDF2PasswordHasher.__name__}"]

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.check_password(password)

    # a sandbox number, already paired, in a queue whose agent is the demo login
    from sessions.models import WhatsAppNumber

    number = WhatsAppNumber.objects.select_related("session", "queue").get(phone_number_id="sandbox-demo")
    assert number.engine == "sandbox" and number.is_active
    assert number.session.device_jid and number.session.keep_connected
    assert number.sandbox_account.device_jid == number.session.device_jid
    assert number.queue.memberships.filter(user=admin).exists()
    assert "Sandbox number: Demo sandbox" in first.stdout
    # with quick replies to try in the agents' reply box, not duplicated by the second run
    assert sorted(number.queue.quick_replies.values_list("shortcut", flat=True)) == ["hola", "horario"]


def test_demo_setup_refuses_to_run_without_debug():
    result = run_manage("demo_setup", env=project_env())

    assert result.returncode != 0
    assert "only runs with DEBUG on" in result.stderr
