from django.db import migrations

NAME = "Sweep outbound messages"
TASK = "conversations.tasks.outbound_messages_sweep_task"
DESCRIPTION = (
    "Queues again outbound messages still pending after OUTBOUND_PENDING_REQUEUE_AFTER seconds; marks unknown those "
    "still sending after OUTBOUND_SENDING_STALE_AFTER (never re-sent blindly)."
)


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "interval": interval, "queue": "default", "description": DESCRIPTION}
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("conversations", "0007_outbound")]
    operations = [migrations.RunPython(create, remove)]
