"""Create the configured PostgreSQL database when it does not exist yet (used by `make run`)."""

from __future__ import annotations

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql


class Command(BaseCommand):
    help = "Create the database named in DATABASE_URL if it is missing."

    def handle(self, *args, **options) -> None:
        db = settings.DATABASES["default"]
        params = {
            "host": db["HOST"] or None,
            "port": db["PORT"] or None,
            "user": db["USER"] or None,
            "password": db["PASSWORD"] or None,
            "connect_timeout": 5,
        }
        try:
            with psycopg.connect(dbname=db["NAME"], **params):
                self.stdout.write(f"database {db['NAME']!r} exists")
                return
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise CommandError(
                    f"cannot reach PostgreSQL at {db['HOST'] or 'local socket'}:{db['PORT'] or 5432}: "
                    f"{str(exc).strip().splitlines()[-1]}"
                ) from None
        try:
            with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
        except psycopg.Error as exc:
            raise CommandError(f"cannot create database {db['NAME']!r}: {str(exc).strip()}") from None
        self.stdout.write(self.style.SUCCESS(f"created database {db['NAME']!r}"))
