#!/bin/sh
# Container entrypoint for every app process (web, worker, sessions, beat): see compose.yaml.
#
#   1. load the settings, so a missing or malformed variable stops here with one line (exit 2);
#   2. wait, at most WAIT_TIMEOUT seconds (default 60), until PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)
#      accept TCP connections; on timeout print one line naming the unreachable service(s) and exit 1;
#   3. apply migrations when RUN_MIGRATIONS=1 (the web service only, so they run once);
#   4. exec the command (daphne, celery ...), which becomes the process the container signals.
#
# Only host and port are ever printed: a password in a URL never reaches the logs.
set -eu

cd "$(dirname "$0")/../.."

: "${DJANGO_SETTINGS_MODULE:=config.settings.production}"
export DJANGO_SETTINGS_MODULE

if [ "$#" -eq 0 ]; then
    echo "entrypoint: no command given (expected e.g. daphne or celery)" >&2
    exit 64
fi

python -c 'from config.env import load_settings; load_settings()'

python - <<'PY'
import os
import socket
import sys
import time
from urllib.parse import unquote, urlsplit


def fail(message, status=1):
    print(f"entrypoint: {message}", file=sys.stderr)
    sys.exit(status)


raw_timeout = os.environ.get("WAIT_TIMEOUT", "").strip() or "60"
try:
    timeout = float(raw_timeout)
except ValueError:
    fail(f"WAIT_TIMEOUT must be a number of seconds, got {raw_timeout!r}", 2)

DEFAULT_PORTS = {"DATABASE_URL": 5432, "REDIS_URL": 6379}
targets = []  # (service, variable, address family, address, where) - never the credentials
for service, var in (("PostgreSQL", "DATABASE_URL"), ("Redis", "REDIS_URL")):
    value = os.environ.get(var, "").strip()
    if not value:
        continue  # the settings' own default applies; production refuses to start without DATABASE_URL
    parts = urlsplit(value)
    if parts.scheme == "unix":
        targets.append((service, var, socket.AF_UNIX, parts.path, parts.path))
        continue
    try:
        port = parts.port or DEFAULT_PORTS[var]
    except ValueError:
        fail(f"{var} has a port that is not a number between 0 and 65535", 2)
    host = unquote(parts.hostname or "")
    if not host:
        continue  # e.g. PostgreSQL over a unix socket named in the query string: nothing to probe over TCP
    targets.append((service, var, None, (host, port), f"{host}:{port}"))


def reachable(family, address, budget):
    try:
        if family == socket.AF_UNIX:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(budget)
                sock.connect(address)
        else:
            socket.create_connection(address, timeout=budget).close()
        return True
    except OSError:
        return False


deadline = time.monotonic() + timeout
pending = list(targets)
while True:
    pending = [t for t in pending if not reachable(t[2], t[3], max(0.2, min(2.0, deadline - time.monotonic())))]
    if not pending:
        break
    if time.monotonic() >= deadline:
        names = " and ".join(f"{service} at {where} ({var})" for service, var, _, _, where in pending)
        tail = "does not accept connections" if len(pending) == 1 else "do not accept connections"
        fail(f"{names} {tail} after {raw_timeout}s (WAIT_TIMEOUT); check the service is running and reachable")
    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
PY

if [ "${RUN_MIGRATIONS:-0}" = "1" ]; then
    python manage.py migrate --no-input
fi

exec "$@"
