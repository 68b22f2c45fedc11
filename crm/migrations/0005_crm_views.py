from django.db import migrations

from crm.roles import AGENT, ALL, STAFF, SUPERVISOR, grant_role_permissions

TASK = "queues.tasks.agents_presence_sweep_task"
NAME = "Set agents away when their CRM is closed"

ROLES = {
    STAFF: {"queues": {"quickreply": ALL}, "conversations": {"messagetemplate": ALL}},
    SUPERVISOR: {"queues": {"quickreply": ALL}, "conversations": {"messagetemplate": ("view",)}},
    AGENT: {"queues": {"quickreply": ("view",)}, "conversations": {"messagetemplate": ("view",)}},
}


def grant(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, ROLES)


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_30_seconds, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": every_30_seconds,
            "enabled": True,
            "queue": "default",
            "description": "An online agent whose last CRM tab closed more than AGENT_AWAY_GRACE_SECONDS ago is "
            "set away, so the assignment policy stops giving them conversations.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0004_client_meta_app_secret"),
        ("queues", "0003_crm_views"),
        ("conversations", "0010_crm_views"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
