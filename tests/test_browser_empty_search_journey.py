"""A search nobody has asked about yet, followed in a real browser to an alert, and on to the email that
comes when someone does ask."""

from __future__ import annotations

import html
import json
import re
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from alerts.delivery import deliver_immediate
from alerts.matching import match_events
from alerts.models import Subscriber
from tests.browser import axe_violations, browser_page, screenshot
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORD = "zorbonium"
HEADING = "Critical Minerals: Zorbonium"


def arriving_question(tmp_path) -> str:
    """One normalised record, as the importer reads them, mentioning the word."""
    today = timezone.localdate()
    path = tmp_path / "zorbonium.json"
    path.write_text(json.dumps([{
        "id": "zorbonium-1", "heading": HEADING, "date_tabled": today.isoformat(), "member": "Ada Lovelace",
        "party": "Independent", "constituency": "Nowhere", "department": "Department for Business and Trade",
        "question": "To ask the Secretary of State for Business and Trade, what assessment he has made of the "
                    "supply of zorbonium for battery manufacturing.",
        "minister": "", "minister_role": "", "answer": "", "house": "Commons",
        "date_label": today.strftime("%A %d %B %Y"),
    }]), encoding="utf-8")
    return str(path)


def test_an_empty_search_becomes_an_alert_that_emails_when_the_question_arrives(live_server, settings, tmp_path):
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    settings.SITE_URL = live_server.url

    with browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})

        page.goto(f"{live_server.url}/")
        page.get_by_label("Search written questions").fill(WORD)
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name=f"No questions match “{WORD}”").count() == 1
        screenshot(page, "empty-search-results")
        assert axe_violations(page) == [], "empty results"

        page.get_by_role("link", name=re.compile("^Email me")).click()
        assert page.get_by_label("Search", exact=True).input_value() == WORD
        page.get_by_label("Your email address").fill("ada@example.org")
        page.get_by_role("button", name="Email me a link to confirm").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

        assert len(mail.outbox) == 1 and "Confirm" in mail.outbox[0].subject
        confirm_url = re.search(r"(http://\S+/alerts/confirm/\S+)", mail.outbox[0].body).group(1)
        page.goto(confirm_url)
        page.get_by_role("button", name="Confirm my alert").click()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        row = page.get_by_role("row").filter(has_text=WORD)
        assert row.get_by_role("cell", name="On", exact=True).count() == 1
        screenshot(page, "empty-search-manage")
        assert axe_violations(page) == [], "manage"

    subscription = Subscriber.objects.get(email="ada@example.org").subscriptions.get()
    assert subscription.query == WORD

    # The question arrives as the poller would bring it, and the worker's two steps run.
    call_command("import_questions", arriving_question(tmp_path), "--alert", stdout=StringIO())
    match_events()
    deliver_immediate()

    assert len(mail.outbox) == 2
    alert = mail.outbox[-1]
    assert alert.to == ["ada@example.org"]
    assert HEADING in alert.body
    html_body = "".join(body for body, kind in alert.alternatives if kind == "text/html")
    # The HTML version marks the matched word, so its tags are taken out before looking for the heading.
    assert HEADING in html.unescape(re.sub(r"<[^>]+>", "", html_body))
