"""`manage.py reset_session NUMBER [--yes]`: log a number out and delete its device data, ready for a new QR."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sessions.selectors import NumberLookupError, number_find
from sessions.services import SessionActionError, session_reset


class Command(BaseCommand):
    help = "Log a WhatsApp Web or sandbox number out, delete its device data and leave it disconnected."

    def add_arguments(self, parser) -> None:
        parser.add_argument("number", help="The number's id, alias or display number.")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args, number: str, yes: bool = False, **options) -> None:
        try:
            found = number_find(identifier=number)
        except NumberLookupError as exc:
            raise CommandError(str(exc)) from None
        if not yes:
            prompt = (
                f"Reset #{found.pk} {found.alias} ({found.display_number})? It is logged out and needs a new QR "
                "scan to connect again. Type 'yes' to continue: "
            )
            try:
                answer = input(prompt)
            except EOFError:
                raise CommandError("Cancelled (no answer; pass --yes to skip the question); nothing changed.") from None
            if answer.strip().lower() not in ("yes", "y"):
                raise CommandError("Cancelled; nothing changed.")
        try:
            session = session_reset(number=found)
        except SessionActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Reset #{found.pk} {found.alias}: {session.state}, device data removed.")
