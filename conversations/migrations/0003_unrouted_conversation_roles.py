from django.db import migrations

from crm.roles import STAFF, SUPERVISOR, grant_role_permissions

ROLES = {
    STAFF: {"conversations": {"unroutedconversation": ("view", "change")}},
    SUPERVISOR: {"conversations": {"unroutedconversation": ("view",)}},
}


def grant(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, ROLES)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_unrouted_conversation"), ("crm", "0003_roles")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
