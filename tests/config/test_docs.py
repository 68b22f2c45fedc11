"""The docs stay true: every variable the code reads is documented, and the quick start is the two commands."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

READ_PATTERN = re.compile(r'(?:env\.(?:str|int|bool|list|float)|require|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)"')
SHELL_PATTERN = re.compile(r"\$\{([A-Z][A-Z0-9_]+)[:}?-]")
APPS = ["config", "crm", "sessions", "queues", "conversations", "campaigns", "bench"]


def variables_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            found |= set(READ_PATTERN.findall(path.read_text()))
    for name in ("Procfile", "config/docker/entrypoint.sh", "compose.yaml"):
        path = ROOT / name
        if path.exists():
            code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
            found |= set(SHELL_PATTERN.findall(code))
    return found - {"HOSTNAME", "PATH", "HOME"}


def documented_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_variable_the_code_reads_is_in_env_example_and_the_readme():
    read = variables_read_by_the_code()
    readme = (ROOT / "README.md").read_text()

    assert {"DATABASE_URL", "REDIS_URL", "TOKEN_ENCRYPTION_KEY"} <= read  # the scan itself works
    assert read - documented_in_env_example() == set()
    assert {name for name in read if f"`{name}`" not in readme} == set()


def test_readme_quick_start_opens_with_make_run_then_make_test_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+|docker compose up)", readme, flags=re.MULTILINE)

    assert commands[:2] == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci/run").read_text()


@pytest.mark.django_db
def test_env_example_as_is_gives_working_local_settings():
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    code = (
        "from config.env import load_settings; load_settings(); "
        "from django.conf import settings; print(settings.CELERY_BROKER_URL)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **values},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == values["REDIS_URL"]
