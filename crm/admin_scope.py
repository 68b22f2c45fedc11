"""Client scoping for Django admin (docs/clients.md).

A staff user limited to some clients sees, opens, changes and picks only those clients' rows, in change lists,
change forms, foreign-key choices and autocomplete alike."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from crm.models import Client
from crm.selectors import client_path_for, client_scope


class ClientScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A sidebar filter on a relation that offers only related rows of the clients the user may see."""

    def field_choices(self, field, request, model_admin):
        ordering = self.field_admin_ordering(field, request, model_admin)
        related = field.related_model
        if client_path_for(related) is None:
            return super().field_choices(field, request, model_admin)
        visible = client_scope(related._default_manager.all(), request.user)
        return field.get_choices(
            include_blank=False, ordering=ordering, limit_choices_to=Q(pk__in=visible.values("pk"))
        )


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

    def get_list_filter(self, request: HttpRequest):
        """Relation filters (`client`, `queue`, `queue__client`…) list only the user's clients' rows."""
        scoped = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str):
                try:
                    field = get_fields_from_path(self.model, entry)[-1]
                except FieldDoesNotExist:
                    field = None
                if field is not None and field.is_relation:
                    entry = (entry, ClientScopedRelatedFieldListFilter)
            scoped.append(entry)
        return scoped


class ClientScopedAdmin(ClientScopedMixin, admin.ModelAdmin):
    pass


class ClientScopedTabularInline(ClientScopedMixin, admin.TabularInline):
    pass
