from django.db import migrations

from crm.roles import ALL, STAFF, grant_role_permissions

TASK = "campaigns.tasks.campaigns_tick_task"
NAME = "Campaigns tick"

ROLES = {
    STAFF: {
        "campaigns": {"campaign": ALL, "recipient": ("view", "change"), "recipientimport": ("view",)},
    },
}


def grant(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, ROLES)


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_seconds, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": every_5_seconds,
            "enabled": True,
            "queue": "campaigns",
            "description": "Starts scheduled campaigns when due, gives a dispatcher to every running campaign that "
            "lost one (killed worker), puts back claims of dead dispatchers, follows recipients' messages "
            "(delivered, read, replied) and completes finished campaigns.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_campaigns"),
        ("crm", "0005_crm_views"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
