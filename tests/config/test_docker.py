"""The Docker side: compose.yaml against the Compose Specification, the stack it defines, the Dockerfile, and
config/docker/entrypoint.sh run for real against the test PostgreSQL and Redis.

No Docker engine is needed: the files are checked statically and the entrypoint runs on this machine.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.conf import settings

from tests.conftest import ROOT, free_port, project_env

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "config" / "docker" / "entrypoint.sh"
PROCFILE = ROOT / "Procfile"
# The official schema, byte for byte from compose-spec/compose-spec (schema/compose-spec.json, Apache-2.0).
SCHEMA = Path(__file__).with_name("compose-spec.json")

APP_SERVICES = ("web", "worker", "sessions", "webhooks", "beat")
DATA_SERVICES = ("postgres", "redis")
# `${NAME:?message}`: Compose refuses to start, printing the message, while NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?(?P<message>[^}]+)\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|ENCRYPTION")
PASSWORD = "Sup3r-s3cret-pw"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def schema_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def procfile_commands() -> dict[str, list[str]]:
    commands = {}
    for line in PROCFILE.read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            words = [w for w in shlex.split(command) if not w.startswith("APP_COMPONENT=")]
            commands[name.strip()] = words
    return commands


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


# --- compose.yaml -----------------------------------------------------------------------------------------


def test_the_schema_is_the_official_compose_specification(schema):
    assert schema["title"] == "Compose Specification"
    assert schema["$id"] == "compose_spec.json"
    assert {"service", "healthcheck", "env_file", "volume"} <= set(schema["definitions"])


def test_compose_file_is_valid_against_the_compose_specification(compose, schema):
    assert schema_errors(schema, compose) == []
    assert "version" not in compose  # obsolete in the Compose Specification


def test_the_schema_check_rejects_a_mistake(compose, schema):
    """The validation above has teeth: a misspelt key or a wrong depends_on condition is caught."""
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["restrat"] = "always"
    broken["services"]["worker"]["depends_on"]["redis"]["condition"] = "healthy"

    errors = schema_errors(schema, broken)

    assert any("restrat" in e for e in errors), errors
    assert any(e.startswith("services/worker/depends_on") for e in errors), errors


def test_stack_has_every_process_and_data_store(compose):
    assert set(compose["services"]) == {*APP_SERVICES, *DATA_SERVICES}


def test_app_services_share_one_image_and_configuration(compose):
    services = compose["services"]
    web = services["web"]
    assert web["build"]["context"] == "."
    assert web["build"]["dockerfile"] == "Dockerfile"
    assert web["env_file"] == [{"path": ".env", "required": False}]
    for name in APP_SERVICES:
        service = services[name]
        for key in ("image", "build", "env_file", "depends_on", "restart", "init"):
            assert service[key] == web[key], f"{name}.{key} differs from web's"
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        environment = service["environment"]
        assert environment["APP_COMPONENT"] == name
        assert environment["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        assert environment["RUN_MIGRATIONS"] == ("1" if name == "web" else "0"), "only web migrates"
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert "@postgres:5432/" in environment["DATABASE_URL"]
    for name in DATA_SERVICES:
        assert "env_file" not in services[name], "app secrets must not reach the data stores"
        assert services[name]["restart"] == "unless-stopped"


def test_commands_match_the_procfile(compose):
    procfile = procfile_commands()
    services = compose["services"]
    for name in ("worker", "sessions", "webhooks"):
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "config", "worker"]
        assert option(command, "-Q") == option(procfile[name], "-Q")
        assert option(command, "-n") == option(procfile[name], "-n") == f"{name}@%h"
    # the sessions worker sends from the process holding the connections: threads pool, in both
    assert option(services["sessions"]["command"], "-P") == option(procfile["sessions"], "-P") == "threads"
    # event webhooks wait on receivers, in their own process so they never take the inbound worker's slots
    assert option(services["webhooks"]["command"], "-Q") == "webhooks"
    assert option(services["webhooks"]["command"], "-P") == option(procfile["webhooks"], "-P") == "threads"
    concurrency = "--concurrency=${WEBHOOKS_CONCURRENCY:-8}"
    assert concurrency in services["webhooks"]["command"] and concurrency in procfile["webhooks"]
    assert services["beat"]["command"][:4] == procfile["beat"][:4] == ["celery", "-A", "config", "beat"]

    web = services["web"]["command"]
    assert web[0] == "daphne" and web[-1] == procfile["web"][-1] == "config.asgi:application"
    assert option(web, "-b") == "0.0.0.0"  # inside the container; the host port below picks the interface
    assert option(web, "-p") == "8000"
    assert services["web"]["ports"] == ["${WEB_HOST:-127.0.0.1}:${WEB_PORT:-8000}:8000"]


def test_every_service_has_a_healthcheck(compose):
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL")

    web = services["web"]["healthcheck"]
    assert "http://127.0.0.1:8000/healthz" in web["test"][-1]
    assert web["test"][:3] == ["CMD", "python", "-c"]  # no curl in slim images
    assert int(web["start_period"].rstrip("s")) >= 60, "/healthz is 503 until workers and beat are up"
    for name in ("worker", "sessions", "webhooks"):
        # `$$` is Compose's escape: the container's shell sees $HOSTNAME, the same host name as `-n name@%h`.
        assert services[name]["healthcheck"]["test"] == [
            "CMD-SHELL",
            f"celery -A config inspect ping -d {name}@$$HOSTNAME --timeout 10",
        ]
    assert "check_beat" in services["beat"]["healthcheck"]["test"][-1]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][-1]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_python_healthchecks_compile(compose):
    for name in ("web", "beat"):
        compile(compose["services"][name]["healthcheck"]["test"][-1], f"{name}-healthcheck", "exec")


def test_data_lives_in_named_volumes(compose):
    services = compose["services"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes"]


def test_no_secret_value_is_committed(compose):
    """Every secret is a required interpolation (`${NAME:?...}`): no value, no default, a message instead."""
    seen = set()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key):
                continue
            match = REQUIRED_VARIABLE.fullmatch(str(value))
            assert match, f"{name}.environment.{key} must be ${{{key}:?...}}, not {value!r}"
            assert match["name"] == key
            assert ".env.example" in match["message"]
            seen.add(key)
        url = (service.get("environment") or {}).get("DATABASE_URL")
        if url:  # the password inside the URL is the same required variable
            assert re.fullmatch(
                r"postgres://\$\{POSTGRES_USER:-\w+\}:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/.+", url
            )
    assert seen == {"SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "POSTGRES_PASSWORD"}
    # No interpolation with a default (`:-`) anywhere supplies a secret.
    text = COMPOSE.read_text()
    assert not re.search(r"\$\{[A-Z_]*(SECRET|PASSWORD|TOKEN|ENCRYPTION)[A-Z_]*:?-", text)


# --- Dockerfile and .dockerignore -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def test_dockerfile_builds_a_slim_image_that_runs_unprivileged():
    instructions = dockerfile_instructions()
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)

    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0")
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert last_user > last_from, "USER must apply to the final stage"

    assert ("ENTRYPOINT", '["/app/config/docker/entrypoint.sh"]') in instructions
    assert ("CMD", '["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]') in instructions
    assert ("EXPOSE", "8000") in instructions
    assert any(k == "RUN" and "pip install -r /tmp/requirements.txt" in rest for k, rest in instructions)


def test_dockerfile_collects_static_files_without_baking_in_secrets():
    instructions = dockerfile_instructions()
    collect = [rest for keyword, rest in instructions if keyword == "RUN" and "collectstatic --no-input" in rest]
    assert len(collect) == 1
    # Throwaway values exist for that one RUN only: the all-zero Fernet key and an explicit placeholder.
    values = dict(re.findall(r"\b([A-Z_]+)=(\S+)", collect[0]))
    assert base64.urlsafe_b64decode(values["TOKEN_ENCRYPTION_KEY"]) == bytes(32)
    assert "placeholder" in values["SECRET_KEY"] and len(values["SECRET_KEY"]) >= 32
    assert values["ALLOWED_HOSTS"].endswith(".invalid")
    assert ":" not in values["DATABASE_URL"].split("://", 1)[1].split("@", 1)[0], "no password, not even a fake"

    for keyword, rest in instructions:
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAME.search(rest), f"{keyword} {rest} would put a secret into the image"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", ".env", ".env.*", ".demo-login", "staticfiles", "**/__pycache__", "tests"} <= patterns


# --- config/docker/entrypoint.sh, for real ----------------------------------------------------------------


def run_entrypoint(*command: str, timeout: float = 60, **overrides: str) -> subprocess.CompletedProcess:
    """`sh entrypoint.sh COMMAND` as a container would run it, with this test run's PostgreSQL and Redis."""
    env = project_env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        REDIS_URL=settings.REDIS_URL,
        WAIT_TIMEOUT="20",
        RUN_MIGRATIONS="0",
    )
    env.update(overrides)
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_entrypoint_is_an_executable_posix_shell_script():
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)


