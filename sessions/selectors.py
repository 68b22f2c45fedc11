"""Reads about numbers and their sessions used by admin, health, reports and the REST API (docs/api.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet

from crm.models import Client
from crm.selectors import client_ids_visible_to, client_scope
from sessions.connections import live_connection, number_queue
from sessions.engines import connection_engine_names, engine_class
from sessions.models import NumberSession, RegistrySyncRun, SessionState, SessionStateChange, WhatsAppNumber
from sessions.registry import e164_or_none

if TYPE_CHECKING:
    from crm.access import Access


@dataclass(frozen=True)
class SendRules:
    """What a number's engine allows: free text only within `reply_window` of the customer's last message (None:
    always), templates only where `supports_templates`."""

    reply_window: timedelta | None
    supports_templates: bool


def number_send_rules(*, number: WhatsAppNumber) -> SendRules:
    """Raises `sessions.engines.EngineUnavailable` when the number's engine cannot send."""
    engine = engine_class(number.engine)
    return SendRules(reply_window=engine.reply_window, supports_templates=engine.supports_templates)


def number_send_queue(*, number: WhatsAppNumber) -> str:
    """Where a send for `number` is queued: the shared default queue for a stateless engine (Cloud API), the
    number's own queue, consumed only by the worker holding its connection, otherwise."""
    return number_queue(number.pk) if number.engine in connection_engine_names() else "default"


def number_can_send_here(*, number: WhatsAppNumber) -> bool:
    """Whether this process can hand a message for `number` to its provider now: always for a stateless engine;
    for a connection engine only while this process holds the number's connection online."""
    return number.engine not in connection_engine_names() or live_connection(number.pk) is not None


class NumberLookupError(Exception):
    """No number, or more than one, matches what was typed."""


def number_find(*, identifier: str) -> WhatsAppNumber:
    """The one number whose id, alias, display number or Meta phone-number id is `identifier`; a
    `NumberLookupError` that lists the candidates otherwise (for commands, where people type what they see)."""
    text = identifier.strip()
    query = Q(alias__iexact=text) | Q(phone_number_id=text) | Q(display_number=text)
    if text.isdigit():
        query |= Q(pk=int(text))
    numbers = WhatsAppNumber.objects.select_related("client").order_by("pk")
    found = {n.pk: n for n in numbers.filter(query)}
    e164 = e164_or_none(text) if text.startswith("+") else None
    if e164:  # "+51 987 654 321" typed with other spacing than stored
        found.update({n.pk: n for n in numbers if e164_or_none(n.display_number) == e164})
    found = sorted(found.values(), key=lambda n: n.pk)
    if len(found) == 1:
        return found[0]
    if not found:
        near = list(numbers.filter(alias__icontains=text)[:10])
        hint = f" Similar: {', '.join(_label(n) for n in near)}." if near else ""
        raise NumberLookupError(f"No number matches {text!r} (give its id, alias or display number).{hint}")
    raise NumberLookupError(
        f"{len(found)} numbers match {text!r}; give the id of one: " + ", ".join(_label(n) for n in found)
    )


def _label(number: WhatsAppNumber) -> str:
    return f"#{number.pk} {number.alias} ({number.display_number}, {number.client.slug})"


def number_list_active_without_queue(*, user: AbstractBaseUser) -> QuerySet[WhatsAppNumber]:
    """Active numbers whose conversations would reach no queue, among those `user` may see."""
    queryset = WhatsAppNumber.objects.filter(is_active=True, queue__isnull=True).select_related("client")
    return client_scope(queryset, user).order_by("client__name", "alias")


def number_list_needing_attention(*, user: AbstractBaseUser) -> QuerySet[WhatsAppNumber]:
    """Numbers the provider stopped accepting sends from (expired token, restricted account), among those `user`
    may see, longest-flagged first."""
    queryset = WhatsAppNumber.objects.filter(attention_since__isnull=False).select_related("client")
    return client_scope(queryset, user).order_by("attention_since", "pk")


def registry_sync_last_run(*, successful_only: bool = False) -> RegistrySyncRun | None:
    runs = RegistrySyncRun.objects.filter(dry_run=False)
    if successful_only:
        runs = runs.filter(success=True)
    return runs.order_by("-started_at", "-id").first()


NUMBER_LISTS = ("created", "updated", "ids_corrected", "missing_from_registry", "without_queue")


