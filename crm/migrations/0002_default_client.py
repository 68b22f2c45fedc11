from django.db import migrations


def create_default_client(apps, schema_editor):
    Client = apps.get_model("crm", "Client")
    if not Client.objects.filter(is_default=True).exists():
        Client.objects.get_or_create(slug="default", defaults={"name": "Default", "is_default": True})


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]
    operations = [migrations.RunPython(create_default_client, migrations.RunPython.noop)]
