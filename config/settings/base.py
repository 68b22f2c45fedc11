"""Settings shared by every environment. Values come from the environment (see .env.example)."""

from __future__ import annotations

from config.env import BASE_DIR, env, parse_database_url, validate_fernet_keys, validate_redis_url

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "crm",
    "queues",
    "sessions.apps.SessionsConfig",
    "conversations",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "crm.context_processors.visible_clients",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------------------
DATABASES = {
    "default": parse_database_url(env.str("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/whatsapp_crm"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = validate_redis_url(env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "crm",
        "TIMEOUT": 300,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "crm:channels"},
    }
}

# --- Secrets at rest ---------------------------------------------------------------------------------------
# Fernet keys (urlsafe base64, 32 bytes) separated by commas: the first encrypts, all decrypt (key rotation).
TOKEN_ENCRYPTION_KEYS: list[str] = validate_fernet_keys(env.list("TOKEN_ENCRYPTION_KEY", default=[]))

# --- Auth, i18n, static ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "crm:login"
LOGIN_REDIRECT_URL = "crm:inbox"
LOGOUT_REDIRECT_URL = "crm:login"

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="es")
LANGUAGES = [("es", "Español"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="America/Lima")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Celery ------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = validate_redis_url(env.str("CELERY_BROKER_URL", default="") or REDIS_URL, "CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks must finish far below this; it is how long an unacked task stays invisible before redelivery.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BEAT_SCHEDULER = "crm.beat:HealthRecordingScheduler"

# --- Connection registry (docs/registry.md) -----------------------------------------------------------------
# The JSON file of Cloud API connections synced into the numbers table (hourly by beat, `manage.py sync_numbers`,
# the admin button). Empty: no registry; the scheduled sync does nothing.
WHATSAPP_CONNECTIONS_FILE = env.str("WHATSAPP_CONNECTIONS_FILE", default="")
# /healthz reports the registry unhealthy when the last successful sync is older than this (seconds).
REGISTRY_SYNC_MAX_AGE = env.int("REGISTRY_SYNC_MAX_AGE", default=3 * 3600)
# Seconds a sync waits for another one still running before it gives up and reports it.
REGISTRY_SYNC_LOCK_TIMEOUT = env.float("REGISTRY_SYNC_LOCK_TIMEOUT", default=30.0)

# --- WhatsApp Cloud API (docs/inbound.md, docs/outbound.md) -------------------------------------------------
# Meta app secret that signs webhooks (X-Hub-Signature-256); a client with its own Meta app sets its own in admin.
WHATSAPP_APP_SECRET = env.str("WHATSAPP_APP_SECRET", default="")
# Verify token for Meta's webhook handshake, besides each active number's own verify token.
WHATSAPP_VERIFY_TOKEN = env.str("WHATSAPP_VERIFY_TOKEN", default="")
WHATSAPP_GRAPH_API_URL = env.str("WHATSAPP_GRAPH_API_URL", default="https://graph.facebook.com")
WHATSAPP_GRAPH_API_VERSION = env.str("WHATSAPP_GRAPH_API_VERSION", default="v23.0")
# Seconds per Graph API call, extra attempts on retryable errors, and the backoff base (doubles, with jitter).
WHATSAPP_SEND_TIMEOUT = env.float("WHATSAPP_SEND_TIMEOUT", default=10.0)
WHATSAPP_SEND_RETRIES = env.int("WHATSAPP_SEND_RETRIES", default=3)
WHATSAPP_SEND_BACKOFF = env.float("WHATSAPP_SEND_BACKOFF", default=0.5)
# Longest wait honoured from a Retry-After header (seconds).
WHATSAPP_SEND_RETRY_AFTER_MAX = env.float("WHATSAPP_SEND_RETRY_AFTER_MAX", default=30.0)
# Largest received file agents may open (bytes); Meta's largest document is 100 MB.
WHATSAPP_MEDIA_MAX_BYTES = env.int("WHATSAPP_MEDIA_MAX_BYTES", default=100 * 1024 * 1024)
# Meta's webhook bodies reach 3 MB; anything larger is refused before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# --- Conversations -------------------------------------------------------------------------------------------
# A customer who writes again within this many seconds of a resolution reopens that conversation; later, a new
# conversation starts.
CONVERSATION_REOPEN_WINDOW = env.int("CONVERSATION_REOPEN_WINDOW", default=24 * 3600)
# Webhook events still pending after this many seconds are handed to a worker again (lost enqueue, dead worker).
WEBHOOK_REQUEUE_AFTER = env.int("WEBHOOK_REQUEUE_AFTER", default=120)
# How long the web process reuses a number's signing secret without a query. A signature that fails is always
# re-checked against the database; a secret that was replaced still verifies for at most this long.
WEBHOOK_SECRET_CACHE_SECONDS = env.float("WEBHOOK_SECRET_CACHE_SECONDS", default=60)
# Threads of a web process that check and store webhook deliveries at once (each holds a database connection
# from the pool while it stores), and how many stored events go to a worker in one task.
WEBHOOK_THREADS = env.int("WEBHOOK_THREADS", default=4)
WEBHOOK_ENQUEUE_BATCH = env.int("WEBHOOK_ENQUEUE_BATCH", default=20)
# Outbound: a message still pending after this many seconds is queued again (its task was lost); one still
# "sending" after this many is marked unknown (a worker died mid-send; never re-sent blindly). Keep the latter
# above the longest send: WHATSAPP_SEND_TIMEOUT x (WHATSAPP_SEND_RETRIES + 1) plus backoff and Retry-After waits.
OUTBOUND_PENDING_REQUEUE_AFTER = env.int("OUTBOUND_PENDING_REQUEUE_AFTER", default=60)
OUTBOUND_SENDING_STALE_AFTER = env.int("OUTBOUND_SENDING_STALE_AFTER", default=600)

# --- Sessions: WhatsApp Web and sandbox connections (docs/sessions.md) ---------------------------------------
# A sessions worker owns a number while it holds that number's Redis lease: this many seconds, renewed every
# SESSIONS_HEARTBEAT_SECONDS. A killed owner's numbers are taken over once its leases expire.
SESSIONS_LEASE_SECONDS = env.float("SESSIONS_LEASE_SECONDS", default=30)
SESSIONS_HEARTBEAT_SECONDS = env.float("SESSIONS_HEARTBEAT_SECONDS", default=10)
# Reconnect after a transient drop: exponential backoff with jitter from 1 s up to this many seconds; the count
# starts again once a connection has stayed up SESSIONS_STABLE_SECONDS.
SESSIONS_BACKOFF_MAX = env.float("SESSIONS_BACKOFF_MAX", default=60)
SESSIONS_STABLE_SECONDS = env.float("SESSIONS_STABLE_SECONDS", default=60)
# Seconds a QR code waits to be scanned before the number goes back to "disconnected" (a new one on request).
WHATSAPP_QR_TIMEOUT = env.float("WHATSAPP_QR_TIMEOUT", default=120)
# WhatsApp Web connections through a proxy (socks5://host:port or http://host:port); empty: direct.
WHATSAPP_WEB_PROXY = env.str("WHATSAPP_WEB_PROXY", default="")

# --- Agent CRM (docs/crm.md) --------------------------------------------------------------------------------
# An online agent whose last CRM tab closed (or went silent) this many seconds ago is set "away".
AGENT_AWAY_GRACE_SECONDS = env.int("AGENT_AWAY_GRACE_SECONDS", default=90)

# --- Sending governor and campaigns (docs/campaigns.md) -----------------------------------------------------
# Messages per second of a Cloud API number whose own rate is blank (Meta's default throughput is 80/s).
GOVERNOR_CLOUD_RATE = env.float("GOVERNOR_CLOUD_RATE", default=80.0)
# WhatsApp Web and sandbox numbers (a phone, not a platform): one message every this many seconds, each interval
# varied by +/- GOVERNOR_WEB_JITTER (a fraction) so the pace does not look automated.
GOVERNOR_WEB_INTERVAL = env.float("GOVERNOR_WEB_INTERVAL", default=4.0)
GOVERNOR_WEB_JITTER = env.float("GOVERNOR_WEB_JITTER", default=0.5)
# Fraction below the configured rate the governor paces at, so network jitter never shows the provider more
# than the rate in any one second.
GOVERNOR_RATE_MARGIN = env.float("GOVERNOR_RATE_MARGIN", default=0.025)
# Seconds between two messages to the same recipient from the same number (Meta's pair limit).
GOVERNOR_PAIR_INTERVAL = env.float("GOVERNOR_PAIR_INTERVAL", default=6.0)
# Messages to one recipient allowed back to back before the pair interval applies (1: none; an agent's quick
# second message then waits its 6 s).
GOVERNOR_PAIR_BURST = env.int("GOVERNOR_PAIR_BURST", default=1)
# Longest a worker waits in line for a one-to-one send's slot; beyond it the message is queued again for later.
GOVERNOR_REPLY_MAX_WAIT = env.float("GOVERNOR_REPLY_MAX_WAIT", default=2.0)
# Campaign messages on the first day of a number's warm-up (doubling each day after).
GOVERNOR_WARMUP_FIRST_DAY = env.int("GOVERNOR_WARMUP_FIRST_DAY", default=50)
# Most threads one campaign dispatcher sends with, and seconds a dispatch task runs before the next takes over.
CAMPAIGN_SEND_THREADS = env.int("CAMPAIGN_SEND_THREADS", default=32)
# Seconds a provider takes to answer one send, as the dispatcher plans for: it runs rate x this many senders (at
# most CAMPAIGN_SEND_THREADS), so 80/s against a 0.25 s Graph API keeps 20 requests in flight.
CAMPAIGN_SEND_LATENCY = env.float("CAMPAIGN_SEND_LATENCY", default=0.25)
CAMPAIGN_DISPATCH_SECONDS = env.float("CAMPAIGN_DISPATCH_SECONDS", default=60.0)
# A recipient claimed this many seconds ago whose message was never written goes back to pending (nothing was
# sent for it); one whose message was written follows that message (OUTBOUND_SENDING_STALE_AFTER makes it unknown).
CAMPAIGN_CLAIM_STALE_AFTER = env.int("CAMPAIGN_CLAIM_STALE_AFTER", default=120)
# Seconds a campaign dispatcher's lease lasts without renewal: after a killed worker, the next dispatcher starts
# this much later at most.
CAMPAIGN_DISPATCH_LEASE_SECONDS = env.float("CAMPAIGN_DISPATCH_LEASE_SECONDS", default=30.0)
# Days after a campaign finished during which its recipients still follow their messages (delivered, read, replied).
CAMPAIGN_TRACK_DAYS = env.int("CAMPAIGN_TRACK_DAYS", default=7)
# Failure spike: among a running campaign's last CAMPAIGN_SPIKE_WINDOW messages (at least CAMPAIGN_SPIKE_MIN),
# more than CAMPAIGN_SPIKE_RATIO failed, or any failed with one of CAMPAIGN_PAUSE_CODES (Meta's spam and
# quality blocks), pauses the campaign and tells staff.
CAMPAIGN_SPIKE_WINDOW = env.int("CAMPAIGN_SPIKE_WINDOW", default=50)
CAMPAIGN_SPIKE_MIN = env.int("CAMPAIGN_SPIKE_MIN", default=10)
CAMPAIGN_SPIKE_RATIO = env.float("CAMPAIGN_SPIKE_RATIO", default=0.10)
CAMPAIGN_PAUSE_CODES: list[str] = env.list("CAMPAIGN_PAUSE_CODES", default=["131048", "131049", "368"])
# Customer messages that opt the contact out of campaigns (compared without case, accents or punctuation), and
# the one confirmation sent back. An empty confirmation sends nothing.
OPT_OUT_KEYWORDS: list[str] = env.list("OPT_OUT_KEYWORDS", default=["STOP", "BAJA", "CANCELAR", "NO MAS"])
OPT_OUT_CONFIRMATION = env.str(
    "OPT_OUT_CONFIRMATION",
    default="Listo: no te enviaremos más mensajes promocionales. Si fue un error, escríbenos y lo corregimos.",
)
# Largest recipients file accepted by the import, in bytes.
CAMPAIGN_IMPORT_MAX_BYTES = env.int("CAMPAIGN_IMPORT_MAX_BYTES", default=20 * 1024 * 1024)

# --- AI assistant (docs/ai.md) ------------------------------------------------------------------------------
# Any OpenAI-compatible chat completions API: OpenAI (blank base URL), a local Ollama (http://localhost:11434/v1)
# or vLLM. Without a key the assistant's answers fail and its conversations go to people, with a note saying why.
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
# The model of settings that name none.
AI_DEFAULT_MODEL = env.str("AI_DEFAULT_MODEL", default="gpt-4o-mini")
# Seconds one request may take, and how many times a failed one is tried again (timeouts, 429, 5xx): the
# longest an answer can take is about AI_TIMEOUT x (AI_MAX_RETRIES + 1).
AI_TIMEOUT = env.float("AI_TIMEOUT", default=20.0)
AI_MAX_RETRIES = env.int("AI_MAX_RETRIES", default=1)
# Most tokens of one answer.
AI_MAX_TOKENS = env.int("AI_MAX_TOKENS", default=500)
# Seconds the assistant waits after a customer message for the next one: a quick burst gets one answer.
AI_DEBOUNCE_SECONDS = env.float("AI_DEBOUNCE_SECONDS", default=4.0)
# Words that send a customer to a person (any case, accents ignored), unless settings name their own.
AI_HANDOFF_KEYWORDS: list[str] = env.list("AI_HANDOFF_KEYWORDS", default=["asesor", "humano", "agente", "persona"])
# Told to the customer when the assistant hands over, unless settings have their own; empty: nothing is sent.
AI_HANDOFF_MESSAGE = env.str(
    "AI_HANDOFF_MESSAGE", default="Te comunico con una persona de nuestro equipo; en breve te responde."
)
# What the model answers when it wants a person to take over (the system prompt tells it so).
AI_HANDOFF_MARKER = env.str("AI_HANDOFF_MARKER", default="[HANDOFF]")

# --- Event webhooks (docs/webhooks.md) -----------------------------------------------------------------------
# Outbound: events POSTed to the URLs staff register per client, sent by the `webhooks` worker. Seconds one POST
# may take; the first retry's wait in seconds (doubling per attempt, at most an hour, each x 0.5-1.5 at random);
# seconds after the event when retries stop and the delivery is given up.
EVENT_WEBHOOK_TIMEOUT = env.float("EVENT_WEBHOOK_TIMEOUT", default=5.0)
EVENT_WEBHOOK_BACKOFF_BASE = env.float("EVENT_WEBHOOK_BACKOFF_BASE", default=10.0)
EVENT_WEBHOOK_GIVE_UP_AFTER = env.int("EVENT_WEBHOOK_GIVE_UP_AFTER", default=24 * 3600)
# campaign.progress goes out at most once every this many seconds per campaign (always when its status changes).
EVENT_WEBHOOK_PROGRESS_EVERY = env.float("EVENT_WEBHOOK_PROGRESS_EVERY", default=10.0)
# Event webhooks to private or local addresses (127.0.0.1, 10.x, 172.16-31.x, 192.168.x, the cloud's metadata
# service, a compose network's n8n): refused unless true, so an endpoint cannot probe the product's own network.
EVENT_WEBHOOK_ALLOW_PRIVATE = env.bool("EVENT_WEBHOOK_ALLOW_PRIVATE", default=False)
# Days a delivered or given-up delivery (and its attempts) is kept for staff to look at, then deleted.
EVENT_WEBHOOK_RETENTION_DAYS = env.int("EVENT_WEBHOOK_RETENTION_DAYS", default=30)
# Admin messages (API keys and webhook secrets are shown once in one) live in the session, never in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Health ------------------------------------------------------------------------------------------------
# Queues /healthz expects at least one worker to consume, and how stale beat's last tick may be.
HEALTH_EXPECTED_QUEUES: list[str] = env.list(
    "HEALTH_EXPECTED_QUEUES", default=["default", "campaigns", "sessions", "webhooks"]
)
HEALTH_BEAT_MAX_AGE = env.int("HEALTH_BEAT_MAX_AGE", default=120)
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=1.5)

# --- REST API (docs/api.md) ------------------------------------------------------------------------------
# Requests per token (or per signed-in person) in a window: "600/min", "20/s", "10000/hour".
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "crm.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "crm.api.auth.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["crm.api.auth.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": API_RATE_LIMIT},
    # Anonymous calls (the schema, its docs) are counted per REMOTE_ADDR, never per a client-sent X-Forwarded-For.
    "NUM_PROXIES": 0,
    "DEFAULT_PAGINATION_CLASS": "crm.api.pagination.ApiPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON everywhere; operations that take a file (a campaign's recipients) add multipart themselves.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "crm.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "crm.api.schema.ApiAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp CRM API",
    "DESCRIPTION": "Numbers, conversations, contacts, campaigns, queues and agents of one client. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "crm.api.schema.add_error_responses",
    ],
}

# --- Logging -----------------------------------------------------------------------------------------------
# One configuration for web and workers; every line carries the component (web, worker, sessions, beat).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"component": {"()": "config.logging.ComponentFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s [%(component)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["component"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
        # httpx logs every request URL at INFO; media download URLs carry signed query strings.
        "httpx": {"level": "WARNING"},
    },
}
