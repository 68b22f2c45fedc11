from django.db import migrations

from crm.roles import STAFF, grant_role_permissions

TASK = "sessions.tasks.number_sync_from_registry_task"
NAME = "Sync WhatsApp numbers from the connection registry"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": hourly,
            "enabled": True,
            "queue": "default",
            "description": "Replaces the hourly cron: copies WHATSAPP_CONNECTIONS_FILE into the numbers table. "
            "Change the interval here; disable it to stop scheduled syncs.",
        },
    )


def grant_sync(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, {STAFF: {"wa_sessions": {"registrysyncrun": ("run",)}}})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("wa_sessions", "0002_registry_sync_run"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("crm", "0003_roles"),
    ]
    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
        migrations.RunPython(grant_sync, migrations.RunPython.noop),
    ]
