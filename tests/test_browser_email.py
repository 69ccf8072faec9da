"""The HTML alert email as a mail client would show it: rendered in Chromium and checked by axe-core."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from alerts.delivery import deliver_immediate
from tests.browser import axe_violations, browser_page, screenshot
from tests.conftest import FIXTURES
from tests.factories import match_everything, subscribe

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_alert_email_renders_and_passes_axe(settings):
    settings.SITE_URL = "https://alerts.example.org"
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    subscribe(query="palantir OR taser", label="Policing technology")
    match_everything()
    deliver_immediate()
    html = mail.outbox[0].alternatives[0][0]

    with browser_page() as page:
        page.set_content(html)
        shot = screenshot(page, "alert-email")
        assert page.get_by_role("heading", name="Policing technology").count() == 1
        assert page.locator("mark").count() >= 3
        assert page.get_by_role("link", name="Unsubscribe from everything").count() == 1
        assert axe_violations(page) == []
    assert shot.stat().st_size > 10_000
