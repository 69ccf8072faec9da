"""The ways to subscribe and changing one's address, in Chromium at a desktop's width and a phone's, against
axe-core in every state: from the home page, a question and a search to a confirmed alert; from the manage page
to alerts at a new address."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from alerts.models import Subscriber
from questions.models import Question
from tests.browser import browser_page, check_page
from tests.conftest import OBRIEN, UNANSWERED, confirmed_subscriber, import_chosen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280
WIDTHS = [DESKTOP, PHONE]
CONFIRM_LINK = re.compile(r"(http://\S+/alerts/confirm/\S+)")
NEW_ADDRESS_LINK = re.compile(r"(http://\S+/alerts/new-address/\S+)")


@pytest.fixture
def archive(live_server, settings, tmp_path):
    import_chosen(tmp_path)
    settings.SITE_URL = live_server.url


def h1(page) -> str:
    return page.get_by_role("heading", level=1).inner_text()


def status_message(page) -> str:
    return page.locator("div.messages[role=status]").inner_text()


def only_email_to(address: str, pattern: re.Pattern) -> str:
    """The link of the one email to `address` that carries a link of this kind."""
    [found] = [found.group(1) for m in mail.outbox if m.to == [address] and (found := pattern.search(m.body))]
    return found


@pytest.mark.parametrize("width", WIDTHS)
def test_from_the_home_page_and_a_question_to_an_mps_alert(live_server, archive, width):
    email = f"mp-{width}@example.org"
    question = Question.objects.get(external_id=str(UNANSWERED))
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(live_server.url)
        page.get_by_role("link", name="get alerts by email").click()
        assert h1(page) == "Get alerts by email"
        assert page.get_by_role("link", name=re.compile("^Email me")).count() == 0
        check_page(page, "options-plain", width)

        page.get_by_label("Their name").fill('"')
        page.get_by_role("button", name="Find alerts for this member").click()
        assert "There is no search for that name" in page.locator("#member-error").inner_text()
        assert page.get_by_label("Their name").get_attribute("aria-invalid") == "true"
        check_page(page, "options-member-error", width)

        page.goto(f"{live_server.url}{question.get_absolute_url()}")
        page.get_by_role("link", name="Get alerts…").click()
        assert page.get_by_role("heading", level=2, name="From this question").is_visible()
        assert [h.strip() for h in page.locator("ul.ways h3").all_inner_texts()] == [
            OBRIEN, "Department for Business and Trade", "This question"]
        check_page(page, "options-question", width)

        page.get_by_role("link", name="Email me when this is answered").click()
        assert page.url.endswith(f"{question.get_absolute_url()}#follow-heading")
        assert page.get_by_role("button", name="Email me when this is answered").is_visible()

        page.go_back()
        page.get_by_role("link", name=f"Email me about {OBRIEN}").click()
        query = f'member:"{OBRIEN}" OR minister:"{OBRIEN}"'
        assert page.get_by_label("Search", exact=True).input_value() == query
        check_page(page, "options-signup", width)
        page.get_by_label("Your email address").fill(email)
        page.get_by_role("button", name="Email me a link to confirm").click()
        assert h1(page) == "Check your inbox"

        page.goto(only_email_to(email, CONFIRM_LINK))
        page.get_by_role("button", name="Confirm my alert").click()
        assert h1(page) == "My alerts"
        assert page.locator("table.manage").get_by_role("link", name=query, exact=True).count() == 1
        check_page(page, "options-confirmed", width)
    assert Subscriber.objects.get(email=email).subscriptions.get().query == query


@pytest.mark.parametrize("width", WIDTHS)
def test_a_search_offers_itself_and_the_other_ways(live_server, archive, width):
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(f"{live_server.url}/?q=asylum")
        page.get_by_role("link", name="Get alerts…").click()
        assert page.get_by_role("heading", level=2, name="From your search").is_visible()
        assert page.get_by_role("link", name="Email me about this search").get_attribute("href") == (
            "/alerts/new/?q=asylum")
        check_page(page, "options-search", width)

        page.get_by_label("Department").select_option("Speaker's Committee on the Electoral Commission")
        page.get_by_role("button", name="Find alerts for this department").click()
        assert page.get_by_role("link", name="Email me about this search").count() == 1
        assert page.get_by_role("link", name="Email me about the Speaker's Committee on the Electoral "
                                             "Commission").count() == 1
        check_page(page, "options-department", width)


@pytest.mark.parametrize("width", WIDTHS)
def test_changing_the_address_from_the_manage_page(live_server, settings, width):
    old, new = f"old-{width}@example.org", f"new-{width}@example.org"
    subscriber, manage = confirmed_subscriber(Client(), old)
    settings.SITE_URL = live_server.url
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(f"{live_server.url}{manage}")
        page.get_by_role("link", name="Change your email address").click()
        assert h1(page) == "Change your email address"
        check_page(page, "change-email", width)

        page.get_by_label("Your new email address").fill(old.upper())
        page.get_by_role("button", name="Email a link to the new address").click()
        assert "That is the address your alerts go to already" in page.locator("#email-error").inner_text()
        check_page(page, "change-email-error", width)

        page.get_by_label("Your new email address").fill(new)
        page.get_by_role("button", name="Email a link to the new address").click()
        assert h1(page) == "My alerts"
        assert f"We’ve emailed a link to {new}" in status_message(page)
        check_page(page, "change-email-asked", width)

        page.goto(only_email_to(new, NEW_ADDRESS_LINK))
        assert h1(page) == "Move your alerts to this address"
        check_page(page, "change-email-confirm", width)
        page.get_by_role("button", name="Use this address").click()
        assert h1(page) == "My alerts"
        assert f"Your alerts now go to {new}" in status_message(page)
        assert f"Alerts for {new}." in page.locator("main").inner_text()
        check_page(page, "change-email-done", width)

        page.goto(f"{live_server.url}{manage}")
        assert h1(page) == "This link can’t be used"
    subscriber.refresh_from_db()
    assert subscriber.email == new


@pytest.mark.parametrize("width", WIDTHS)
def test_a_move_that_would_pass_the_cap_says_so(live_server, settings, width):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 1
    old, full = f"old-{width}@example.org", f"full-{width}@example.org"
    _, manage = confirmed_subscriber(Client(), old)
    confirmed_subscriber(Client(), full, q="schools")
    settings.SITE_URL = live_server.url
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(f"{live_server.url}{manage}email/")
        page.get_by_label("Your new email address").fill(full)
        page.get_by_role("button", name="Email a link to the new address").click()
        page.goto(only_email_to(full, NEW_ADDRESS_LINK))
        page.get_by_role("button", name="Use this address").click()
        assert h1(page) == "Your alerts can’t move to this address"
        assert "it has room for 0 more. Nothing has changed." in page.locator("main").inner_text()
        check_page(page, "change-email-too-many", width)
