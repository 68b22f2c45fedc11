"""The registry sync: the JSON connection registry reconciled into the numbers table (docs/registry.md)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from crm.models import Client
from sessions.models import Engine, NumberSession, RegistrySyncRun, WhatsAppNumber
from sessions.registry import RegistryEntry, RegistryError, RegistryProblem, e164_or_none, is_meta_id, load_registry

logger = logging.getLogger(__name__)

# Held for the length of a sync transaction so two runs (beat and an admin click) never interleave.
REGISTRY_SYNC_LOCK = 0x5EC5_0001
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires
RUN_HISTORY_DAYS = 90  # older sync runs are pruned after each run
SYNCED_FIELDS = ("alias", "display_number", "access_token", "verify_token", "waba_id", "is_active")


@dataclass
class SyncReport:
    file_path: str
    dry_run: bool
    entries: int = 0
    created: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    ids_corrected: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    missing_from_registry: list[dict[str, Any]] = field(default_factory=list)
    without_queue: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def success(self) -> bool:
        return not self.errors

    @property
    def writes(self) -> int:
        deactivated = sum(1 for number in self.missing_from_registry if number["deactivated"])
        return len(self.created) + len(self.updated) + deactivated

    def summary(self) -> str:
        if self.errors:
            return f"failed: {len(self.errors)} error(s), nothing changed"
        prefix = "dry run: would write" if self.dry_run else "wrote"
        counts = (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.ids_corrected)} ids corrected, "
            f"{self.unchanged} unchanged, {len(self.missing_from_registry)} missing from registry, "
            f"{len(self.without_queue)} without queue"
        )
        if not self.writes:
            return f"nothing to change ({counts})"
        return f"{prefix} {self.writes} number(s): {counts}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file_path,
            "dry_run": self.dry_run,
            "success": self.success,
            "summary": self.summary(),
            "entries": self.entries,
            "writes": self.writes,
            "created": self.created,
            "updated": self.updated,
            "ids_corrected": self.ids_corrected,
            "unchanged": self.unchanged,
            "missing_from_registry": self.missing_from_registry,
            "without_queue": self.without_queue,
            "errors": self.errors,
            "duration_ms": self.duration_ms,
        }


class _DryRunRollback(Exception):
    pass


def _describe(number: WhatsAppNumber) -> dict[str, Any]:
    return {
        "id": number.pk,
        "phone_number_id": number.phone_number_id,
        "alias": number.alias,
        "client": number.client.slug,
    }


def number_sync_from_registry(
    *,
    trigger: str,
    file_path: str | None = None,
    dry_run: bool = False,
    deactivate_missing: bool = False,
    user: AbstractBaseUser | None = None,
) -> RegistrySyncRun:
    """Reconcile the connection registry into the numbers table, all or nothing, and record the run.

    Numbers match by Meta phone-number id; a number still holding a placeholder id with the same E.164 display
    number is corrected in place. Registry fields win; queues stay as staff set them; nothing is deleted.
    """
    path = file_path or settings.WHATSAPP_CONNECTIONS_FILE
    started = timezone.now()
    clock = time.monotonic()
    report = SyncReport(file_path=str(path or ""), dry_run=dry_run)
    try:
        if not path:
            raise RegistryError(
                [RegistryProblem(None, "", "no registry file: set WHATSAPP_CONNECTIONS_FILE or pass --file")]
            )
        entries = load_registry(Path(path))
        report.entries = len(entries)
        if not entries and deactivate_missing:
            raise RegistryError(
                [RegistryProblem(None, "", "the registry is empty: refusing to deactivate every Cloud API number")]
            )
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Another run (beat, an admin click) holds the lock only for its own short transaction; waiting
                # longer than this means something is stuck, which is reported rather than waited on forever.
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true)", [f"{settings.REGISTRY_SYNC_LOCK_TIMEOUT}s"]
                )
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [REGISTRY_SYNC_LOCK])
                cursor.execute("SELECT set_config('lock_timeout', '0', true)")
            _reconcile(entries, report, deactivate_missing=deactivate_missing)
            if dry_run or report.errors:
                transaction.set_rollback(True)
    except RegistryError as exc:
        report.errors.extend(problem.as_dict() for problem in exc.problems)
    except Exception as exc:
        # The transaction rolled back, so nothing changed; record the failure (and /healthz reports it) rather
        # than lose it in a traceback.
        if getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            message = "another registry sync is still running; nothing was changed"
        else:
            logger.exception("registry sync failed unexpectedly")
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            kind = "database error" if isinstance(exc, DatabaseError) else "unexpected error"
            message = f"{kind} ({type(exc).__name__}): {text}"
        report.errors.append(RegistryProblem(None, "", message).as_dict())
    report.duration_ms = round((time.monotonic() - clock) * 1000)
    if report.errors:
        report.created, report.updated, report.ids_corrected = [], [], []
    run = RegistrySyncRun.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        trigger=trigger,
        triggered_by=user if user is not None and user.is_authenticated else None,
        file_path=report.file_path[:500],
        dry_run=dry_run,
        success=report.success,
        summary=report.summary()[:300],
        report=_storable(report.as_dict()),
    )
    RegistrySyncRun.objects.filter(started_at__lt=started - timedelta(days=RUN_HISTORY_DAYS)).delete()
    log = logger.info if report.success else logger.warning
    log("registry sync run %s (%s%s): %s", run.pk, trigger, ", dry run" if dry_run else "", run.summary)
    return run


def _storable(value: Any) -> Any:
    """The report without characters PostgreSQL's jsonb refuses (NUL), so a run is always recorded."""
    return json.loads(json.dumps(value, ensure_ascii=True).replace("\\u0000", "\\ufffd"))


