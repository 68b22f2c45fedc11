"""Provider tokens are encrypted at rest and never shown in full."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.db import connection
from django.test import override_settings

from crm.crypto import Secret, SecretDecryptionError
from sessions.models import WhatsAppNumber
from tests.sessions.factories import WhatsAppNumberFactory

TOKEN = "EAAG-plain-access-token-0123456789-wxyz"


def raw_column(number_id: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM wa_sessions_whatsappnumber WHERE id = %s", [number_id])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_token_round_trips_and_the_column_never_holds_the_plaintext():
    number = WhatsAppNumberFactory(access_token=TOKEN, verify_token="my-verify-token")

    stored = raw_column(number.pk, "access_token")
    loaded = WhatsAppNumber.objects.get(pk=number.pk)

    assert TOKEN not in stored and stored.startswith("enc:v1:")
    assert "my-verify-token" not in raw_column(number.pk, "verify_token")
    assert loaded.access_token.reveal() == TOKEN
    assert loaded.access_token == TOKEN  # constant-time comparison with plain strings
    assert loaded.verify_token.reveal() == "my-verify-token"


@pytest.mark.django_db
def test_each_save_uses_a_fresh_ciphertext_and_blank_stays_blank():
    first = WhatsAppNumberFactory(access_token=TOKEN)
    second = WhatsAppNumberFactory(access_token=TOKEN, verify_token="")

    assert raw_column(first.pk, "access_token") != raw_column(second.pk, "access_token")
    assert raw_column(second.pk, "verify_token") == ""
    assert not WhatsAppNumber.objects.get(pk=second.pk).verify_token


@pytest.mark.django_db
def test_secret_is_masked_in_str_repr_format_and_logs(caplog):
    number = WhatsAppNumber.objects.get(pk=WhatsAppNumberFactory(access_token=TOKEN).pk)
    caplog.set_level(logging.INFO)

    logging.getLogger("tests").info("number %s token %s", number.pk, number.access_token)

    for rendered in (str(number.access_token), repr(number.access_token), f"{number.access_token}", caplog.text):
        assert TOKEN not in rendered
    assert str(number.access_token) == "••••wxyz"
    assert str(Secret("short")) == "••••"


@pytest.mark.django_db
def test_lookups_on_ciphertext_are_refused_instead_of_silently_matching_nothing():
    with pytest.raises(FieldError):
        list(WhatsAppNumber.objects.filter(access_token=TOKEN))
    assert WhatsAppNumber.objects.filter(access_token__isnull=True).count() == 0


@pytest.mark.django_db
def test_key_rotation_old_key_still_decrypts_and_a_replaced_key_fails_clearly(settings):
    old_key = settings.TOKEN_ENCRYPTION_KEYS[0]
    number = WhatsAppNumberFactory(access_token=TOKEN)
    new_key = Fernet.generate_key().decode()

    with override_settings(TOKEN_ENCRYPTION_KEYS=[new_key, old_key]):
        assert WhatsAppNumber.objects.get(pk=number.pk).access_token.reveal() == TOKEN

    with override_settings(TOKEN_ENCRYPTION_KEYS=[new_key]):
        with pytest.raises(SecretDecryptionError, match="TOKEN_ENCRYPTION_KEY"):
            WhatsAppNumber.objects.get(pk=number.pk)


@pytest.mark.django_db
def test_admin_never_renders_the_token(admin_client):
    number = WhatsAppNumberFactory(access_token=TOKEN, verify_token="verify-token-value-123456")

    change_page = admin_client.get(f"/admin/wa_sessions/whatsappnumber/{number.pk}/change/")
    list_page = admin_client.get("/admin/wa_sessions/whatsappnumber/")

    for response in (change_page, list_page):
        assert response.status_code == 200
        html = response.content.decode()
        assert TOKEN not in html
        assert "verify-token-value-123456" not in html
        assert "••••wxyz" in html


@pytest.mark.django_db
def test_admin_form_keeps_the_token_when_left_blank_and_replaces_it_when_typed(admin_client, default_client):
    number = WhatsAppNumberFactory(client=default_client, access_token=TOKEN)
    url = f"/admin/wa_sessions/whatsappnumber/{number.pk}/change/"
    form = {
        "client": default_client.pk,
        "alias": "Renamed",
        "display_number": number.display_number,
        "engine": "cloud",
        "is_active": "on",
        "phone_number_id": number.phone_number_id,
        "waba_id": "",
        "access_token": "",
        "verify_token": "",
        "warmup_days": "0",
    }

    kept = admin_client.post(url, form)
    assert kept.status_code == 302, kept.content.decode()[:2000]
    number.refresh_from_db()
    assert number.alias == "Renamed" and number.access_token.reveal() == TOKEN

    admin_client.post(url, {**form, "access_token": "EAAG-new-token-9876543210-abcd"})
    number.refresh_from_db()
    assert number.access_token.reveal() == "EAAG-new-token-9876543210-abcd"
