# syntax=docker/dockerfile:1
# One image for every app process: web (daphne), worker, sessions and beat (celery). compose.yaml picks the
# command; config/docker/entrypoint.sh checks settings, waits for PostgreSQL and Redis, migrates (web only).
# Secrets are never baked in: they come from the environment at run time (.env via compose.yaml).

# --- build: dependencies into a virtualenv (every pinned requirement ships a wheel, so no compiler) -------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime -----------------------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

# libmagic: neonize (the WhatsApp Web engine) identifies media types with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY . .

# Static files are collected at build time and served by WhiteNoise. Production settings refuse to load
# without these variables, so this one step gets throwaway values that exist only for its duration (they are
# not ENV, so no container ever sees them): a 32-zero-byte Fernet key and hosts under the reserved .invalid
# domain. Nothing secret is in this file; real values come from the environment at run time.
RUN SECRET_KEY=build-time-collectstatic-placeholder-not-a-secret \
    ALLOWED_HOSTS=build.invalid \
    TOKEN_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    DATABASE_URL=postgres://build@build.invalid:5432/build \
    REDIS_URL=redis://build.invalid:6379/0 \
    python manage.py collectstatic --no-input \
    && python -m compileall -q /app \
    && chmod 0755 /app/config/docker/entrypoint.sh

# The code stays owned by root (read-only for the app); the process runs as `app` (uid 10001), numerically
# so Kubernetes runAsNonRoot and similar checks can verify it is not root.
USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["/app/config/docker/entrypoint.sh"]
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
