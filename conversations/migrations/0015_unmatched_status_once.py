from django.db import migrations, models

# Keep the first of each (number, message, status) before the constraint makes the rest impossible.
DEDUPLICATE = """
DELETE FROM conversations_unmatchedstatus AS later
USING conversations_unmatchedstatus AS earlier
WHERE later.number_id = earlier.number_id
  AND later.provider_message_id = earlier.provider_message_id
  AND later.status = earlier.status
  AND later.id > earlier.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0014_ai_roles_and_sweep"),
        ("wa_sessions", "0008_sending_governor"),
    ]

    operations = [
        migrations.RunSQL(DEDUPLICATE, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="unmatchedstatus",
            constraint=models.UniqueConstraint(
                fields=("number", "provider_message_id", "status"), name="unmatched_status_once"
            ),
        ),
    ]
