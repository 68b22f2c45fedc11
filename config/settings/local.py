"""Settings for a developer machine (`make run`): debug on, safe local defaults."""

from config.env import env

from .base import *  # noqa: F403
from .base import TOKEN_ENCRYPTION_KEYS

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="") or "local-development-only-not-secret"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# A fixed key so a local database stays readable across restarts. Production refuses to start without its own.
TOKEN_ENCRYPTION_KEYS = TOKEN_ENCRYPTION_KEYS or ["bG9jYWwtZGV2ZWxvcG1lbnQtb25seS1rZXktMzJieXQ="]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Plain storage: no manifest to build, so DEBUG=false locally still serves admin assets through WhiteNoise finders.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
