"""The REST API's authentication, scopes, errors, rate limit and schema (docs/api.md), against the real
database and Redis."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from crm.models import ApiToken
from crm.services import api_token_revoke
from tests.conftest import ROOT
from tests.crm.api_helpers import api_client, error_of, token_for
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.queues.factories import QueueFactory, QueueMembershipFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def test_a_token_is_its_client_as_that_clients_staff_would_see_it(ventas, marketing):
    token, key = token_for(ventas, ApiToken.Scope.SEND, name="ERP")

    response = api_client(key).get(ME)

    assert response.status_code == 200
    assert response.json() == {
        "kind": "token",
        "name": "ERP",
        "scope": "send",
        "is_staff": True,
        "clients": [{"id": ventas.pk, "name": ventas.name, "slug": ventas.slug}],
    }
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.key_hash not in key and len(token.key_hash) == 64  # only a hash is stored


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer nonsense", "not an API token of this product"),
        ("Bearer wcrm_00000000_unknown", "Unknown API token."),
    ],
    ids=["none", "malformed", "unknown"],
)
def test_calls_without_a_valid_token_are_refused_with_the_error_body(header, message):
    api = api_client()
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get(ME)

    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "unauthenticated" and message in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_from_then_on(ventas):
    token, key = token_for(ventas)
    assert api_client(key).get(ME).status_code == 200

    api_token_revoke(token=token)

    response = api_client(key).get(ME)
    assert response.status_code == 401 and "revoked" in error_of(response)["message"]


def test_a_person_signed_in_uses_the_api_with_the_crms_rules(ventas):
    agent = UserFactory(username="ana")
    ClientMembershipFactory(user=agent, client=ventas)
    outsider = UserFactory(username="sin-cola")
    ClientMembershipFactory(user=outsider, client=ventas)
    QueueMembershipFactory(queue=QueueFactory(client=ventas), user=agent)

    body = api_client(user=agent).get(ME).json()

    assert body["kind"] == "user" and body["name"] == "ana" and body["scope"] is None
    assert body["is_staff"] is False
    # someone of the client who works in no queue has nothing to do with the API
    refused = api_client(user=outsider).get(ME)
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"


def test_the_rate_limit_counts_per_token(ventas, settings):
    settings.API_RATE_LIMIT = "3/min"
    _token, key = token_for(ventas)
    _other, other_key = token_for(ventas, name="Typebot")
    api = api_client(key)

    statuses = [api.get(ME).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    limited = api.get(ME)
    assert error_of(limited)["code"] == "rate_limited" and int(limited["Retry-After"]) > 0
    assert api_client(other_key).get(ME).status_code == 200  # another token has its own allowance


def test_unknown_api_paths_answer_the_error_body():
    response = api_client().get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_the_committed_schema_is_what_the_code_generates(tmp_path):
    # the schema generates without warnings, and docs/openapi.yaml is current (run `make schema` after an API
    # change and commit the result)
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))
    committed = ROOT / "docs" / "openapi.yaml"
    assert committed.exists(), "docs/openapi.yaml is missing: run `make schema`"
    assert yaml.safe_load(generated.read_text()) == yaml.safe_load(committed.read_text()), (
        "docs/openapi.yaml is out of date: run `make schema` and commit it"
    )


def test_the_schema_and_its_docs_are_served(client):
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"openapi: 3" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_tokens_are_made_in_admin_and_their_key_is_shown_once(admin_client, ventas):
    response = admin_client.post(
        "/admin/crm/apitoken/add/", {"client": ventas.pk, "name": "n8n", "scope": "admin"}, follow=True
    )

    page = response.content.decode()
    token = ApiToken.objects.get()
    assert token.scope == "admin" and token.client == ventas and token.user.first_name == "n8n"
    key = page.split('id="api-token-key">')[1].split("<")[0]
    assert key.startswith(f"wcrm_{token.prefix}_")
    assert api_client(key).get(ME).status_code == 200
    assert key not in admin_client.get(f"/admin/crm/apitoken/{token.pk}/change/").content.decode()

    # revoking from the list
    admin_client.post("/admin/crm/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_at <= timezone.now()
    assert api_client(key).get(ME).status_code == 401
