"""Roles are Django groups: Staff (admin operators), Supervisor and Agent (CRM views).

Data migrations call `grant_role_permissions` with the permissions they add, so each migration states what it
granted at that point in history.
"""

from __future__ import annotations

STAFF = "Staff"
SUPERVISOR = "Supervisor"
AGENT = "Agent"
ROLES = (STAFF, SUPERVISOR, AGENT)

ALL = ("view", "add", "change", "delete")

# {role: {app_label: {model_name: actions}}}
RolePermissions = dict[str, dict[str, dict[str, tuple[str, ...]]]]


def grant_role_permissions(apps, schema_editor, roles: RolePermissions) -> None:
    """Create the groups and grant them permissions. Safe to run on a fresh database: permissions are created
    first (Django normally creates them only after all migrations have run)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, by_app in roles.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, by_model in by_app.items():
            for model, actions in by_model.items():
                codenames = [f"{action}_{model}" for action in actions]
                perms = list(Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))
                missing = set(codenames) - {p.codename for p in perms}
                if missing:
                    raise RuntimeError(f"role {role}: no permission(s) {sorted(missing)} in app {app_label}")
                group.permissions.add(*perms)
