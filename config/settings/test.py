"""Settings for the test suite: real PostgreSQL and Redis (a separate Redis database), fast hashing."""

from config.env import env, validate_redis_url

from .base import *  # noqa: F403
from .base import CACHES, CHANNEL_LAYERS

SECRET_KEY = "test-only-not-secret"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
TOKEN_ENCRYPTION_KEYS = ["dGVzdC1vbmx5LWtleS1ub3Qtc2VjcmV0LTMyYnl0ZXM="]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "en"

# Tests keep their Redis keys apart from a running demo: database 9 unless TEST_REDIS_URL says otherwise.
REDIS_URL = validate_redis_url(env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/9"), "TEST_REDIS_URL")
CELERY_BROKER_URL = REDIS_URL
CACHES["default"]["LOCATION"] = REDIS_URL
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [REDIS_URL]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Tests pass registry files explicitly; a developer's own registry in .env must not leak into them.
WHATSAPP_CONNECTIONS_FILE = ""
# Webhooks in tests are signed with this secret; the Graph API is a fake on 127.0.0.1 (tests/fakes), never Meta.
WHATSAPP_APP_SECRET = "test-app-secret"
WHATSAPP_VERIFY_TOKEN = ""
# Child processes started by a test (workers) reach the test's fake Graph API through TEST_GRAPH_API_URL, never
# WHATSAPP_GRAPH_API_URL: a developer's .env must not send the suite's messages to Meta.
WHATSAPP_GRAPH_API_URL = env.str("TEST_GRAPH_API_URL", default="http://127.0.0.1:9")
WHATSAPP_SEND_BACKOFF = 0.001
# The sending governor paces real numbers (a WhatsApp Web number sends every 4 s, one recipient every 6 s); tests
# that are not about pacing must not wait for it. Governor tests set their own values.
GOVERNOR_WEB_INTERVAL = env.float("GOVERNOR_WEB_INTERVAL", default=0.001)
GOVERNOR_PAIR_INTERVAL = env.float("GOVERNOR_PAIR_INTERVAL", default=0.0)
# Likewise the AI assistant's API is a fake on 127.0.0.1 (tests/fakes/openai_api.py), reached by child processes
# through TEST_OPENAI_BASE_URL and TEST_OPENAI_API_KEY: a developer's key must never pay for the suite.
OPENAI_BASE_URL = env.str("TEST_OPENAI_BASE_URL", default="http://127.0.0.1:9/v1")
OPENAI_API_KEY = env.str("TEST_OPENAI_API_KEY", default="")
# The suite's webhook receivers listen on 127.0.0.1; one test turns this off to check the refusal.
EVENT_WEBHOOK_ALLOW_PRIVATE = True
