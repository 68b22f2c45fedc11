"""Environment parsing for settings: one clear line per mistake, never a driver's stack trace.

Every setting is read through `env` (django-environ) from the process environment and an optional `.env`
file at the project root. URLs are validated here so a typo in `DATABASE_URL` or `REDIS_URL` stops start-up
with a message that names the variable and never echoes its password.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(_dotenv, overwrite=False)


class ConfigError(ImproperlyConfigured):
    """A setting is missing or malformed. The message is one line meant for the operator."""


POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis"}
REDIS_SCHEMES = {"redis", "rediss"}
URL_SHAPES = {
    "DATABASE_URL": "postgres://USER:PASSWORD@HOST:5432/NAME",
    "REDIS_URL": "redis://HOST:6379/0",
    "CELERY_BROKER_URL": "redis://HOST:6379/0",
    "TEST_REDIS_URL": "redis://HOST:6379/9",
}


def _url_error(var: str, problem: str) -> ConfigError:
    return ConfigError(f"{var} is not valid: {problem} (expected {URL_SHAPES[var]})")


def _port(var: str, parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise _url_error(var, "the port is not a number between 0 and 65535") from None


def parse_database_url(value: str, var: str = "DATABASE_URL") -> dict:
    """Django DATABASES entry for a PostgreSQL URL, or ConfigError naming `var`."""
    parts = urlsplit(value.strip())
    if not parts.scheme:
        raise _url_error(var, "it has no scheme")
    if parts.scheme not in POSTGRES_SCHEMES:
        raise _url_error(var, f"scheme {parts.scheme!r} is not PostgreSQL, the only supported database")
    port = _port(var, parts)
    name = unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise _url_error(var, "it has no database name after the host")
    host = unquote(parts.hostname or "")
    if not host and not parts.netloc and "host=" not in parts.query:
        raise _url_error(var, "it has no host")
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
    }
    # Under ASGI every request runs in a thread of its own, so per-thread persistent connections are never
    # reused: the web process opens a connection pool instead (Procfile and compose set DATABASE_POOL_SIZE).
    pool_size = env.int("DATABASE_POOL_SIZE", default=0)
    if pool_size > 0:
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {"pool": {"min_size": min(2, pool_size), "max_size": pool_size, "timeout": 10}}
    return database


def validate_redis_url(value: str, var: str = "REDIS_URL") -> str:
    """Return the URL unchanged when redis-py can use it, else ConfigError naming `var`."""
    parts = urlsplit(value.strip())
    if parts.scheme == "unix":
        if not parts.path:
            raise _url_error(var, "a unix:// URL needs a socket path")
        return value.strip()
    if parts.scheme not in REDIS_SCHEMES:
        raise _url_error(var, f"scheme {parts.scheme!r} is not redis:// or rediss://")
    if not parts.hostname:
        raise _url_error(var, "it has no host")
    _port(var, parts)
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise _url_error(var, f"the database index {db!r} is not a number")
    return value.strip()


def validate_fernet_keys(keys: list[str], var: str = "TOKEN_ENCRYPTION_KEY") -> list[str]:
    """Each key must be a Fernet key (32 url-safe base64 bytes); generate one with `make key`."""
    from cryptography.fernet import Fernet

    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.strip())
        except (ValueError, TypeError):
            raise ConfigError(
                f"{var} key #{position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `make key`"
            ) from None
    return [key.strip() for key in keys]


def require(var: str, problem: str = "is required") -> str:
    value = env.str(var, default="").strip()
    if not value:
        raise ConfigError(f"{var} {problem}; set it in the environment or in .env (see .env.example)")
    return value


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a ConfigError raised while settings load into one line on stderr and exit status 2.

    Wraps the entry points (manage.py, ASGI, Celery) so operators see the variable at fault, not a traceback.
    """
    try:
        yield
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_settings() -> None:
    """Import the settings module now (they are lazy) so configuration errors surface at start-up."""
    from django.conf import settings

    with exit_on_config_error():
        settings.INSTALLED_APPS  # noqa: B018 - touching a setting forces the import
