"""Re-encrypt every stored secret with the first TOKEN_ENCRYPTION_KEY (docs/operations.md, "Rotating
TOKEN_ENCRYPTION_KEY").

Every `crm.fields.EncryptedTextField` of every installed model is found at run time, so a new encrypted field is
covered without touching this command. Stored ciphertext is read and written as it is in the column (never through
the decrypting field), in batches of locked rows, each batch in its own transaction. A value no configured key can
decrypt is left untouched and reported with its model, field and pk; the others are rotated anyway and the command
ends with an error. Running it again is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, models, transaction
from django.db.models import ExpressionWrapper, F

from crm import crypto
from crm.fields import EncryptedTextField

BATCH_SIZE = 500
# The raw column under a name no model field uses: read through a plain TextField, so nothing decrypts it.
STORED = "_rotate_stored_value"


@dataclass
class FieldReport:
    label: str
    rotated: int = 0
    empty: int = 0
    failed: list[str] = field(default_factory=list)  # "<label> pk=<pk>: <why>"


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """(model, field) for every encrypted column, each once: proxies share their concrete model's table, and a
    multi-table child lists its parent's fields too."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue
        for model_field in model._meta.fields:
            if isinstance(model_field, EncryptedTextField) and model_field.model is model:
                found.append((model, model_field))
    return sorted(found, key=lambda pair: (pair[0]._meta.label, pair[1].name))


def _rotated(stored: str) -> tuple[str | None, str]:
    """The value re-encrypted with the first key, or (None, why it cannot be)."""
    if not crypto.is_encrypted(stored):
        return None, "not an encrypted value (no enc:v1: prefix)"
    try:
        return crypto.rotate(stored), ""
    except (InvalidToken, ValueError, TypeError):
        return None, "cannot be decrypted with any key in TOKEN_ENCRYPTION_KEY"


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (provider tokens, app and webhook secrets) with the first key of "
        "TOKEN_ENCRYPTION_KEY. Run it after putting a new key first and restarting every process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted; write nothing.")
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, help=f"Rows per transaction (default {BATCH_SIZE})."
        )

    def handle(self, *args, dry_run: bool = False, batch_size: int = BATCH_SIZE, **options) -> None:
        keys = settings.TOKEN_ENCRYPTION_KEYS
        if not keys:
            raise CommandError("TOKEN_ENCRYPTION_KEY is not set; there is no key to encrypt with")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if len(keys) == 1:
            self.stdout.write(
                "Only one key in TOKEN_ENCRYPTION_KEY: values are re-encrypted with it. To rotate, put the new key "
                "first and the old one after it."
            )
        verb = "would be re-encrypted" if dry_run else "re-encrypted"
        reports = []
        for model, model_field in encrypted_fields():
            report = FieldReport(label=f"{model._meta.label}.{model_field.name}")
            try:
                self._rotate_field(model, model_field, report, dry_run=dry_run, batch_size=batch_size)
            except DatabaseError as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise CommandError(
                    f"{report.label}: database error ({type(exc).__name__}: {detail}); batches already committed "
                    "stay re-encrypted, running the command again finishes the rest"
                ) from None
            failed = f", {len(report.failed)} cannot be decrypted" if report.failed else ""
            self.stdout.write(f"{report.label}: {report.rotated} {verb}, {report.empty} empty{failed}")
            reports.append(report)

        rotated = sum(r.rotated for r in reports)
        empty = sum(r.empty for r in reports)
        failures = [failure for r in reports for failure in r.failed]
        summary = f"Total: {rotated} {verb}, {empty} empty, {len(failures)} cannot be decrypted"
        self.stdout.write(summary + (" (dry run: nothing was written)" if dry_run else ""))
        if failures:
            raise CommandError(
                f"{len(failures)} stored secret(s) could not be decrypted and were left as they are: "
                + "; ".join(failures)
                + ". Add the key they were encrypted with to TOKEN_ENCRYPTION_KEY (after the first), restart, and "
                "run the command again."
            )

    def _rotate_field(
        self,
        model: type[models.Model],
        model_field: EncryptedTextField,
        report: FieldReport,
        *,
        dry_run: bool,
        batch_size: int,
    ) -> None:
        manager = model._base_manager
        stored_column = ExpressionWrapper(F(model_field.attname), output_field=models.TextField())
        last_pk = None
        while True:
            with transaction.atomic():
                rows = manager.annotate(**{STORED: stored_column}).order_by("pk")
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                if not dry_run:
                    rows = rows.select_for_update()  # a concurrent save of the row waits for this batch
                batch = list(rows.values_list("pk", STORED)[:batch_size])
                changed = []
                for pk, stored in batch:
                    if not stored:
                        report.empty += 1
                        continue
                    new, why = _rotated(stored)
                    if new is None:
                        failure = f"{report.label} pk={pk}: {why}"
                        report.failed.append(failure)
                        self.stderr.write(f"ERROR {failure}; left as it is")
                        continue
                    changed.append(model(pk=pk, **{model_field.attname: new}))  # ciphertext: stored as it is
                    report.rotated += 1
                if changed and not dry_run:
                    manager.bulk_update(changed, [model_field.name])  # one UPDATE for the batch
            if len(batch) < batch_size:
                return
            last_pk = batch[-1][0]
