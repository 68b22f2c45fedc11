"""Reads about numbers used by admin, health and reports."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from crm.selectors import client_scope
from sessions.models import RegistrySyncRun, WhatsAppNumber


def number_list_active_without_queue(*, user: AbstractBaseUser) -> QuerySet[WhatsAppNumber]:
    """Active numbers whose conversations would reach no queue, among those `user` may see."""
    queryset = WhatsAppNumber.objects.filter(is_active=True, queue__isnull=True).select_related("client")
    return client_scope(queryset, user).order_by("client__name", "alias")


def registry_sync_last_run(*, successful_only: bool = False) -> RegistrySyncRun | None:
    runs = RegistrySyncRun.objects.filter(dry_run=False)
    if successful_only:
        runs = runs.filter(success=True)
    return runs.order_by("-started_at", "-id").first()
