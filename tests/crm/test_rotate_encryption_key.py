"""`manage.py rotate_encryption_key`: every stored secret moves to the first TOKEN_ENCRYPTION_KEY."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from crm.crypto import PREFIX, SecretDecryptionError
from crm.models import Client, WebhookEndpoint
from sessions.models import WhatsAppNumber
from tests.conftest import project_env, run_manage
from tests.crm.factories import ClientFactory
from tests.sessions.factories import WhatsAppNumberFactory

TOKEN = "EAAG-plain-access-token-0123456789-wxyz"


def raw(model, pk, column: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def rotate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rotate_encryption_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def foreign_ciphertext(plaintext: str) -> str:
    """A well-formed stored secret encrypted with a key the product does not have."""
    return PREFIX + Fernet(Fernet.generate_key()).encrypt(plaintext.encode()).decode()


@pytest.fixture
def keys(settings) -> tuple[str, str]:
    """(old, new): old is the key the test data is written with, new a fresh one."""
    return settings.TOKEN_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()


@pytest.mark.django_db
def test_after_rotation_the_new_key_alone_reads_every_secret_and_empty_values_stay_empty(keys):
    old, new = keys
    number = WhatsAppNumberFactory(access_token=TOKEN, verify_token="verify-token-value")
    blank = WhatsAppNumberFactory(access_token="", verify_token="")
    client = ClientFactory(meta_app_secret="client-app-secret-0123456789")
    endpoint = WebhookEndpoint.objects.create(
        client=client, url="https://receiver.example/hooks", secret="whsec-endpoint-secret-0123456789"
    )
    before = raw(WhatsAppNumber, number.pk, "access_token")

    with override_settings(TOKEN_ENCRYPTION_KEYS=[new, old]):
        out, err = rotate()

    assert "wa_sessions.WhatsAppNumber.access_token: 1 re-encrypted, 1 empty" in out
    assert "wa_sessions.WhatsAppNumber.verify_token: 1 re-encrypted, 1 empty" in out
    assert "crm.Client.meta_app_secret: " in out and "crm.WebhookEndpoint.secret: " in out
    assert "Total: " in out and err == ""
    assert raw(WhatsAppNumber, number.pk, "access_token") != before
    assert raw(WhatsAppNumber, blank.pk, "access_token") == "" and raw(WhatsAppNumber, blank.pk, "verify_token") == ""
    with override_settings(TOKEN_ENCRYPTION_KEYS=[new]):
        reloaded = WhatsAppNumber.objects.get(pk=number.pk)
        assert reloaded.access_token.reveal() == TOKEN
        assert reloaded.verify_token.reveal() == "verify-token-value"
        assert not WhatsAppNumber.objects.get(pk=blank.pk).access_token
        assert Client.objects.get(pk=client.pk).meta_app_secret.reveal() == "client-app-secret-0123456789"
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret.reveal() == "whsec-endpoint-secret-0123456789"


@pytest.mark.django_db
def test_running_it_twice_is_harmless(keys):
    old, new = keys
    number = WhatsAppNumberFactory(access_token=TOKEN)

    with override_settings(TOKEN_ENCRYPTION_KEYS=[new, old]):
        rotate()
        out, _ = rotate()

    assert "wa_sessions.WhatsAppNumber.access_token: 1 re-encrypted, 0 empty" in out
    with override_settings(TOKEN_ENCRYPTION_KEYS=[new]):
        assert WhatsAppNumber.objects.get(pk=number.pk).access_token.reveal() == TOKEN


@pytest.mark.django_db
def test_dry_run_counts_and_writes_nothing(keys):
    old, new = keys
    number = WhatsAppNumberFactory(access_token=TOKEN, verify_token="")
    stored = raw(WhatsAppNumber, number.pk, "access_token")

    with override_settings(TOKEN_ENCRYPTION_KEYS=[new, old]):
        out, _ = rotate("--dry-run")

    assert "wa_sessions.WhatsAppNumber.access_token: 1 would be re-encrypted, 0 empty" in out
    assert "wa_sessions.WhatsAppNumber.verify_token: 0 would be re-encrypted, 1 empty" in out
    assert "dry run: nothing was written" in out
    assert raw(WhatsAppNumber, number.pk, "access_token") == stored
    with override_settings(TOKEN_ENCRYPTION_KEYS=[new]):
        with pytest.raises(SecretDecryptionError):
            WhatsAppNumber.objects.get(pk=number.pk)


@pytest.mark.django_db
def test_an_undecryptable_value_is_reported_left_alone_and_fails_the_command_after_the_others(keys):
    old, new = keys
    good = WhatsAppNumberFactory(access_token=TOKEN)
    bad = WhatsAppNumberFactory(verify_token="verify-token-value")
    lost = foreign_ciphertext("token-of-a-lost-key")
    WhatsAppNumber.objects.filter(pk=bad.pk).update(access_token=lost)
    plain_client = ClientFactory()
    with connection.cursor() as cursor:  # plaintext where ciphertext belongs (written around the field)
        cursor.execute("UPDATE crm_client SET meta_app_secret = 'not-encrypted' WHERE id = %s", [plain_client.pk])

    err = StringIO()
    with override_settings(TOKEN_ENCRYPTION_KEYS=[new, old]):
        with pytest.raises(CommandError) as failure:
            call_command("rotate_encryption_key", stdout=StringIO(), stderr=err)

    message = str(failure.value)
    assert f"wa_sessions.WhatsAppNumber.access_token pk={bad.pk}: cannot be decrypted" in message
    assert f"crm.Client.meta_app_secret pk={plain_client.pk}: not an encrypted value" in message
    assert f"wa_sessions.WhatsAppNumber.access_token pk={bad.pk}" in err.getvalue()
    assert raw(WhatsAppNumber, bad.pk, "access_token") == lost
    assert raw(Client, plain_client.pk, "meta_app_secret") == "not-encrypted"
    with override_settings(TOKEN_ENCRYPTION_KEYS=[new]):
        assert WhatsAppNumber.objects.get(pk=good.pk).access_token.reveal() == TOKEN
        # the same row's other secret was rotated
        verify = raw(WhatsAppNumber, bad.pk, "verify_token")
        assert Fernet(new).decrypt(verify[len(PREFIX) :].encode()).decode() == "verify-token-value"


@pytest.mark.django_db(transaction=True)
def test_from_the_shell_an_undecryptable_value_exits_non_zero_without_a_traceback():
    number = WhatsAppNumberFactory()
    WhatsAppNumber.objects.filter(pk=number.pk).update(access_token=foreign_ciphertext("lost"))

    result = run_manage("rotate_encryption_key", env=project_env())

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"wa_sessions.WhatsAppNumber.access_token pk={number.pk}: cannot be decrypted" in result.stderr
    assert "wa_sessions.WhatsAppNumber.verify_token: 1 re-encrypted, 0 empty" in result.stdout
