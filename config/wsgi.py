import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from config.env import exit_on_config_error  # noqa: E402

with exit_on_config_error():
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
