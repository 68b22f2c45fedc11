"""Health of the parts the product needs (docs/operations.md): PostgreSQL, Redis, Celery workers per queue, beat.

Each check returns quickly (bounded by HEALTH_CHECK_TIMEOUT) and never raises: a failing part is reported by
name, so /healthz can answer 503 with what is wrong instead of crashing.
"""

from __future__ import annotations

import logging
import time
from typing import TypedDict

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

BEAT_TICK_KEY = "crm:health:beat:last_tick"


class CheckResult(TypedDict, total=False):
    ok: bool
    error: str
    detail: dict


def _redis() -> redis.Redis:
    timeout = settings.HEALTH_CHECK_TIMEOUT
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def record_beat_tick(when: float | None = None) -> None:
    """Called by beat's scheduler on its loop; /healthz reads it."""
    _redis().set(BEAT_TICK_KEY, str(when or time.time()), ex=max(settings.HEALTH_BEAT_MAX_AGE * 10, 3600))


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True}
    except Exception as exc:
        logger.warning("health: database check failed: %s", type(exc).__name__)
        return {"ok": False, "error": f"database unreachable ({type(exc).__name__})"}


def check_redis() -> CheckResult:
    try:
        _redis().ping()
        return {"ok": True}
    except Exception as exc:
        logger.warning("health: redis check failed: %s", type(exc).__name__)
        return {"ok": False, "error": f"redis unreachable ({type(exc).__name__})"}


def check_workers() -> CheckResult:
    """Which worker consumes each expected queue (asks live workers over the broker)."""
    from config.celery import app

    expected = list(settings.HEALTH_EXPECTED_QUEUES)
    try:
        replies = app.control.inspect(timeout=settings.HEALTH_CHECK_TIMEOUT).active_queues() or {}
    except Exception as exc:
        return {"ok": False, "error": f"cannot ask workers ({type(exc).__name__})"}
    by_queue: dict[str, list[str]] = {name: [] for name in expected}
    for worker, queues in replies.items():
        for queue in queues or []:
            by_queue.setdefault(queue["name"], []).append(worker)
    missing = [name for name in expected if not by_queue.get(name)]
    result: CheckResult = {"ok": not missing, "detail": {name: sorted(w) for name, w in by_queue.items()}}
    if missing:
        result["error"] = "no worker consumes queue(s): " + ", ".join(missing)
    return result


def check_beat() -> CheckResult:
    try:
        raw = _redis().get(BEAT_TICK_KEY)
    except Exception as exc:
        return {"ok": False, "error": f"cannot read beat's last tick ({type(exc).__name__})"}
    if raw is None:
        return {"ok": False, "error": "beat has not ticked"}
    age = time.time() - float(raw)
    ok = age <= settings.HEALTH_BEAT_MAX_AGE
    result: CheckResult = {"ok": ok, "detail": {"last_tick_age_seconds": round(age, 1)}}
    if not ok:
        result["error"] = f"beat's last tick was {int(age)}s ago (limit {settings.HEALTH_BEAT_MAX_AGE}s)"
    return result


def check_registry() -> CheckResult:
    """Age and outcome of the last registry sync; unhealthy when syncs fail or stop (if a registry is configured)."""
    from sessions.selectors import registry_sync_last_run

    try:
        last = registry_sync_last_run()
        last_ok = last if last is None or last.success else registry_sync_last_run(successful_only=True)
    except Exception as exc:
        return {"ok": False, "error": f"cannot read registry sync runs ({type(exc).__name__})"}
    now = time.time()
    detail: dict = {
        "configured": bool(settings.WHATSAPP_CONNECTIONS_FILE),
        "last_run_age_seconds": round(now - last.started_at.timestamp(), 1) if last else None,
        "last_run_success": last.success if last else None,
        "last_success_age_seconds": round(now - last_ok.started_at.timestamp(), 1) if last_ok else None,
    }
    if not settings.WHATSAPP_CONNECTIONS_FILE:
        return {"ok": True, "detail": detail}
    if last is not None and not last.success:
        return {"ok": False, "detail": detail, "error": f"the last registry sync failed: {last.summary}"}
    if last_ok is None:
        return {"ok": False, "detail": detail, "error": "the registry has never synced successfully"}
    if detail["last_success_age_seconds"] > settings.REGISTRY_SYNC_MAX_AGE:
        return {
            "ok": False,
            "detail": detail,
            "error": f"last successful registry sync was {int(detail['last_success_age_seconds'])}s ago "
            f"(limit {settings.REGISTRY_SYNC_MAX_AGE}s)",
        }
    return {"ok": True, "detail": detail}


def health_report() -> dict:
    """Every check; workers and beat are only asked when Redis (their broker and store) answers."""
    checks: dict[str, CheckResult] = {"database": check_database(), "redis": check_redis()}
    checks["registry"] = (
        check_registry() if checks["database"]["ok"] else {"ok": False, "error": "not checked: database is down"}
    )
    if checks["redis"]["ok"]:
        checks["workers"] = check_workers()
        checks["beat"] = check_beat()
    else:
        skipped = {"ok": False, "error": "not checked: redis is down"}
        checks["workers"] = dict(skipped)
        checks["beat"] = dict(skipped)
    failing = [name for name, result in checks.items() if not result["ok"]]
    return {"status": "ok" if not failing else "unhealthy", "failing": failing, "checks": checks}
