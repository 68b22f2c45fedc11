"""`manage.py connect_session NUMBER`: ask the sessions workers to connect a number and keep it connected."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sessions.selectors import NumberLookupError, number_find
from sessions.services import SessionActionError, session_connect_request


class Command(BaseCommand):
    help = "Connect a WhatsApp Web or sandbox number (a QR code appears in admin when it has no paired device)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("number", help="The number's id, alias or display number.")

    def handle(self, *args, number: str, **options) -> None:
        try:
            found = number_find(identifier=number)
            session = session_connect_request(number=found)
        except (NumberLookupError, SessionActionError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Connect requested for #{found.pk} {found.alias}; now {session.state}. A sessions worker connects it "
            "(see `manage.py sessions_status`; a new device shows its QR code in admin)."
        )
