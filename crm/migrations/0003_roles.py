from django.db import migrations

from crm.roles import AGENT, ALL, STAFF, SUPERVISOR, grant_role_permissions

ROLES = {
    STAFF: {
        "crm": {"client": ("view", "change")},
        "queues": {"queue": ALL, "queuemembership": ALL},
        "wa_sessions": {"whatsappnumber": ALL, "numbersession": ("view",)},
        "conversations": {"contact": ALL, "conversation": ALL, "message": ("view",)},
        "django_celery_beat": {
            "periodictask": ALL,
            "intervalschedule": ALL,
            "crontabschedule": ALL,
            "clockedschedule": ALL,
            "solarschedule": ALL,
        },
    },
    SUPERVISOR: {
        "queues": {"queue": ("view",), "queuemembership": ("view",)},
        "wa_sessions": {"whatsappnumber": ("view",), "numbersession": ("view",)},
        "conversations": {
            "contact": ("view", "change"),
            "conversation": ("view", "change"),
            "message": ("view", "add"),
        },
    },
    AGENT: {
        "queues": {"queue": ("view",)},
        "conversations": {"contact": ("view",), "conversation": ("view", "change"), "message": ("view", "add")},
    },
}


def grant(apps, schema_editor):
    grant_role_permissions(apps, schema_editor, ROLES)


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0002_default_client"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("queues", "0001_initial"),
        ("wa_sessions", "0001_initial"),
        ("conversations", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
