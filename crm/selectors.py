"""Reads about clients and what a user may see."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, Model, OuterRef, QuerySet

from crm.models import Client, ClientMembership


def client_get_default() -> Client:
    return Client.objects.get(is_default=True)


def client_ids_visible_to(user: AbstractBaseUser) -> set[int] | None:
    """Ids of the clients `user` may see; None means every client (superusers)."""
    if not user.is_active:
        return set()
    if user.is_superuser:
        return None
    return set(ClientMembership.objects.filter(user=user).values_list("client_id", flat=True))


def client_list_for_user(user: AbstractBaseUser) -> QuerySet[Client]:
    return client_scope(Client.objects.all(), user)


def client_path_for(model: type[Model]) -> str | None:
    """The lookup from `model` to its Client, or None for models that do not belong to one.

    Client-owned models declare it as `CLIENT_PATH` (e.g. "conversation__client"); users belong to the
    clients they are members of.
    """
    if model is Client:
        return "pk"
    if issubclass(model, AbstractBaseUser):
        return "client_memberships__client"
    return getattr(model, "CLIENT_PATH", None)


def client_scope(queryset: QuerySet, user: AbstractBaseUser) -> QuerySet:
    """`queryset` narrowed to rows of the clients `user` may see (unchanged for superusers)."""
    ids = client_ids_visible_to(user)
    path = client_path_for(queryset.model)
    if ids is None or path is None:
        return queryset
    if issubclass(queryset.model, AbstractBaseUser):
        return queryset.filter(Exists(ClientMembership.objects.filter(user=OuterRef("pk"), client_id__in=ids)))
    return queryset.filter(**{f"{path}__in": ids})
