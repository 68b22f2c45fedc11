"""Staff run a campaign from admin in a real browser: import a CSV (one bad row reported by its line), preview the
messages, start it, and watch the progress bar fill live while a real campaigns worker sends to the fake Graph
API; the export lists every recipient's outcome."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, Recipient
from tests.campaigns.factories import TemplateCampaignFactory
from tests.conftest import ROOT, project_env, stop_processes
from tests.crm.factories import ClientMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TOKEN = "EAAG-e2e-campaign-token-0000001"
CELERY = str(ROOT / ".venv" / "bin" / "celery") if (ROOT / ".venv" / "bin" / "celery").exists() else "celery"


def test_staff_import_preview_start_and_watch_a_campaign_finish(browser, stack, default_client, graph_api, tmp_path):
    # given a draft template campaign on a Cloud API number paced at 15 messages a second, and a campaigns worker
    campaign = TemplateCampaignFactory(
        client=default_client,
        name="Cyber Wow",
        number__send_rate=15,
        number__access_token=TOKEN,
        template__body="Hola {{1}}, 30% hoy",
    )
    graph_api.tokens[campaign.number.phone_number_id] = TOKEN
    staff = UserFactory(username="marketing", is_staff=True, is_superuser=True)
    staff.set_password("a-long-test-password")
    staff.save()
    ClientMembershipFactory(user=staff, client=default_client)
    rows = ["telefono,nombre"] + [f"+51988{i:06d},Cliente {i}" for i in range(40)] + ["12ab,Roto"]
    upload = tmp_path / "clientes.csv"
    upload.write_text("\n".join(rows) + "\n")
    worker = subprocess.Popen(
        [CELERY, "-A", "config", "worker", "-Q", "campaigns", "-n", f"e2e-campaigns-{uuid.uuid4().hex[:6]}@%h"]
        + ["-c", "1", "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
        cwd=ROOT,
        env=project_env(TEST_GRAPH_API_URL=graph_api.url, LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = browser.new_context(base_url=stack.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto("/admin/login/")
        page.fill("#id_username", "marketing")
        page.fill("#id_password", "a-long-test-password")
        page.click("input[type=submit]")

        # when they import the file, keeping the good rows
        page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
        page.click("#campaign-import")
        page.set_input_files("input[name=file]", str(upload))
        page.check("input[name=mode][value=keep_good]")
        page.click("#campaign-form-submit")

        # then the report names the bad row by its line, and the good ones are in
        messages = page.locator(".messagelist")
        expect(messages).to_contain_text("41 row(s): 40 added")
        expect(messages).to_contain_text("line 42:")
        assert Recipient.objects.filter(campaign=campaign).count() == 40

        # when they preview: the template filled for the first recipients
        page.click("#campaign-preview")
        expect(page.locator("#campaign-preview-table")).to_contain_text("Hola Cliente 0, 30% hoy")
        page.go_back()

        # when they start it (confirming), the progress fills without a reload and ends completed
        page.wait_for_selector('body[data-campaigns-live="open"]')
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#campaign-start")
        expect(page.locator(".messagelist")).to_contain_text("Started")
        page.wait_for_selector('body[data-campaigns-live="open"]')
        panel = page.locator("[data-campaign-progress]")
        page.wait_for_function(
            "() => { const n = +document.querySelector('.campaign-done').textContent; return n > 0 && n < 40; }"
        )
        expect(panel.locator(".campaign-status")).to_have_attribute("data-status", "completed", timeout=30_000)
        expect(panel.locator(".campaign-done")).to_have_text("40")
        expect(panel.locator('[data-count="sent"]')).to_have_text("40")

        # and the export lists every recipient with its outcome
        with page.expect_download() as download:
            page.click("#campaign-export")
        exported = download.value.path().read_text()
        assert exported.count(",sent,") == 40
    finally:
        context.close()
        stop_processes([worker])
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    sent = [r.json["to"] for r in graph_api.requests if r.method == "POST"]
    assert len(sent) == 40 == len(set(sent))
