"""Fixtures for the connection registry: registry files on disk and exact snapshots of the numbers tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection


def connection_entry(n: int, **overrides: Any) -> dict[str, Any]:
    """One registry entry as the receiving side writes it."""
    entry = {
        "id": f"conn-{n}",
        "alias": f"Linea {n}",
        "phoneNumberId": f"1065403522{n:05d}",
        "displayNumber": f"+51 9{n // 1000 % 100:02d} {n % 1000:03d} {n % 1000:03d}",
        "accessToken": f"EAAG-registry-token-{n:06d}-abcdefgh",
        "verifyToken": f"verify-{n}",
        "wabaId": f"2000000{n:05d}",
        "isActive": True,
        "createdAt": 1700000000000,
        "updatedAt": 1700000000000,
    }
    entry.update(overrides)
    return entry


@pytest.fixture
def registry_file(tmp_path: Path) -> Callable[[Any], Path]:
    """Write `data` (entries, an object, or raw text) as the registry and return its path."""

    def write(data: Any, name: str = "connections.json") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    return write


SNAPSHOT_TABLES = ("wa_sessions_whatsappnumber", "wa_sessions_numbersession", "conversations_conversation")


def table_snapshot() -> dict[str, list[tuple]]:
    """Every row of the numbers, sessions and conversations tables with its physical identity (ctid, xmin).

    xmin changes whenever PostgreSQL writes a new version of a row, even with identical values, so two equal
    snapshots prove that nothing was inserted, updated or deleted in between."""
    snapshot = {}
    with connection.cursor() as cursor:
        for table in SNAPSHOT_TABLES:
            cursor.execute(f"SELECT ctid::text, xmin::text, t.* FROM {table} t ORDER BY id")  # noqa: S608
            snapshot[table] = cursor.fetchall()
    return snapshot
