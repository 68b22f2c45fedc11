"""Campaigns over the REST API (campaigns/api/views.py, docs/api.md): staff-only reads and admin-scope writes,
the admin's validation and import, the lifecycle services and progress, against the real database and Redis."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.crypto import get_random_string

from campaigns.models import Campaign, Recipient, RecipientImport
from conversations.models import Contact
from crm.models import ApiToken, ClientMembership
from crm.roles import STAFF
from crm.services import api_token_revoke
from sessions.models import Engine
from tests.campaigns.factories import (
    CampaignFactory,
    MessageTemplateFactory,
    RecipientFactory,
    TemplateCampaignFactory,
)
from tests.crm.api_helpers import api_client, error_of, token_for
from tests.crm.factories import UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/campaigns/"
READ, SEND, ADMIN = ApiToken.Scope.READ, ApiToken.Scope.SEND, ApiToken.Scope.ADMIN
STATUSES = ["pending", "sending", "sent", "delivered", "read", "replied", "failed", "skipped", "unknown"]


def url(campaign: Campaign, action: str = "") -> str:
    return f"/api/v1/campaigns/{campaign.pk}/" + (f"{action}/" if action else "")


def token_api(client, scope=READ):
    return api_client(token_for(client, scope, name=f"it-{scope}")[1])


def session_api(user):
    """Signed in as `user`, sending the CSRF cookie and header a browser would."""
    api = api_client(user=user)
    secret = get_random_string(32)
    api.cookies["csrftoken"] = secret
    api.credentials(HTTP_X_CSRFTOKEN=secret)
    return api


def staff_of(client, username="operadora"):
    user = UserFactory(username=username)
    ClientMembership.objects.create(user=user, client=client)
    user.groups.add(Group.objects.get(name=STAFF))
    return user


def agent_of(client, username="ana"):
    user = UserFactory(username=username)
    ClientMembership.objects.create(user=user, client=client)
    QueueMembershipFactory(queue=QueueFactory(client=client), user=user)
    return user


def upload(text: str, name: str = "clientes.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


GOOD_AND_BAD = "telefono,nombre\n+51911000001,Ana\nno-es-un-telefono,Beto\n+51911000003,Caro\n"


@pytest.fixture
def campaign(ventas):
    return CampaignFactory(client=ventas, name="Promo julio")


# --- who may call -------------------------------------------------------------------------------------------


def test_no_credentials_or_a_revoked_token_are_refused(ventas, campaign):
    token, key = token_for(ventas, READ)
    api_token_revoke(token=token)

    for api in (api_client(), api_client(key)):
        response = api.get(LIST)
        assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"


def test_campaigns_are_for_staff_even_to_read(ventas, campaign):
    # Given an agent of the client and an operator (staff) of it
    agent, staff = agent_of(ventas), staff_of(ventas)

    # Then the agent is refused every campaign endpoint, reads included
    for method, path in [("get", LIST), ("get", url(campaign)), ("get", url(campaign, "progress"))]:
        response = getattr(session_api(agent), method)(path)
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden", path
    response = session_api(agent).post(url(campaign, "start"))
    assert response.status_code == 403
    # and staff read them
    assert session_api(staff).get(url(campaign)).json()["name"] == "Promo julio"


@pytest.mark.parametrize("scope", [READ, SEND])
def test_a_token_below_admin_scope_reads_but_cannot_create_import_or_start(ventas, campaign, scope):
    api = token_api(ventas, scope)

    assert api.get(LIST).status_code == 200
    for path, body in [
        (LIST, {"name": "x", "number": campaign.number_id, "message": "Hola"}),
        (url(campaign, "recipients/import"), {"file": upload(GOOD_AND_BAD), "mode": "keep_good"}),
        (url(campaign, "start"), {}),
        (url(campaign, "cancel"), {}),
    ]:
        response = api.post(path, body, format="multipart" if "import" in path else "json")
        assert response.status_code == 403, path
        assert error_of(response)["code"] == "forbidden" and "needs admin" in error_of(response)["message"]
    assert Campaign.objects.count() == 1 and not Recipient.objects.exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_another_clients_campaign_is_not_found(ventas, marketing, campaign):
    api = token_api(marketing, ADMIN)

    for method, path in [
        ("get", url(campaign)),
        ("get", url(campaign, "progress")),
        ("post", url(campaign, "start")),
        ("post", url(campaign, "cancel")),
        ("post", url(campaign, "recipients/import")),
    ]:
        response = getattr(api, method)(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", path
    assert api.get(LIST).json()["count"] == 0
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


# --- list and detail ----------------------------------------------------------------------------------------


def test_the_list_shows_the_clients_campaigns_newest_first_with_counts_and_filters(ventas, marketing, campaign):
    # Given two campaigns of the client (one running, with recipients) and one of another client
    running = CampaignFactory(client=ventas, name="Navidad", status=Campaign.Status.RUNNING)
    RecipientFactory.create_batch(2, campaign=running)
    RecipientFactory(campaign=running, status=Recipient.Status.SENT)
    CampaignFactory(client=marketing)
    api = token_api(ventas)

    # When the list is read
    body = api.get(LIST).json()

    # Then it holds the client's campaigns, newest first, each with its number and recipients by status
    assert body["count"] == 2 and [c["name"] for c in body["results"]] == ["Navidad", "Promo julio"]
    first = body["results"][0]
    assert first["number"] == {"id": running.number_id, "alias": running.number.alias, "engine": "sandbox"}
    assert first["counts"] == {**dict.fromkeys(STATUSES, 0), "pending": 2, "sent": 1}
    assert first["status"] == "running" and first["client"] == ventas.pk
    assert datetime.fromisoformat(first["created_at"]) == running.created_at  # ISO 8601
    assert "access_token" not in str(body) and "verify" not in str(body)

    # and the filters narrow it
    assert [c["id"] for c in api.get(LIST, {"status": "draft"}).json()["results"]] == [campaign.pk]
    assert [c["id"] for c in api.get(LIST, {"number": running.number_id}).json()["results"]] == [running.pk]


def test_bad_filters_are_400_naming_the_field(ventas):
    response = token_api(ventas).get(LIST, {"status": "sleeping", "number": "x"})

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"status", "number"}


def test_the_detail_has_the_template_parameters_and_schedule(ventas):
    campaign = TemplateCampaignFactory(
        client=ventas, quiet_from=time(21, 0), quiet_until=time(8, 0), send_days=[1, 2, 3, 4, 5]
    )

    body = token_api(ventas).get(url(campaign)).json()

    assert body["template"] == {"id": campaign.template_id, "name": campaign.template.name, "language": "es"}
    assert body["template_parameters"] == ["{{nombre}}"] and body["message"] == ""
    assert body["schedule"] == {
        "start_at": None,
        "quiet_from": "21:00:00",
        "quiet_until": "08:00:00",
        "send_days": [1, 2, 3, 4, 5],
    }
    assert body["is_editable"] is True and body["counts"] == dict.fromkeys(STATUSES, 0)


# --- create -------------------------------------------------------------------------------------------------


def test_an_admin_token_creates_a_draft_of_free_text(ventas):
    number = WhatsAppNumberFactory(client=ventas, engine=Engine.SANDBOX, access_token="")

    response = token_api(ventas, ADMIN).post(
        LIST,
        {
            "name": "Aviso",
            "number": number.pk,
            "message": "Hola {{nombre|cliente}}",
            "start_at": "2030-01-02T15:00:00Z",
            "quiet_from": "22:00",
            "quiet_until": "07:30",
            "send_days": [5, 1, 1],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    campaign = Campaign.objects.get()
    assert body["id"] == campaign.pk and body["status"] == "draft"
    assert (campaign.client, campaign.number, campaign.message) == (ventas, number, "Hola {{nombre|cliente}}")
    assert campaign.quiet_from == time(22, 0) and campaign.quiet_until == time(7, 30)
    assert campaign.send_days == [1, 5] and campaign.start_at.year == 2030
    assert campaign.created_by is not None and campaign.created_by.api_token.client == ventas


def test_staff_creates_a_template_campaign_for_a_cloud_number(ventas):
    number = WhatsAppNumberFactory(client=ventas, engine=Engine.CLOUD)
    template = MessageTemplateFactory(client=ventas, body="Hola {{1}}, pedido {{2}}")

    response = session_api(staff_of(ventas)).post(
        LIST,
        {"name": "Pedidos", "number": number.pk, "template": template.pk, "template_parameters": ["{{nombre}}", "X"]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    campaign = Campaign.objects.get()
    assert campaign.template == template and campaign.template_parameters == ["{{nombre}}", "X"]
    assert response.json()["template"]["id"] == template.pk


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"number": "NUMBER"}, {"name"}),
        ({"name": "x", "number": "NUMBER", "message": ""}, {"message"}),
        ({"name": "x", "number": "NUMBER", "message": "Hola", "template": "TEMPLATE"}, {"template"}),
        ({"name": "x", "number": "NUMBER", "message": "Hola", "quiet_from": "22:00"}, {"quiet_until"}),
        ({"name": "x", "number": "NUMBER", "message": "Hola {{nombre"}, {"message"}),
        ({"name": "x", "number": "NUMBER", "message": "Hola", "send_days": []}, {"send_days"}),
        ({"name": "x", "number": "NUMBER", "message": "Hola", "send_days": [8]}, {"send_days.0"}),
        ({"name": "x", "number": "FOREIGN", "message": "Hola"}, {"number"}),
        ({"name": "x", "number": "NUMBER", "template": "FOREIGN_TEMPLATE"}, {"template"}),
    ],
    ids=[
        "no-name",
        "no-message",
        "template-on-sandbox",
        "half-quiet-hours",
        "broken-variable",
        "no-days",
        "bad-day",
        "other-clients-number",
        "other-clients-template",
    ],
)
def test_a_campaign_that_breaks_the_admins_rules_is_400_naming_the_field(ventas, marketing, body, fields):
    number = WhatsAppNumberFactory(client=ventas, engine=Engine.SANDBOX, access_token="")
    ids = {
        "NUMBER": number.pk,
        "FOREIGN": WhatsAppNumberFactory(client=marketing).pk,
        "TEMPLATE": MessageTemplateFactory(client=ventas).pk,
        "FOREIGN_TEMPLATE": MessageTemplateFactory(client=marketing).pk,
    }
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}

    response = token_api(ventas, ADMIN).post(LIST, body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and set(error["fields"]) == fields, error
    assert not Campaign.objects.exists()


# --- import -------------------------------------------------------------------------------------------------


def test_keep_good_adds_the_good_rows_and_lists_the_rejected_ones_with_their_line(ventas, campaign):
    response = token_api(ventas, ADMIN).post(
        url(campaign, "recipients/import"), {"file": upload(GOOD_AND_BAD), "mode": "keep_good"}, format="multipart"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in ("applied", "rows", "added", "merged", "skipped", "rejected")} == {
        "applied": True,
        "rows": 3,
        "added": 2,
        "merged": 0,
        "skipped": 0,
        "rejected": 1,
    }
    assert len(body["rejected_rows"]) == 1 and body["rejected_rows"][0]["line"] == 3
    assert "no-es-un-telefono" in body["rejected_rows"][0]["reason"]
    assert sorted(Recipient.objects.filter(campaign=campaign).values_list("phone", "line")) == [
        ("+51911000001", 2),
        ("+51911000003", 4),
    ]
    assert RecipientImport.objects.get(pk=body["id"]).source == "clientes.csv"


def test_all_or_nothing_with_a_bad_row_changes_nothing_and_answers_the_rows(ventas, campaign):
    response = session_api(staff_of(ventas)).post(
        url(campaign, "recipients/import"),
        {"file": upload(GOOD_AND_BAD), "mode": "all_or_nothing"},
        format="multipart",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "rows_rejected" and "Nothing imported" in error["message"]
    assert len(error["fields"]["file"]) == 1 and error["fields"]["file"][0].startswith("line 3:")
    assert not Recipient.objects.exists() and not Contact.objects.exists()
    assert RecipientImport.objects.get().applied is False  # the attempt is kept, as in admin


def test_a_file_that_cannot_be_imported_is_400_on_the_file(ventas, campaign, settings):
    api = token_api(ventas, ADMIN)

    no_phone = api.post(url(campaign, "recipients/import"), {"file": upload("nombre\nAna\n")}, format="multipart")
    settings.CAMPAIGN_IMPORT_MAX_BYTES = 20
    too_big = api.post(url(campaign, "recipients/import"), {"file": upload(GOOD_AND_BAD)}, format="multipart")
    no_file = api.post(url(campaign, "recipients/import"), {"mode": "sometimes"}, format="multipart")

    assert no_phone.status_code == 400 and "no phone column" in error_of(no_phone)["fields"]["file"][0]
    assert too_big.status_code == 400 and "can be imported" in error_of(too_big)["fields"]["file"][0]
    assert no_file.status_code == 400 and set(error_of(no_file)["fields"]) == {"file", "mode"}
    assert not Recipient.objects.exists()


def test_a_started_campaign_takes_no_more_recipients(ventas):
    running = CampaignFactory(client=ventas, status=Campaign.Status.RUNNING)

    response = token_api(ventas, ADMIN).post(
        url(running, "recipients/import"), {"file": upload(GOOD_AND_BAD)}, format="multipart"
    )

    assert response.status_code == 409 and error_of(response)["code"] == "not_editable"
    assert not Recipient.objects.exists()


# --- lifecycle and progress ---------------------------------------------------------------------------------


def test_start_pause_resume_and_cancel_change_the_state_and_answer_the_detail(ventas, campaign):
    RecipientFactory.create_batch(3, campaign=campaign)
    api = token_api(ventas, ADMIN)

    started = api.post(url(campaign, "start"))
    assert started.status_code == 200 and started.json()["status"] == "running"
    assert started.json()["started_at"] is not None

    paused = api.post(url(campaign, "pause"), {"reason": "Revisando el texto"}, format="json")
    campaign.refresh_from_db()
    assert paused.json()["status"] == "paused" and campaign.status_reason == "Revisando el texto"

    assert api.post(url(campaign, "resume")).json()["status"] == "running"

    cancelled = api.post(url(campaign, "cancel"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["counts"]["skipped"] == 3 and cancelled.json()["finished_at"] is not None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED


def test_an_action_the_state_does_not_allow_is_409_with_the_services_code(ventas, campaign):
    api = token_api(ventas, ADMIN)

    empty = api.post(url(campaign, "start"))  # a draft without recipients
    paused = api.post(url(campaign, "resume"))  # a draft is not paused

    assert empty.status_code == 409 and error_of(empty)["code"] == "no_recipients"
    assert paused.status_code == 409 and error_of(paused)["code"] == "invalid_state"
    assert "draft" in error_of(paused)["message"]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_progress_has_counts_share_done_pace_and_time_left(ventas, campaign):
    RecipientFactory.create_batch(3, campaign=campaign)
    RecipientFactory(campaign=campaign, status=Recipient.Status.DELIVERED)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)

    body = token_api(ventas).get(url(campaign, "progress")).json()

    assert body["campaign"] == campaign.pk and body["status"] == "running"
    assert (body["total"], body["done"], body["left"], body["percent"]) == (4, 1, 3, 25.0)
    assert body["counts"] == {**dict.fromkeys(STATUSES, 0), "pending": 3, "delivered": 1}
    assert body["rate"] > 0 and body["eta_seconds"] > 0 and body["eta_at"]


def test_the_list_costs_the_same_queries_however_many_campaigns(ventas, django_assert_max_num_queries):
    # Given a token already used once (its "last used" written) and a page of one campaign
    api = token_api(ventas)
    RecipientFactory(campaign=CampaignFactory(client=ventas))
    api.get(LIST)
    with CaptureQueriesContext(connection) as one:
        api.get(LIST)

    # When the page holds many campaigns, each with recipients
    for _ in range(5):
        RecipientFactory(campaign=CampaignFactory(client=ventas))

    # Then reading it costs no more queries
    with django_assert_max_num_queries(len(one)):
        assert api.get(LIST).json()["count"] == 6
