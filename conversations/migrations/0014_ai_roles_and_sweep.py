from django.db import migrations

from crm.roles import ALL, STAFF, grant_role_permissions

TASK = "conversations.tasks.ai_replies_sweep_task"
NAME = "AI replies sweep"

ROLES = {
    STAFF: {"conversations": {"aisettings": ALL, "aiactivity": ("view",)}},
}


def grant(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, ROLES)


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": every_minute,
            "enabled": True,
            "queue": "default",
            "description": "Gives the AI assistant's answer task again to conversations whose customer wrote last, "
            "longer ago than an answer can take (a task lost with a worker or a broker restart).",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0013_ai_assistant"),
        ("campaigns", "0002_roles_and_tick"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
