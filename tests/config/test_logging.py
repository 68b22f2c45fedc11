"""One logging configuration: every line names its component."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config.logging import detect_component
from tests.conftest import ROOT, project_env


@pytest.mark.parametrize(
    ("argv", "component"),
    [
        (["/venv/bin/daphne", "config.asgi:application"], "web"),
        (["/venv/bin/celery", "-A", "config", "worker", "-Q", "default,campaigns"], "worker"),
        (["/venv/bin/celery", "-A", "config", "worker", "-Q", "sessions"], "sessions"),
        (["/venv/bin/celery", "-A", "config", "beat"], "beat"),
        (["manage.py", "migrate"], "manage"),
    ],
)
def test_component_is_guessed_from_the_command_line(argv, component, monkeypatch):
    monkeypatch.delenv("APP_COMPONENT", raising=False)
    assert detect_component(argv) == component


@pytest.mark.django_db
def test_log_lines_carry_the_component_set_by_the_process_manager():
    code = "import django, logging; django.setup(); logging.getLogger('crm.demo').warning('number %s connected', 7)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=project_env(APP_COMPONENT="sessions"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "WARNING [sessions] crm.demo: number 7 connected" in result.stderr
