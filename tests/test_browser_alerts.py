"""The whole subscription journey in a real browser, with axe-core on every page."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from alerts.models import Subscriber
from tests.browser import axe_violations, browser_page, screenshot
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_subscribe_confirm_manage_edit_pause_unsubscribe(live_server, settings):
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    settings.SITE_URL = live_server.url

    with browser_page() as page:
        def accessible(name: str) -> None:
            screenshot(page, f"alerts-{name}")
            assert axe_violations(page) == [], name

        page.goto(f"{live_server.url}/?q=%22facial+recognition%22")
        page.get_by_role("link", name="Email me when new questions match this search").click()
        assert page.get_by_label("Search", exact=True).input_value() == '"facial recognition"'
        accessible("signup")

        page.get_by_label("Your email address").fill("ada@example.org")
        page.get_by_label("Daily digest").check()
        page.get_by_role("button", name="Email me a link to confirm").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
        accessible("check-inbox")

        assert len(mail.outbox) == 1
        confirm_url = re.search(r"(http://\S+/alerts/confirm/\S+)", mail.outbox[0].body).group(1)
        page.goto(confirm_url)
        accessible("confirm")
        page.get_by_role("button", name="Confirm my alert").click()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert "Daily digest" in page.content()
        accessible("manage")

        page.get_by_role("link", name=re.compile("^Edit")).click()
        page.get_by_label("Search", exact=True).fill('"facial recognition" AND')
        page.get_by_role("button", name="Save changes").click()
        assert "nothing after it" in page.get_by_role("alert").inner_text()
        accessible("edit-refused")
        page.get_by_label("Search", exact=True).fill('"facial recognition" AND police')
        page.get_by_role("button", name="Save changes").click()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert '"facial recognition" AND police' in page.content().replace("&quot;", '"')

        page.get_by_role("button", name=re.compile("^Pause")).click()
        assert page.get_by_role("cell", name="Paused").count() == 1
        accessible("paused")

        page.get_by_role("link", name="Unsubscribe from everything").click()
        accessible("unsubscribe")
        page.get_by_role("button", name="Unsubscribe from everything").click()
        assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
        accessible("unsubscribed")

    subscriber = Subscriber.objects.get()
    assert subscriber.suppressed_reason == "unsubscribed"
    assert subscriber.subscriptions.get().paused
