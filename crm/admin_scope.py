"""Client scoping for Django admin (docs/clients.md).

A staff user limited to some clients sees, opens, changes and picks only those clients' rows, in change lists,
change forms, foreign-key choices and autocomplete alike."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from crm.models import Client
from crm.selectors import client_path_for, client_scope


class ClientScopedMixin:
    """Mix into ModelAdmin and InlineModelAdmin classes of client-owned models (those with CLIENT_PATH)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return client_scope(super().get_queryset(request), request.user)

    def _scope_field(self, formfield, request: HttpRequest):
        if formfield is not None and hasattr(formfield, "queryset"):
            if client_path_for(formfield.queryset.model) is not None:
                formfield.queryset = client_scope(formfield.queryset, request.user)
        return formfield

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        field = self._scope_field(field, request)
        # One visible client: preselect it, so single-business staff never think about clients.
        if field is not None and db_field.related_model is Client and field.queryset.count() == 1:
            field.initial = field.queryset.first().pk
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return self._scope_field(super().formfield_for_manytomany(db_field, request, **kwargs), request)


class ClientScopedAdmin(ClientScopedMixin, admin.ModelAdmin):
    pass


class ClientScopedTabularInline(ClientScopedMixin, admin.TabularInline):
    pass
