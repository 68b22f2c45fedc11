"""Staff pair a sandbox number from admin: the number's page shows the QR code, the sandbox phone "scans" it, and
the admin page turns to "connected" by itself (the live WebSocket), without a reload. The real product runs:
daphne (HTTP + WebSocket) and a sessions worker, both on the test database."""

from __future__ import annotations

import pytest

from sessions.models import NumberSession
from tests.crm.factories import ClientMembershipFactory, UserFactory
from tests.e2e.conftest import ARTIFACTS
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_see_the_qr_code_scan_it_with_the_sandbox_phone_and_the_page_turns_connected(
    browser, stack, default_client
):
    number = WhatsAppNumberFactory(
        client=default_client, engine="sandbox", alias="Tienda Miraflores", display_number="+51 900 400 001"
    )
    staff = UserFactory(username="operadora", is_staff=True, is_superuser=True)
    staff.set_password("a-long-test-password")
    staff.save()
    ClientMembershipFactory(user=staff, client=default_client)

    context = browser.new_context(base_url=stack.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto("/admin/login/")
        page.fill("#id_username", "operadora")
        page.fill("#id_password", "a-long-test-password")
        page.click("input[type=submit]")

        # the number is new: the sessions worker connects it and shows a QR code, live
        page.goto(f"/admin/wa_sessions/whatsappnumber/{number.pk}/change/")
        state = page.locator(f'#session-panel [data-session-number="{number.pk}"]')
        page.wait_for_selector('body[data-sessions-live="open"]')
        page.wait_for_function(
            "() => document.querySelector('#session-panel .session-state').dataset.state === 'waiting_qr'"
        )
        qr = page.locator("#session-panel .session-qr img")
        qr.wait_for(state="visible")
        assert page.evaluate("() => document.querySelector('#session-panel .session-qr img').naturalWidth") > 0

        # the owner's phone (the sandbox device page) scans it, in another tab
        phone = context.new_page()
        phone.goto(f"/sandbox/numbers/{number.pk}/device/")
        phone.click("#scan")

        # the admin page, never reloaded, turns to connected and hides the QR code
        page.wait_for_function(
            "() => document.querySelector('#session-panel .session-state').dataset.state === 'connected'"
        )
        assert state.inner_text() == "Connected"
        assert qr.is_hidden()
        session = NumberSession.objects.get(number=number)
        assert session.state == "connected" and session.device_jid

        # the numbers list shows it live too: a drop injected from the phone appears without a reload
        page.goto("/admin/wa_sessions/whatsappnumber/")
        row = page.locator(f'#result_list [data-session-number="{number.pk}"]')
        assert row.get_attribute("data-state") == "connected"
        page.wait_for_selector('body[data-sessions-live="open"]')
        phone.goto(f"/sandbox/numbers/{number.pk}/device/")
        phone.click("#fault-conflict")
        page.wait_for_selector(f'#result_list [data-session-number="{number.pk}"][data-state="conflict"]')
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "session_pairing.png"), full_page=True)
        raise
    finally:
        context.close()
