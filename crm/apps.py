from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        from crm.api import schema  # noqa: F401  (registers the API token scheme with drf-spectacular)
