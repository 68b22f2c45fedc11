"""Engines: one module per way of reaching WhatsApp, behind `base.Engine` (docs/sessions.md).

`ENGINES` is the one place that knows which class serves which `WhatsAppNumber.engine`; everything else asks
`engine_class` / `get_engine`.
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from sessions.engines.base import Engine

ENGINES: dict[str, str] = {
    "cloud": "sessions.engines.cloud.CloudEngine",
    "sandbox": "sessions.engines.sandbox.SandboxEngine",
    "web": "sessions.engines.web.WebEngine",
}


class EngineUnavailable(Exception):
    """The number's engine cannot send (not implemented yet, or not configured)."""


def engine_class(name: str) -> type[Engine]:
    path = ENGINES.get(name)
    if path is None:
        raise EngineUnavailable(f"Engine {name!r} cannot send messages yet")
    return import_string(path)


def get_engine(name: str) -> Engine:
    return engine_class(name)()


def connection_engine_names() -> list[str]:
    """Engines whose numbers are connected by a sessions worker (WhatsApp Web, sandbox)."""
    return [name for name in ENGINES if engine_class(name).owns_connections]
