from django.db import migrations

from crm.roles import STAFF, SUPERVISOR, grant_role_permissions

TASK = "sessions.tasks.sessions_check_task"
NAME = "Check every WhatsApp Web / sandbox session"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": every_5_minutes,
            "enabled": True,
            "queue": "default",
            "description": "Every number staff want connected is held by a live sessions worker with a fresh "
            "heartbeat; restarts stalled connections, corrects states left by a dead worker, flags numbers no "
            "worker holds.",
        },
    )


def grant_history(apps, schema_editor):
    # Staff and supervisors read a number's state history and outage windows on its admin page.
    history = {"sessionstatechange": ("view",), "sessionoutage": ("view",)}
    grant_role_permissions(apps, schema_editor, {STAFF: {"wa_sessions": history}, SUPERVISOR: {"wa_sessions": history}})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("wa_sessions", "0006_session_supervision"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("crm", "0003_roles"),
    ]
    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
        migrations.RunPython(grant_history, migrations.RunPython.noop),
    ]
