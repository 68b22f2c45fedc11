from django.db import migrations

from crm.roles import STAFF, grant_role_permissions


def grant(apps, schema_editor):
    # Staff review webhook events and reprocess failed ones ("change"), and see statuses waiting for their message.
    grant_role_permissions(
        apps,
        schema_editor,
        {STAFF: {"conversations": {"webhookevent": ("view", "change"), "unmatchedstatus": ("view",)}}},
    )


class Migration(migrations.Migration):
    dependencies = [("conversations", "0008_outbound_schedule")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
