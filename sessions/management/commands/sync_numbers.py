"""`manage.py sync_numbers [--file PATH] [--dry-run] [--deactivate-missing]`: the registry reconciliation by hand."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from sessions.models import RegistrySyncRun
from sessions.services import number_sync_from_registry


class Command(BaseCommand):
    help = "Sync the JSON connection registry into the numbers table and print the report."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--file", help="Registry path (default: WHATSAPP_CONNECTIONS_FILE).")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; change nothing.")
        parser.add_argument(
            "--deactivate-missing", action="store_true", help="Deactivate Cloud API numbers absent from the registry."
        )
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the full report as JSON.")

    def handle(self, *args, file=None, dry_run=False, deactivate_missing=False, as_json=False, **options) -> None:
        run = number_sync_from_registry(
            trigger=RegistrySyncRun.Trigger.COMMAND,
            file_path=file,
            dry_run=dry_run,
            deactivate_missing=deactivate_missing,
        )
        if as_json:
            self.stdout.write(json.dumps(run.report, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(format_report(run.report))
        if not run.success:
            raise CommandError(f"registry sync failed (run {run.pk}): nothing was changed")


def format_report(report: dict) -> str:
    lines = [("DRY RUN — " if report["dry_run"] else "") + f"{report['file']}: {report['summary']}"]
    for error in report["errors"]:
        where = (
            "file"
            if error["index"] is None
            else f"entry {error['index']}" + (f" (id {error['id']})" if error["id"] else "")
        )
        lines.append(f"  error  {where}: {error['message']}")
    for number in report["created"]:
        lines.append(f"  created    {number['phone_number_id']}  {number['alias']}  [{number['client']}]")
    for number in report["updated"]:
        lines.append(f"  updated    {number['phone_number_id']}  {number['alias']}: {', '.join(number['fields'])}")
    for fix in report["ids_corrected"]:
        lines.append(f"  id fixed   {fix['from']} -> {fix['to']}  {fix['alias']}")
    for number in report["missing_from_registry"]:
        state = " (deactivated)" if number["deactivated"] else ""
        lines.append(f"  missing    {number['phone_number_id']}  {number['alias']}{state}")
    for number in report["without_queue"]:
        lines.append(f"  no queue   {number['phone_number_id']}  {number['alias']}  [{number['client']}]")
    return "\n".join(lines)
