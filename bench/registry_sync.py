#!/usr/bin/env python
"""Registry sync speed (numbers issue): a 1,000-entry registry syncs in < 2 s, and a re-run of it in < 1 s.

    .venv/bin/python bench/registry_sync.py [--entries 1000] [--repeat 5]

Runs the real service (`number_sync_from_registry`: validation, advisory lock, token encryption, bulk writes,
the recorded run) on the bench database. "First sync" starts each repeat from an empty numbers table; "re-run"
syncs the same file again (nothing to write); "re-run, 10% changed" edits one entry in ten. Exit status 1 when
a target is missed. It works on its own client (`bench-registry`), so the numbers it wipes never hold the
other benchmarks' conversations.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, print_table, seconds_figure, setup_django, timed  # noqa: E402


def registry(entries: int, *, renamed_every: int = 0) -> list[dict]:
    return [
        {
            "id": f"conn-{n}",
            "alias": f"Linea {n}" + (" (renamed)" if renamed_every and n % renamed_every == 0 else ""),
            "phoneNumberId": f"2065403{n:08d}",
            "displayNumber": f"+51 9{n // 1000 % 100:02d} {n % 1000:03d} {n % 1000:03d}",
            "accessToken": f"EAAG-bench-access-token-{n:08d}-abcdefghijklmnopqrstuvwxyz",
            "verifyToken": f"verify-{n}",
            "wabaId": f"20000{n:08d}",
            "isActive": True,
            "client": "bench-registry",
            "createdAt": 1700000000000,
            "updatedAt": 1700000000000,
        }
        for n in range(1, entries + 1)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    setup_django()
    from crm.models import Client
    from sessions.models import NumberSession, RegistrySyncRun, WhatsAppNumber
    from sessions.services import number_sync_from_registry

    client, _ = Client.objects.get_or_create(slug="bench-registry", defaults={"name": "Bench (registry)"})

    def wipe() -> None:
        NumberSession.objects.filter(number__client=client).delete()
        WhatsAppNumber.objects.filter(client=client).delete()

    with tempfile.TemporaryDirectory() as tmp:
        same = Path(tmp) / "registry.json"
        same.write_text(json.dumps(registry(args.entries)))
        changed = Path(tmp) / "registry-changed.json"
        changed.write_text(json.dumps(registry(args.entries, renamed_every=10)))
        runs: list[RegistrySyncRun] = []

        def sync(path: Path):
            def run() -> None:
                result = number_sync_from_registry(trigger=RegistrySyncRun.Trigger.COMMAND, file_path=str(path))
                if not result.success:
                    raise SystemExit(f"sync failed: {result.report['errors'][:3]}")
                runs.append(result)

            return run

        first = timed(sync(same), repeat=args.repeat, before=wipe)
        assert len(runs[-1].report["created"]) == args.entries
        rerun = timed(sync(same), repeat=args.repeat)
        assert runs[-1].report["writes"] == 0 and runs[-1].report["unchanged"] == args.entries
        partial = timed(sync(changed), repeat=args.repeat, before=lambda: sync(same)())
        assert len(runs[-1].report["updated"]) == args.entries // 10
        wipe()

    n = args.entries
    figures: list[Figure] = [
        seconds_figure(f"first sync, {n} entries", first, limit=2.0 if n == 1000 else None),
        seconds_figure(f"re-run, {n} entries, nothing to write", rerun, limit=1.0 if n == 1000 else None),
        seconds_figure(f"re-run, {n} entries, {n // 10} changed", partial, limit=None),
    ]
    return print_table("Registry sync (bench/registry_sync.py)", figures)


if __name__ == "__main__":
    raise SystemExit(main())