def _reconcile(entries: list[RegistryEntry], report: SyncReport, *, deactivate_missing: bool) -> None:
    numbers = list(WhatsAppNumber.objects.select_related("client", "queue").order_by("pk"))
    by_id = {number.phone_number_id: number for number in numbers}
    placeholders_by_e164: dict[str, list[WhatsAppNumber]] = {}
    for number in numbers:
        e164 = e164_or_none(number.display_number)
        # Only Cloud API numbers come from the registry; a WhatsApp Web number is never taken over by it.
        if e164 and number.engine == Engine.CLOUD and not is_meta_id(number.phone_number_id):
            placeholders_by_e164.setdefault(e164, []).append(number)
    clients = {client.slug: client for client in Client.objects.all()}
    default_client = next((c for c in clients.values() if c.is_default), None)

    def problem(entry: RegistryEntry, message: str) -> None:
        report.errors.append(RegistryProblem(entry.index, entry.entry_id, message).as_dict())

    to_create: list[WhatsAppNumber] = []
    to_update: dict[int, tuple[WhatsAppNumber, set[str]]] = {}
    seen: set[int] = set()
    entry_of: dict[int, RegistryEntry] = {}  # id() of a number object -> the entry that creates or updates it
    for entry in entries:
        client = clients.get(entry.client_slug) if entry.client_slug else default_client
        if client is None:
            problem(entry, f"unknown client {entry.client_slug!r}" if entry.client_slug else "no default client exists")
            continue
        number = by_id.get(entry.phone_number_id)
        corrected_from = None
        if number is None and entry.has_meta_id:
            candidates = [n for n in placeholders_by_e164.get(entry.e164, []) if n.pk not in seen]
            if len(candidates) > 1:
                ids = ", ".join(n.phone_number_id for n in candidates)
                problem(entry, f"several numbers with placeholder ids ({ids}) have display number {entry.e164}")
                continue
            if candidates:
                number, corrected_from = candidates[0], candidates[0].phone_number_id
        if number is None:
            to_create.append(
                WhatsAppNumber(
                    client=client,
                    alias=entry.alias,
                    display_number=entry.display_number,
                    phone_number_id=entry.phone_number_id,
                    engine=Engine.CLOUD,
                    access_token=entry.access_token or "",
                    verify_token=entry.verify_token or "",
                    waba_id=entry.waba_id or "",
                    is_active=entry.is_active,
                )
            )
            entry_of[id(to_create[-1])] = entry
            continue
        if number.engine != Engine.CLOUD:
            problem(
                entry, f"id {entry.phone_number_id} belongs to {number.get_engine_display()} number {number.alias!r}"
            )
            continue
        if entry.client_slug and number.client_id != client.pk:
            problem(
                entry,
                f"number {number.alias!r} belongs to client {number.client.slug!r}; sync never moves a number to "
                f"client {entry.client_slug!r}",
            )
            continue
        seen.add(number.pk)
        entry_of[id(number)] = entry
        changed = _apply_entry(number, entry)
        if corrected_from is not None:
            number.phone_number_id = entry.phone_number_id
            changed.add("phone_number_id")
            report.ids_corrected.append(
                {
                    "id": number.pk,
                    "from": corrected_from,
                    "to": entry.phone_number_id,
                    "alias": number.alias,
                    "client": number.client.slug,
                }
            )
        if changed:
            to_update[number.pk] = (number, changed)
            report.updated.append({**_describe(number), "fields": sorted(changed)})
        else:
            report.unchanged += 1

    for number in numbers:
        if number.pk in seen or number.engine != Engine.CLOUD:
            continue
        deactivate = deactivate_missing and number.is_active
        if deactivate:
            number.is_active = False
            to_update[number.pk] = (number, {"is_active"})
        report.missing_from_registry.append({**_describe(number), "deactivated": deactivate})

    # After the sync no two numbers may be the same phone number (in any engine), whichever way it was written.
    holders: dict[str, WhatsAppNumber] = {}
    for number in [*numbers, *to_create]:
        e164 = e164_or_none(number.display_number)
        if not e164:
            continue
        first = holders.setdefault(e164, number)
        if first is not number:
            entry = entry_of.get(id(number)) or entry_of.get(id(first))
            other = first if entry is entry_of.get(id(number)) else number
            if entry is not None:
                problem(
                    entry,
                    f"display number {e164} already belongs to {other.get_engine_display()} number {other.alias!r} "
                    f"(id {other.phone_number_id})",
                )

    if report.errors:
        return
    created = WhatsAppNumber.objects.bulk_create(to_create)
    NumberSession.objects.bulk_create([NumberSession(number=number) for number in created])
    report.created = [_describe(number) for number in created]
    if to_update:
        # bulk_update skips auto_now, so stamp updated_at here: only on the rows that really changed.
        now = timezone.now()
        for number, _changed in to_update.values():
            number.updated_at = now
        fields = sorted(set().union(*(changed for _number, changed in to_update.values())) | {"updated_at"})
        WhatsAppNumber.objects.bulk_update([number for number, _changed in to_update.values()], fields, batch_size=500)
    report.without_queue = [
        _describe(number)
        for number in WhatsAppNumber.objects.filter(is_active=True, queue__isnull=True)
        .select_related("client")
        .order_by("client__slug", "alias")
    ]


def _apply_entry(number: WhatsAppNumber, entry: RegistryEntry) -> set[str]:
    """Copy the registry's fields onto `number`; the names of those that changed. Absent keys change nothing."""
    wanted: dict[str, Any] = {
        "alias": entry.alias,
        "display_number": entry.display_number,
        "is_active": entry.is_active,
    }
    if entry.access_token is not None:
        wanted["access_token"] = entry.access_token
    if entry.verify_token is not None:
        wanted["verify_token"] = entry.verify_token
    if entry.waba_id is not None:
        wanted["waba_id"] = entry.waba_id
    changed = set()
    for name, value in wanted.items():
        if getattr(number, name) != value:
            setattr(number, name, value)
            changed.add(name)
    return changed
