from __future__ import annotations

from django.http import HttpRequest

from crm.selectors import client_list_for_user


def visible_clients(request: HttpRequest) -> dict:
    """Lazily tells templates which clients the signed-in user works in (shown in the admin header)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"visible_clients": lambda: list(client_list_for_user(user).values_list("name", flat=True)[:6])}
