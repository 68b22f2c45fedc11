"""Roles exist from the first migrate, with the permissions each needs."""

import pytest
from django.contrib.auth.models import Group

from crm.models import Client


def codenames(role: str) -> set[str]:
    return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


@pytest.mark.django_db
def test_role_groups_are_created_with_their_permissions():
    staff, supervisor, agent = codenames("Staff"), codenames("Supervisor"), codenames("Agent")

    assert {"change_whatsappnumber", "add_queue", "change_queuemembership", "change_periodictask"} <= staff
    assert not any(code.endswith("_user") for code in staff), "only superusers manage users"
    assert {"view_conversation", "change_conversation", "add_message"} <= supervisor
    assert {"view_conversation", "change_conversation", "add_message", "view_contact"} <= agent
    assert "change_whatsappnumber" not in agent and "delete_conversation" not in agent


@pytest.mark.django_db
def test_exactly_one_default_client_exists_from_the_first_migrate():
    assert list(Client.objects.filter(is_default=True).values_list("slug", flat=True)) == ["default"]
