from django.db import migrations

SCHEDULES = [
    (
        "Requeue unprocessed webhook events",
        "conversations.tasks.webhook_events_requeue_task",
        1,
        "minutes",
        "Hands webhook events still pending after WEBHOOK_REQUEUE_AFTER seconds to a worker again.",
    ),
    (
        "Apply early delivery statuses",
        "conversations.tasks.unmatched_statuses_sweep_task",
        5,
        "minutes",
        "Applies statuses that arrived before their message's provider id was recorded; forgets week-old ones.",
    ),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period, description in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "queue": "default", "description": description},
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_inbound_constraints"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
