"""Beat's scheduler: django-celery-beat's database scheduler (schedules editable in admin) that also
records each tick, so /healthz can tell beat is alive. Imported by beat only (CELERY_BEAT_SCHEDULER)."""

from __future__ import annotations

import logging
import time

from django_celery_beat.schedulers import DatabaseScheduler

from crm.health import record_beat_tick

logger = logging.getLogger(__name__)


class HealthRecordingScheduler(DatabaseScheduler):
    record_every = 5.0
    _last_recorded = 0.0

    def tick(self, *args, **kwargs):
        now = time.time()
        if now - self._last_recorded >= self.record_every:
            try:
                record_beat_tick(now)
                self._last_recorded = now
            except Exception:  # health bookkeeping must never stop the schedule
                logger.warning("could not record beat tick", exc_info=True)
        return super().tick(*args, **kwargs)
