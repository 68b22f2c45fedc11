"""Create (or refresh) the demo staff login and print it. Used by `make run`; never in production."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crm.models import ClientMembership
from crm.selectors import client_get_default


class Command(BaseCommand):
    help = "Create the demo staff login (superuser 'admin') and print its credentials."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--credentials-file",
            default=str(settings.BASE_DIR / ".demo-login"),
            help="Where the generated password is kept between runs (git-ignored).",
        )

    def handle(self, *args, username: str, credentials_file: str, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_setup only runs with DEBUG on (local settings); it prints a password")
        from pathlib import Path

        path = Path(credentials_file)
        password = path.read_text().strip() if path.is_file() else ""
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": True, "email": ""}
            )
            if created or not password or not user.check_password(password):
                password = password or secrets.token_urlsafe(12)
                user.is_staff = user.is_superuser = user.is_active = True
                user.set_password(password)
                user.save()
            ClientMembership.objects.get_or_create(user=user, client=client_get_default())
        path.write_text(password + "\n")
        path.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Demo staff login: {username} / {password}"))