def registry_report_for_user(report: dict, *, user: AbstractBaseUser) -> dict:
    """A sync report as `user` may read it. The registry spans every client: a user limited to some clients
    gets only the lines, counts and errors about their own clients' numbers (errors of the file itself, which
    name no number, are hidden too: they may quote any client's entry)."""
    visible = client_ids_visible_to(user)
    if visible is None:
        return report
    slugs = set(Client.objects.filter(pk__in=visible).values_list("slug", flat=True))
    scoped = {**report}
    for key in NUMBER_LISTS:
        scoped[key] = [n for n in report.get(key, []) if n.get("client") in slugs]
    scoped["errors"] = []
    scoped["hidden_errors"] = len(report.get("errors", []))
    scoped["unchanged"] = None  # a count over every client's numbers
    if report.get("errors"):
        scoped["summary"] = f"failed: {len(report['errors'])} error(s) in the registry file, nothing changed"
    else:
        prefix = "dry run, your clients:" if report.get("dry_run") else "your clients:"
        scoped["summary"] = (
            f"{prefix} {len(scoped['created'])} created, {len(scoped['updated'])} updated, "
            f"{len(scoped['ids_corrected'])} ids corrected, {len(scoped['missing_from_registry'])} missing from "
            f"registry, {len(scoped['without_queue'])} without queue"
        )
    return scoped


def session_state_data(*, session: NumberSession, number: WhatsAppNumber) -> dict[str, Any]:
    """What a staff page shows of a number's session: the payload of `session.state` events and snapshots."""
    return {
        "number": number.pk,
        "alias": number.alias,
        "engine": number.engine,
        "state": session.state,
        "state_display": session.get_state_display(),
        "reason": session.state_reason,
        "since": session.state_changed_at.isoformat() if session.state_changed_at else None,
        "keep_connected": session.keep_connected,
        "waiting_qr": session_qr_waiting(session),
        "qr_version": hashlib.sha256(session.qr_code.encode()).hexdigest()[:12] if session.qr_code else "",
        "qr_expires_at": session.qr_expires_at.isoformat() if session.qr_expires_at else None,
        "pairing_code": session.pairing_code,
        "owner": session.owner,
    }


SNAPSHOT_LIMIT = 2000


def session_snapshot_for_user(*, user: AbstractBaseUser) -> list[dict[str, Any]]:
    """The current session of every number `user` may see (at most SNAPSHOT_LIMIT): what a staff page gets first
    when its WebSocket opens, before any change."""
    sessions = client_scope(NumberSession.objects.select_related("number").order_by("number_id"), user)[:SNAPSHOT_LIMIT]
    return [session_state_data(session=s, number=s.number) for s in sessions]


# -- the REST API's numbers (docs/api.md) -----------------------------------------------------------------------


def number_list_for_access(*, access: Access, filters: Mapping[str, Any] | None = None) -> QuerySet[WhatsAppNumber]:
    """The numbers `access` may see, with what every answer shows (queue, session) in the same query: every number
    of their client(s) for staff and tokens, those of their queues for supervisors and agents.

    `filters` (each optional): `engine`, `is_active` (None: either), `state` (the session's), `queue` (an id)."""
    filters = filters or {}
    queryset = WhatsAppNumber.objects.select_related("queue", "session")
    if access.client_ids is not None:
        queryset = queryset.filter(client_id__in=access.client_ids)
    if not access.is_staff:
        queryset = queryset.filter(queue_id__in=access.queue_ids)
    queryset = queryset.order_by("client__name", "alias", "pk")
    if "engine" in filters:
        queryset = queryset.filter(engine=filters["engine"])
    if filters.get("is_active") is not None:
        queryset = queryset.filter(is_active=filters["is_active"])
    if "state" in filters:
        queryset = queryset.filter(session__state=filters["state"])
    if "queue" in filters:
        queryset = queryset.filter(queue_id=filters["queue"])
    return queryset


def number_get_for_access(*, access: Access, pk: int) -> WhatsAppNumber | None:
    """The number if `access` may see it (`number_list_for_access`), else None."""
    return number_list_for_access(access=access).filter(pk=pk).first()


def number_has_connection(*, number: WhatsAppNumber) -> bool:
    """Whether the number's engine holds a connection (WhatsApp Web, sandbox): a state, a QR code, connect and
    disconnect. Cloud API numbers have none."""
    return number.engine in connection_engine_names()


def number_session_get(*, number: WhatsAppNumber) -> NumberSession:
    """The number's session; every saved number has one (number_session_ensure). Should one be missing, the
    number has never been connected and nobody asked for it: shown disconnected, never created by a read."""
    try:
        return number.session
    except NumberSession.DoesNotExist:
        return NumberSession(number_id=number.pk, keep_connected=False)


def session_qr_waiting(session: NumberSession) -> bool:
    """Whether the number shows a QR code to scan now (as the admin's session panel decides)."""
    return session.state == SessionState.WAITING_QR and bool(session.qr_code)


def session_state_change_list(*, number: WhatsAppNumber, limit: int) -> QuerySet[SessionStateChange]:
    """The number's newest `limit` session state changes, newest first."""
    return SessionStateChange.objects.filter(number=number).order_by("-created_at", "-id")[:limit]
