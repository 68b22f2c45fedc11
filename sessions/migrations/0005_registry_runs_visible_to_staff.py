from django.db import migrations

from crm.roles import STAFF, grant_role_permissions


def grant(apps, schema_editor):
    # Staff read the runs they can start; the admin shows each user only their clients' part of a report.
    grant_role_permissions(apps, schema_editor, {STAFF: {"wa_sessions": {"registrysyncrun": ("view",)}}})


class Migration(migrations.Migration):
    dependencies = [("wa_sessions", "0004_whatsappnumber_attention_reason_and_more")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
