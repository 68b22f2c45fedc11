"""Engines: one module per way of reaching WhatsApp, behind `base.Engine` (docs/sessions.md)."""

from __future__ import annotations

from sessions.engines.base import Engine


class EngineUnavailable(Exception):
    """The number's engine cannot send (not implemented yet, or not configured)."""


def get_engine(name: str) -> Engine:
    if name == "cloud":
        from sessions.engines.cloud import CloudEngine

        return CloudEngine()
    raise EngineUnavailable(f"engine {name!r} cannot send messages yet")
