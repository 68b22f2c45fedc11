"""Create (or refresh) the demo staff login and print it, and seed a sandbox number in a queue with the demo login
as its agent, so a new install shows the whole product at once. Used by `make run`; never in production."""

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
            number = _seed_sandbox_number(user)
        path.write_text(password + "\n")
        path.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Demo staff login: {username} / {password}"))
        self.stdout.write(
            f"Sandbox number: {number.alias} ({number.display_number}) in queue {number.queue.name}, connected by "
            "the sessions worker without a QR code."
        )


DEMO_NUMBER_ID = "sandbox-demo"
DEMO_QUICK_REPLIES = [
    ("hola", "¡Hola! Gracias por escribirnos. ¿En qué le puedo ayudar?"),
    ("horario", "Atendemos de lunes a sábado, de 9:00 a 19:00."),
]


def _seed_sandbox_number(user):
    """The demo's sandbox number, already paired (as if its QR code had been scanned), in a queue whose agent is
    the demo login. Left as it is when it exists: staff may have changed it."""
    from queues.models import AgentAvailability, Queue, QueueMembership, QuickReply
    from sessions.models import NumberSession, SandboxAccount, WhatsAppNumber
    from sessions.services import number_session_ensure

    client = client_get_default()
    queue, _ = Queue.objects.get_or_create(client=client, name="Demo support")
    QueueMembership.objects.get_or_create(queue=queue, user=user)
    AgentAvailability.objects.get_or_create(user=user)
    for shortcut, text in DEMO_QUICK_REPLIES:
        QuickReply.objects.get_or_create(queue=queue, shortcut=shortcut, defaults={"text": text})
    number, created = WhatsAppNumber.objects.get_or_create(
        phone_number_id=DEMO_NUMBER_ID,
        defaults={"client": client, "alias": "Demo sandbox", "display_number": "+51 999 000 100", "engine": "sandbox"},
    )
    if created:
        number.queue = queue
        number.save(update_fields=["queue", "updated_at"])
        number_session_ensure(number=number)
        jid = "51999000100.0:1@s.whatsapp.net"
        NumberSession.objects.filter(number=number).update(device_jid=jid, keep_connected=True)
        SandboxAccount.objects.update_or_create(number=number, defaults={"device_jid": jid})
    return number
