"""Log record enrichment shared by every process (web, worker, sessions, beat)."""

from __future__ import annotations

import logging
import os
import sys


def detect_component(argv: list[str] | None = None) -> str:
    """The process's role: `APP_COMPONENT` when set (Procfile, compose), else guessed from the command line."""
    explicit = os.environ.get("APP_COMPONENT", "").strip()
    if explicit:
        return explicit
    args = argv if argv is not None else sys.argv
    joined = " ".join(args)
    if "celery" in joined:
        if " beat" in joined:
            return "beat"
        return "sessions" if "sessions" in joined else "worker"
    if "daphne" in joined or "runserver" in joined:
        return "web"
    return "manage" if "manage.py" in joined else "app"


class ComponentFilter(logging.Filter):
    """Adds `record.component` so every line says which process wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.component = detect_component()

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True
