"""Production settings: refuse to start unless every secret and host is configured explicitly."""

from config.env import ConfigError, env, require, validate_fernet_keys

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = require("SECRET_KEY")
if SECRET_KEY.startswith(("local-development", "test-only", "change-me")) or len(SECRET_KEY) < 32:
    raise ConfigError("SECRET_KEY must be a random value of at least 32 characters in production")
ALLOWED_HOSTS = [h.strip() for h in require("ALLOWED_HOSTS").split(",") if h.strip()]
TOKEN_ENCRYPTION_KEYS = validate_fernet_keys(
    [k.strip() for k in require("TOKEN_ENCRYPTION_KEY").split(",") if k.strip()]
)
# DATABASE_URL has a local default in base; production must name its database on purpose.
require("DATABASE_URL", "is required and must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/NAME)")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
