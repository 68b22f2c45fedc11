"""Opt-out: a customer's "BAJA" (or STOP, CANCELAR, NO MAS; case, accents and punctuation aside) marks the
contact opted out of campaigns and is confirmed once, in the conversation where they asked."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.optout import is_opt_out
from conversations.inbound import InboundMessage, InboundSender
from conversations.models import Contact, Message
from conversations.services import inbound_message_receive
from tests.sessions.factories import WhatsAppNumberFactory


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Baja.", "  baja!! ", "CANCELAR", "No más", "NO MAS", "no   mas", "Bája"]
)
def test_opt_out_keywords_match_whatever_the_case_accents_and_punctuation(text):
    assert is_opt_out(text)


@pytest.mark.parametrize("text", ["no me des de baja", "stop por favor no", "mas info", "", "bajar precio", "NO"])
def test_other_messages_do_not_opt_out(text):
    assert not is_opt_out(text)


def test_the_keyword_list_is_configurable(settings):
    settings.OPT_OUT_KEYWORDS = ["DESUSCRIBIR"]
    assert is_opt_out("desuscribir")
    assert not is_opt_out("baja")


def inbound(number, text: str, n: int, wa_id: str = "51987000111") -> InboundMessage:
    return InboundMessage(
        phone_number_id=number.phone_number_id,
        display_phone_number=number.display_number,
        provider_message_id=f"wamid.optout-{n}",
        sender=InboundSender(wa_id=wa_id, bsuid=None, name="Rosa", username=None),
        timestamp=timezone.now(),
        kind="text",
        body=text,
        media=None,
        quoted_provider_id=None,
        error_code="",
        error_reason="",
        raw={},
    )


@pytest.mark.django_db
def test_a_customer_writing_baja_is_opted_out_and_told_once(default_client, settings):
    # given a customer writing to a number
    settings.OPT_OUT_CONFIRMATION = "Listo, no te escribiremos más."
    number = WhatsAppNumberFactory(client=default_client)
    inbound_message_receive(number=number, message=inbound(number, "Hola, ¿precio?", 1))
    contact = Contact.objects.get(client=default_client, wa_id="51987000111")
    assert contact.opted_out_at is None

    # when they write "Baja." and, later, "STOP"
    inbound_message_receive(number=number, message=inbound(number, "Baja.", 2))
    inbound_message_receive(number=number, message=inbound(number, "STOP", 3))

    # then they are opted out since the first, and got exactly one confirmation in their conversation
    contact.refresh_from_db()
    assert contact.opted_out_at is not None
    confirmations = Message.objects.filter(conversation__contact=contact, direction=Message.Direction.OUTBOUND)
    assert list(confirmations.values_list("body", "origin")) == [("Listo, no te escribiremos más.", "system")]


@pytest.mark.django_db
def test_an_empty_confirmation_opts_out_silently(default_client, settings):
    settings.OPT_OUT_CONFIRMATION = ""
    number = WhatsAppNumberFactory(client=default_client)

    inbound_message_receive(number=number, message=inbound(number, "no más", 1))

    contact = Contact.objects.get(client=default_client, wa_id="51987000111")
    assert contact.opted_out_at is not None
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