@pytest.mark.django_db(transaction=True)
def test_entrypoint_runs_the_command_once_postgres_and_redis_answer():
    result = run_entrypoint("echo", "ready")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ready"
    assert "migrat" not in result.stdout.lower(), "only RUN_MIGRATIONS=1 migrates"


@pytest.mark.django_db(transaction=True)
def test_entrypoint_applies_migrations_when_asked():
    result = run_entrypoint("echo", "ready", RUN_MIGRATIONS="1")

    assert result.returncode == 0, result.stderr
    assert "No migrations to apply" in result.stdout  # the test database is already migrated
    assert result.stdout.strip().splitlines()[-1] == "ready"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("service", "variable", "url"),
    [
        ("Redis", "REDIS_URL", "redis://:{password}@127.0.0.1:{port}/0"),
        ("PostgreSQL", "DATABASE_URL", "postgres://crm:{password}@127.0.0.1:{port}/crm"),
    ],
)
def test_entrypoint_gives_up_after_wait_timeout_naming_the_unreachable_service(service, variable, url):
    port = free_port()  # nothing listens there
    started = time.monotonic()

    result = run_entrypoint("echo", "ready", WAIT_TIMEOUT="2", **{variable: url.format(password=PASSWORD, port=port)})

    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 10, f"took {elapsed:.1f}s with WAIT_TIMEOUT=2"
    assert "ready" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert service in lines[0] and variable in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_entrypoint_stops_on_a_configuration_error_before_waiting():
    """Production settings without SECRET_KEY: one line naming it, at once, even though Redis is unreachable."""
    started = time.monotonic()

    result = run_entrypoint(
        "echo",
        "ready",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="",
        WAIT_TIMEOUT="30",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )

    assert result.returncode == 2
    assert time.monotonic() - started < 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: SECRET_KEY")


