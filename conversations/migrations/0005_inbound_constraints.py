# Constraints and indexes after 0004's data migration, in their own transaction (PostgreSQL refuses to alter a
# table with pending trigger events from rows updated in the same transaction).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_inbound_pipeline"),
        ("crm", "0004_client_meta_app_secret"),
        ("wa_sessions", "0004_whatsappnumber_attention_reason_and_more"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(fields=["queue", "status", "waiting_since"], name="conversatio_queue_i_311055_idx"),
        ),
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(fields=["assigned_to", "status"], name="conversatio_assigne_c4553f_idx"),
        ),
        migrations.AddConstraint(
            model_name="contact",
            constraint=models.UniqueConstraint(
                condition=models.Q(("identity_key", ""), _negated=True),
                fields=("client", "identity_key"),
                name="unique_contact_identity",
            ),
        ),
        migrations.AddConstraint(
            model_name="contact",
            constraint=models.UniqueConstraint(
                condition=models.Q(("bsuid", ""), _negated=True),
                fields=("client", "bsuid"),
                name="unique_contact_bsuid",
            ),
        ),
        migrations.AddConstraint(
            model_name="contact",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("identity_key", ""), _negated=True),
                    models.Q(("bsuid", ""), _negated=True),
                    _connector="OR",
                ),
                name="contact_has_phone_or_bsuid",
            ),
        ),
        migrations.AddField(
            model_name="unmatchedstatus",
            name="number",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="wa_sessions.whatsappnumber"
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="client",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="crm.client"
            ),
        ),
        migrations.AddIndex(
            model_name="unmatchedstatus",
            index=models.Index(fields=["number", "provider_message_id"], name="conversatio_number__cc4f6e_idx"),
        ),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(fields=["status", "created_at"], name="conversatio_status_ddf800_idx"),
        ),
    ]
