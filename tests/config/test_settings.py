"""Settings come from the environment; mistakes stop start-up with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config.env import ConfigError, parse_database_url, validate_redis_url
from tests.conftest import ROOT

GOOD_PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "crm.example.test",
    "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "DATABASE_URL": "postgres://crm:s3cret-pw@db.internal:5432/crm",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def load_production(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "from config.env import load_settings\n"
        "load_settings()\n"
        "from django.conf import settings\n"
        "print('loaded', settings.DEBUG, settings.DATABASES['default']['HOST'])\n"
    )
    return run_python(code, {"DJANGO_SETTINGS_MODULE": "config.settings.production", **env})


def test_production_settings_load_with_every_required_variable():
    result = load_production(GOOD_PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "loaded False db.internal" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "TOKEN_ENCRYPTION_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_a_required_variable(missing):
    env = {k: v for k, v in GOOD_PRODUCTION_ENV.items() if k != missing}

    result = load_production(env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, not a traceback
    assert lines[0].startswith("configuration error: ")
    assert missing in lines[0]


def test_production_rejects_a_weak_secret_key_and_a_bad_encryption_key():
    weak = load_production({**GOOD_PRODUCTION_ENV, "SECRET_KEY": "short"})
    assert weak.returncode == 2 and "SECRET_KEY" in weak.stderr

    bad_key = load_production({**GOOD_PRODUCTION_ENV, "TOKEN_ENCRYPTION_KEY": "not-a-fernet-key"})
    assert bad_key.returncode == 2 and "TOKEN_ENCRYPTION_KEY" in bad_key.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "nonsense"),
        ("DATABASE_URL", "mysql://u:topsecretpw@h/db"),
        ("DATABASE_URL", "postgres://u:topsecretpw@h:notaport/db"),
        ("DATABASE_URL", "postgres://u:topsecretpw@h:5432/"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "redis://:topsecretpw@h:99999/0"),
        ("REDIS_URL", "redis://h:6379/zero"),
    ],
)
@pytest.mark.parametrize("entry_point", ["manage.py", "celery"])
def test_malformed_url_stops_start_up_with_one_line_naming_the_variable(variable, value, entry_point):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "config.settings.local", variable: value}
    celery = Path(sys.executable).parent / "celery"
    argv = (
        [sys.executable, "manage.py", "check"]
        if entry_point == "manage.py"
        else [str(celery), "-A", "config", "report"]
    )

    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "topsecretpw" not in result.stderr + result.stdout


def test_database_url_parsing():
    parsed = parse_database_url("postgresql://crm:p%40ss@db:6543/crm_prod")
    assert parsed["ENGINE"] == "django.db.backends.postgresql"
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"], parsed["PORT"], parsed["NAME"]) == (
        "crm",
        "p@ss",
        "db",
        "6543",
        "crm_prod",
    )
    with pytest.raises(ConfigError, match="DATABASE_URL .*no scheme"):
        parse_database_url("//db:5432/crm")


def test_redis_url_validation():
    assert validate_redis_url("redis://127.0.0.1:6379/3") == "redis://127.0.0.1:6379/3"
    assert validate_redis_url("rediss://:pw@cache:6380/0").startswith("rediss://")
    assert validate_redis_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    with pytest.raises(ConfigError, match="REDIS_URL"):
        validate_redis_url("http://cache:6379/0")
