"""An integrator reads the API's docs in a real browser: Swagger UI renders from the product's own assets (no
CDN: the sidecar's files, served by the product), lists the operations, and a call tried from the page with an
API token answers the caller."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from crm.models import ApiToken, Client
from tests.crm.api_helpers import token_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_swagger_docs_render_from_local_assets_and_try_a_call_with_a_token(page, live_server):
    client = Client.objects.get(is_default=True)
    _token, key = token_for(client, ApiToken.Scope.READ, name="n8n")
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None)

    page.goto("/api/v1/docs/")

    # the UI is drawn, with the API's operations, from the product's own files
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("WhatsApp CRM API")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/conversations/").first).to_be_visible()
    assert outside == [], f"the docs page fetched from outside the product: {outside}"

    # and "Try it out" on /me with the token answers who is calling
    page.click("button.authorize")
    page.fill(".auth-container input", key)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".btn-done")
    operation = page.locator("#operations-me-me")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_contain_text("200")
    expect(operation.locator(".highlight-code").first).to_contain_text('"name": "n8n"')
