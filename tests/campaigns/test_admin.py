"""Operating campaigns from Django admin (Django test client, real database and Redis): create, import with the
per-row report, preview, start/pause/resume/cancel, progress, retry unknown, the CSV export, client scoping."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.models import Campaign, Recipient, RecipientImport
from tests.campaigns.factories import CampaignFactory, RecipientFactory, TemplateCampaignFactory
from tests.sessions.test_numbers_admin import messages_of, staff_login

pytestmark = pytest.mark.django_db

CAMPAIGNS = "/admin/campaigns/campaign/"
R = Recipient.Status


def test_staff_create_a_campaign_with_days_and_quiet_hours(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory.build(client=ventas)
    number = campaign.number
    number.save()

    response = client.post(
        f"{CAMPAIGNS}add/",
        {
            "client": ventas.pk,
            "name": "Black Friday",
            "number": number.pk,
            "message": "Hola {{nombre|amigo}}: 30% en todo",
            "template_parameters": "[]",
            "quiet_from": "21:00",
            "quiet_until": "08:00",
            "send_days": ["1", "2", "3", "4", "5"],
        },
        follow=True,
    )

    assert response.status_code == 200, response.content
    created = Campaign.objects.get(name="Black Friday")
    assert created.status == Campaign.Status.DRAFT and created.send_days == [1, 2, 3, 4, 5]
    assert created.created_by.username


def test_a_cloud_campaign_without_a_template_is_refused_with_the_reason(client, ventas):
    staff_login(client, ventas)
    cloud = TemplateCampaignFactory(client=ventas)

    response = client.post(
        f"{CAMPAIGNS}add/",
        {
            "client": ventas.pk,
            "name": "Sin plantilla",
            "number": cloud.number.pk,
            "message": "Hola",
            "template_parameters": "[]",
            "send_days": ["1"],
        },
    )

    assert response.status_code == 200
    assert "sends campaigns as an approved template" in response.content.decode()
    assert not Campaign.objects.filter(name="Sin plantilla").exists()


def test_import_reports_bad_rows_by_line_and_keeps_the_good_ones(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)
    data = "telefono,nombre\n+51987000001,Ana\nnot-a-phone,Luis\n+51987000003,\n+51987000004,Rosa\n"

    response = client.post(
        f"{CAMPAIGNS}{campaign.pk}/import/",
        {"file": SimpleUploadedFile("clientes.csv", data.encode()), "mode": "keep_good"},
        follow=True,
    )

    texts = [text for _, text in messages_of(response)]
    assert any("4 row(s): 2 added" in text and "2 rejected" in text for text in texts), texts
    assert any(text.startswith("line 3:") and "not-a-phone" in text for text in texts), texts
    assert any(text.startswith("line 4:") and "{{nombre}}" in text for text in texts), texts
    assert sorted(campaign.recipients.values_list("phone", flat=True)) == ["+51987000001", "+51987000004"]
    record = RecipientImport.objects.get(campaign=campaign)
    assert [e["line"] for e in record.errors] == [3, 4]


def test_all_or_nothing_import_with_a_bad_row_writes_nothing(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)
    data = "phone,nombre\n+51987000001,Ana\nbad,Luis\n"

    response = client.post(
        f"{CAMPAIGNS}{campaign.pk}/import/",
        {"file": SimpleUploadedFile("clientes.csv", data.encode()), "mode": "all_or_nothing"},
        follow=True,
    )

    assert any("Nothing imported" in text for _, text in messages_of(response))
    assert not campaign.recipients.exists()


def test_a_file_that_is_not_a_table_is_refused_on_the_form(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)

    response = client.post(
        f"{CAMPAIGNS}{campaign.pk}/import/",
        {"file": SimpleUploadedFile("foto.pdf", b"%PDF-1.4 ..."), "mode": "keep_good"},
    )

    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    assert not campaign.recipients.exists()


def test_preview_shows_the_first_messages_as_they_will_be_sent(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas, message="Hola {{nombre}}, tu código es {{codigo|ninguno}}")
    RecipientFactory(campaign=campaign, variables={"nombre": "Ana", "codigo": "X1"})
    RecipientFactory(campaign=campaign, variables={"nombre": "Luis"})

    page = client.get(f"{CAMPAIGNS}{campaign.pk}/preview/").content.decode()

    assert "Hola Ana, tu código es X1" in page
    assert "Hola Luis, tu código es ninguno" in page


def test_start_pause_resume_and_cancel_from_the_campaign_page(client, ventas, django_capture_on_commit_callbacks):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)
    RecipientFactory.create_batch(3, campaign=campaign)
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/").content.decode()
    assert 'id="campaign-start"' in page and 'id="campaign-pause"' not in page

    with django_capture_on_commit_callbacks():
        client.post(f"{CAMPAIGNS}{campaign.pk}/do/start/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    client.post(f"{CAMPAIGNS}{campaign.pk}/do/pause/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED and "Paused by" in campaign.status_reason
    with django_capture_on_commit_callbacks():
        client.post(f"{CAMPAIGNS}{campaign.pk}/do/resume/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    client.post(f"{CAMPAIGNS}{campaign.pk}/do/cancel/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert set(campaign.recipients.values_list("status", flat=True)) == {R.SKIPPED}

    # an action the state does not allow is refused with the reason, nothing changes
    response = client.post(f"{CAMPAIGNS}{campaign.pk}/do/resume/", follow=True)
    assert any("Only a paused campaign can be resumed" in text for _, text in messages_of(response))


def test_starting_without_recipients_says_so(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)

    response = client.post(f"{CAMPAIGNS}{campaign.pk}/do/start/", follow=True)

    assert any("no recipients" in text for _, text in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_progress_counts_and_the_export_of_outcomes(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas, status=Campaign.Status.RUNNING)
    sent = RecipientFactory(campaign=campaign, status=R.SENT, sent_at=timezone.now(), line=2)
    RecipientFactory(campaign=campaign, status=R.FAILED, error_code="131026", error_reason="Undeliverable", line=3)
    RecipientFactory(campaign=campaign, line=4)

    progress = client.get(f"{CAMPAIGNS}{campaign.pk}/progress.json").json()
    exported = b"".join(client.get(f"{CAMPAIGNS}{campaign.pk}/export.csv").streaming_content).decode()

    assert progress["total"] == 3 and progress["done"] == 2 and progress["left"] == 1
    assert progress["counts"]["sent"] == 1 and progress["counts"]["failed"] == 1
    assert progress["eta_seconds"] >= 1
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["line"], r["status"], r["error_code"]) for r in rows] == [
        ("2", "sent", ""),
        ("3", "failed", "131026"),
        ("4", "pending", ""),
    ]
    assert rows[0]["phone"] == sent.phone and rows[0]["var:nombre"] == sent.variables["nombre"]


def test_retry_unknown_puts_them_back_for_sending(client, ventas):
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas, status=Campaign.Status.COMPLETED)
    unknown = RecipientFactory(campaign=campaign, status=R.UNKNOWN, error_code="interrupted")

    client.post(f"{CAMPAIGNS}{campaign.pk}/do/retry-unknown/")

    unknown.refresh_from_db()
    campaign.refresh_from_db()
    assert unknown.status == R.PENDING and campaign.status == Campaign.Status.RUNNING


def test_staff_of_another_client_see_nothing_of_it(client, ventas, marketing):
    campaign = CampaignFactory(client=ventas)
    staff_login(client, marketing)

    assert client.get(f"{CAMPAIGNS}{campaign.pk}/change/").status_code in (302, 404)
    assert client.get(f"{CAMPAIGNS}{campaign.pk}/progress.json").status_code == 404
    assert client.get(f"{CAMPAIGNS}{campaign.pk}/export.csv").status_code == 404
    assert client.post(f"{CAMPAIGNS}{campaign.pk}/do/start/").status_code == 404
    assert campaign.name not in client.get(CAMPAIGNS).content.decode()


def test_a_paused_campaign_is_named_on_the_admin_index(client, ventas):
    staff_login(client, ventas)
    CampaignFactory(
        client=ventas, name="Navidad", status=Campaign.Status.PAUSED, status_reason="3 of the last 10 failed"
    )

    page = client.get("/admin/").content.decode()

    assert 'id="paused-campaigns"' in page and "Navidad" in page and "3 of the last 10 failed" in page


def test_a_message_changed_after_the_import_cannot_start_until_recipients_fit_it(client, ventas):
    # given recipients imported for "Hola {{nombre}}", then the message changed to use {{pedido}}
    staff_login(client, ventas)
    campaign = CampaignFactory(client=ventas)
    RecipientFactory(campaign=campaign, variables={"nombre": "Ana"}, line=2)
    Campaign.objects.filter(pk=campaign.pk).update(message="Hola {{nombre}}, tu pedido {{pedido}} llegó")

    # when staff start it, it is refused naming the line and the variable, and nothing changes
    response = client.post(f"{CAMPAIGNS}{campaign.pk}/do/start/", follow=True)

    texts = [text for _, text in messages_of(response)]
    assert any("line 2" in text and "{{pedido}}" in text for text in texts), texts
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