# --- what `docker compose` makes of it: the spec's interpolation rules, emulated --------------------------

INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(node, env: dict[str, str]):
    """Resolve `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`
    and `${VAR:+alt}` in every string value, as the Compose Specification describes."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        value, op, arg = env.get(name), match["op"], match["arg"] or ""
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else value
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return value
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return INTERPOLATION.sub(substitute, node)


SECRETS_ENV = {
    "SECRET_KEY": "k" * 50,
    "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
    "POSTGRES_PASSWORD": "hex0123456789abcdef",
}


@pytest.mark.parametrize("missing", sorted(SECRETS_ENV))
def test_compose_refuses_to_start_while_a_secret_is_missing(compose, missing):
    env = {name: value for name, value in SECRETS_ENV.items() if name != missing}

    with pytest.raises(MissingVariable, match=rf"{missing} is missing a value: set {missing} in \.env"):
        interpolate(compose, env)
    with pytest.raises(MissingVariable, match=missing):
        interpolate(compose, {**env, missing: ""})  # empty counts as missing (`:?`)


def test_compose_resolves_to_a_working_local_demo_with_only_the_secrets_set(compose):
    resolved = interpolate(compose, SECRETS_ENV)
    services = resolved["services"]
    environment = services["web"]["environment"]

    assert environment["DATABASE_URL"] == f"postgres://crm:{SECRETS_ENV['POSTGRES_PASSWORD']}@postgres:5432/crm"
    assert services["postgres"]["environment"] == {
        "POSTGRES_USER": "crm",
        "POSTGRES_PASSWORD": SECRETS_ENV["POSTGRES_PASSWORD"],
        "POSTGRES_DB": "crm",
    }
    assert environment["SECRET_KEY"] == SECRETS_ENV["SECRET_KEY"]
    assert environment["TOKEN_ENCRYPTION_KEY"] == SECRETS_ENV["TOKEN_ENCRYPTION_KEY"]
    assert environment["ALLOWED_HOSTS"] == "localhost,127.0.0.1"
    assert environment["SECURE_SSL_REDIRECT"] == "false"
    assert environment["WAIT_TIMEOUT"] == "60"
    assert resolved["x-app"]["image"] == services["beat"]["image"] == "whatsapp-crm:local"
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "--concurrency=2" in services["worker"]["command"]
    assert "--concurrency=8" in services["webhooks"]["command"]
    assert services["worker"]["healthcheck"]["test"][-1].endswith("-d worker@$HOSTNAME --timeout 10")
    assert services["postgres"]["healthcheck"]["test"][-1] == 'pg_isready -U "${POSTGRES_USER}" -d "${POSTGRES_DB}"'


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_settings_accept_the_environment_compose_gives_each_app_service(compose, name):
    environment = {k: str(v) for k, v in interpolate(compose, SECRETS_ENV)["services"][name]["environment"].items()}
    code = (
        "from config.env import load_settings\n"
        "load_settings()\n"
        "from django.conf import settings\n"
        "print(settings.DATABASES['default']['HOST'], settings.REDIS_URL, settings.SECURE_SSL_REDIRECT)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["postgres", "redis://redis:6379/0", "False"]
