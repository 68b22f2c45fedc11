"""`manage.py sessions_status`: every number's engine, session state, owner and since when (docs/sessions.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from sessions.leases import lease_owners
from sessions.models import NumberSession


def _age(then) -> str:
    if then is None:
        return "-"
    seconds = int((timezone.now() - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


class Command(BaseCommand):
    help = "Print a table of numbers with their engine, session state, owning sessions worker and since when."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true", help="Include inactive numbers.")

    def handle(self, *args, all=False, **options) -> None:
        sessions = NumberSession.objects.select_related("number", "number__client").order_by(
            "number__client__name", "number__alias"
        )
        if not all:
            sessions = sessions.filter(number__is_active=True)
        sessions = list(sessions)
        try:
            owners = lease_owners([s.number_id for s in sessions])
        except Exception as exc:  # Redis away: the table still shows what the database knows
            self.stderr.write(f"Redis unavailable, owners unknown: {exc}")
            owners = {}
        header = ("ID", "NUMBER", "CLIENT", "ENGINE", "STATE", "OWNER", "SINCE", "REASON")
        rows = [
            (
                str(s.number_id),
                f"{s.number.alias} ({s.number.display_number})",
                s.number.client.slug,
                s.number.engine,
                s.state + ("" if s.keep_connected or s.number.engine == "cloud" else " (off)"),
                owners.get(s.number_id) or "-",
                _age(s.state_changed_at),
                s.state_reason[:60],
            )
            for s in sessions
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if not rows:
            self.stdout.write("No numbers.")
