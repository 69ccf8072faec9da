"""A visitor searching in a real browser, and what axe-core finds on each page."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from tests.browser import axe_violations, browser_page, screenshot
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), str(FIXTURES / "list_page_excerpt.json"),
                 stdout=StringIO())


def test_search_refusal_and_question_page_in_a_browser(live_server, archive):
    with browser_page() as page:
        page.goto(live_server.url + "/")
        assert axe_violations(page) == []

        page.get_by_label("Search written questions").fill('"facial recognition" AND police')
        page.get_by_role("button", name="Search").click()
        page.wait_for_load_state()
        assert "5 questions match" in page.get_by_role("heading", name="5 questions match").inner_text()
        assert page.locator("mark", has_text="facial recognition").count() >= 5
        screenshot(page, "search-results")
        assert axe_violations(page) == []

        page.get_by_label("Search written questions").fill('"facial recognition')
        page.get_by_role("button", name="Search").click()
        alert = page.get_by_role("alert")
        assert "The quote you opened at character 1 is never closed" in alert.inner_text()
        assert alert.locator("mark").inner_text() == '"'
        screenshot(page, "search-refused")
        assert axe_violations(page) == []

        page.get_by_label("Search written questions").fill("\"machine learning\"")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="Police: Artificial Intelligence").first.click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Police: Artificial Intelligence"
        assert "Asked by:" in page.content()
        assert axe_violations(page) == []

        page.goto(live_server.url + "/help/")
        assert page.get_by_role("heading", level=1).inner_text() == "How to search"
        assert axe_violations(page) == []

        page.set_viewport_size({"width": 375, "height": 800})
        page.goto(live_server.url + "/?q=police")
        screenshot(page, "search-phone")
        # Nothing wider than a phone's screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
