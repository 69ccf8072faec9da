"""In a real browser, at a desktop's width and a phone's, with axe-core on every state: a broad search added
from the manage page is warned of and added only once seen, then flagged; the sixth signup in an hour keeps
what was typed and says when to try again; and the words of confirming, following and unsubscribing."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import timezone

from alerts import tokens
from alerts.models import Subscriber
from questions.models import QuestionEvent
from tests.browser import browser_page, check_page
from tests.conftest import forty_minutes_before_the_window_turns
from tests.factories import confirmed, match, unanswered

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280
WIDTHS = [DESKTOP, PHONE]
CONFIRM_LINK = re.compile(r"(http://\S+/alerts/confirm/\S+)")


def at(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 812})


def submit(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()
    page.wait_for_load_state()


def heading(page) -> str:
    return page.get_by_role("heading", level=1).inner_text()


def status_message(page) -> str:
    return page.locator("div.messages[role=status]").inner_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_broad_search_added_from_the_manage_page_is_warned_of_added_once_seen_and_flagged(
        live_server, busy_archive, width):
    subscriber, manage = confirmed(f"add-{width}@example.org")
    with browser_page() as page:
        at(page, width)
        page.goto(live_server.url + manage)
        check_page(page, "safeguards-manage", width)

        page.get_by_label("Search", exact=True).fill("government")
        submit(page, "Add this alert")

        summary = page.locator(".error-summary")
        assert "Check this alert before it is added" in summary.inner_text()
        assert "This search is very broad: it matches 36% of all the questions we hold." in summary.inner_text()
        assert page.locator(".caution", has_text="This search is very broad").is_visible()
        assert page.locator(".caution", has_text="could email you many times a day").is_visible()
        assert "How much email to expect" in page.locator(".preview").inner_text()
        assert not subscriber.subscriptions.exists()
        check_page(page, "safeguards-held", width)

        submit(page, "Add this alert anyway")
        assert status_message(page).startswith("Added “government”.")
        flag = page.locator("table.manage .caution")
        assert flag.inner_text().startswith("This search is very broad: it matches 36% of all the questions we hold")
        check_page(page, "safeguards-flagged", width)

        flag.get_by_role("link", name="Narrow its search").click()
        page.wait_for_load_state()
        assert heading(page) == "Edit alert: “government”"
        assert page.locator(".caution", has_text="This search is very broad").is_visible()
        check_page(page, "safeguards-edit", width)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_sixth_signup_in_an_hour_keeps_what_was_typed_and_says_when_to_try_again(
        live_server, settings, limiter_clock, width):
    settings.RATELIMIT_SIGNUP_PER_IP = "5/h"
    forty_minutes_before_the_window_turns(limiter_clock, "127.0.0.1")
    with browser_page() as page:
        at(page, width)
        for number in range(6):
            page.goto(f"{live_server.url}/alerts/new/?q=prisons")
            page.get_by_label("Your email address").fill(f"n{number}-{width}@example.org")
            page.get_by_label("Name for this alert (optional)").fill("Prison staffing")
            page.get_by_label("Weekly digest").check()
            submit(page, "Email me a link to confirm")

        assert heading(page) == "Email me when new questions match this search"
        summary = page.locator(".error-summary").inner_text()
        assert "Please try again in about 40 minutes: what you typed is kept below." in summary
        assert page.get_by_label("Your email address").input_value() == f"n5-{width}@example.org"
        assert page.get_by_label("Search", exact=True).input_value() == "prisons"
        assert page.get_by_label("Name for this alert (optional)").input_value() == "Prison staffing"
        assert page.get_by_label("Weekly digest").is_checked()
        check_page(page, "safeguards-too-many", width)

        page.get_by_role("link", name="Email me a link to my alerts").click()
        page.wait_for_load_state()
        assert heading(page) == "Email me a link to my alerts"


@pytest.mark.parametrize("width", WIDTHS)
def test_confirming_following_and_unsubscribing_say_what_is_true(live_server, settings, width):
    settings.SITE_URL = live_server.url
    email = f"words-{width}@example.org"
    question = unanswered()
    with browser_page() as page:
        at(page, width)
        page.goto(f"{live_server.url}/alerts/new/?q=prisons")
        page.get_by_label("Your email address").fill(email)
        page.get_by_label("Name for this alert (optional)").fill("Prison answers")
        page.get_by_label("Answers only").check()
        submit(page, "Email me a link to confirm")
        page.goto(CONFIRM_LINK.search(mail.outbox[-1].body).group(1))

        assert (f"Confirm that we may email {email} about this alert:"
                in page.locator("main").inner_text())
        assert "“Prison answers”, searching for prisons: as it happens, answers only" in page.locator(
            "main li").inner_text()
        check_page(page, "safeguards-confirm", width)

        submit(page, "Confirm my alert")
        assert status_message(page) == "Your alert is on: we’ll email you when new answers match “Prison answers”."
        check_page(page, "safeguards-confirmed", width)

        # Matched, though no source has been read: the page does not say nothing was checked.
        searched = Subscriber.objects.get(email=email).subscriptions.get()
        match(searched, QuestionEvent.objects.create(question=question, kind="tabled", key="tabled"))
        page.reload()
        activity = page.locator("td.activity").inner_text()
        assert "Last matched" in activity and "haven’t checked" not in page.locator("main").inner_text()
        check_page(page, "safeguards-matched", width)

        page.goto(f"{live_server.url}/questions/id/{question.pk}/")
        page.get_by_label("Your email address").fill(f"wrong-{email}")
        submit(page, "Email me when this is answered")
        assert heading(page) == "Check your inbox"
        check_page(page, "safeguards-followed", width)

        page.get_by_role("link", name="Sign up again with the right one").click()
        page.wait_for_load_state()
        assert heading(page) == question.heading
        assert page.get_by_role("button", name="Email me when this is answered").is_visible()

        follow = searched.subscriber.subscriptions.create(question=question, label=question.heading,
                                                          confirmed_at=timezone.now())
        page.goto(f"{live_server.url}/unsubscribe/{tokens.make(follow.subscriber, tokens.UNSUBSCRIBE, sub=follow.pk)}/")
        submit(page, "Unsubscribe from this alert")
        assert heading(page) == "You are unsubscribed"
        check_page(page, "safeguards-unsubscribed", width)

        page.get_by_role("link", name="Sign up again to follow this question").click()
        page.wait_for_load_state()
        assert heading(page) == question.heading
        assert page.get_by_role("button", name="Email me when this is answered").is_visible()
