"""The manage and edit pages' less travelled states, at a desktop's width and a phone's, against axe-core:
a deleted alert and its Undo, an address that unsubscribed from everything, a refused search, a used link."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from alerts.models import Subscriber
from tests.browser import check_page
from tests.conftest import CONFIRM_LINK, QUERY, WIDTHS, signed_up, status_message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def check(page, name: str, width: int) -> None:
    check_page(page, f"alert-states-{name}", width)


def alert_rows(page):
    return page.locator("table.manage tbody tr")


def statuses(page) -> list[str]:
    """Each alert's Status cell. Not its accessible name: on a phone that starts with the ::before "Status: " label."""
    return [text.strip() for text in page.locator("table.manage td[data-label='Status']").all_inner_texts()]


@pytest.mark.parametrize("width", WIDTHS)
def test_delete_then_undo_brings_the_alert_back(live_server, live_archive, width):
    with signed_up(live_server, width, f"undo-{width}@example.org") as (page, manage_url, _):
        assert alert_rows(page).count() == 1

        page.get_by_role("button", name=re.compile("^Delete")).click()
        page.wait_for_load_state()
        assert page.url == manage_url
        assert "Deleted “" in status_message(page)
        assert re.search(r"Deleted “[^”]+”\.", status_message(page))
        assert alert_rows(page).count() == 0
        undo = page.locator("div.messages").get_by_role("button", name=re.compile("^Undo"))
        assert undo.count() == 1
        check(page, "deleted", width)

        undo.click()
        page.wait_for_load_state()
        assert page.url == manage_url
        assert "Brought back “" in status_message(page)
        assert alert_rows(page).count() == 1
        assert page.locator("table.manage").get_by_role("link", name=QUERY, exact=True).count() == 1
        assert statuses(page) == ["On"]
        check(page, "brought-back", width)

    subscriber = Subscriber.objects.get(email=f"undo-{width}@example.org")
    assert subscriber.subscriptions.get().query == QUERY


@pytest.mark.parametrize("width", WIDTHS)
def test_unsubscribed_address_is_offered_a_link_to_turn_an_alert_on(live_server, live_archive, width):
    email = f"gone-{width}@example.org"
    with signed_up(live_server, width, email) as (page, manage_url, _):
        page.get_by_role("link", name="Unsubscribe from everything").click()
        page.wait_for_load_state()
        check(page, "unsubscribe", width)
        page.get_by_role("button", name="Unsubscribe from everything").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
        check(page, "unsubscribed", width)

        page.goto(manage_url)
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        notice = page.locator("#not-sending")
        assert "none of these alerts is sending" in notice.inner_text()
        assert statuses(page) == ["Not sending"]
        turn_on = page.get_by_role("button", name=re.compile("^Email me a link to turn this on"))
        assert turn_on.count() == 1
        # An unsubscribed address is not offered a bare Resume or Pause.
        assert page.get_by_role("button", name=re.compile("^(Resume|Pause)")).count() == 0
        check(page, "manage-unsubscribed", width)

        before = len(mail.outbox)
        turn_on.click()
        page.wait_for_load_state()
        assert page.url == manage_url
        assert f"We’ve emailed {email} a link to turn “" in status_message(page)
        # Still nothing sends until that link is confirmed.
        assert "On" not in statuses(page)
        check(page, "turn-on-emailed", width)

    sent = mail.outbox[before:]
    assert len(sent) == 1 and sent[0].to == [email]
    assert CONFIRM_LINK.search(sent[0].body)
    assert Subscriber.objects.get(email=email).suppressed_reason == "unsubscribed"


@pytest.mark.parametrize("width", WIDTHS)
def test_refused_search_on_the_edit_page_focuses_the_error_summary(live_server, live_archive, width):
    with signed_up(live_server, width, f"refused-{width}@example.org") as (page, manage_url, _):
        page.get_by_role("link", name=re.compile("^Edit")).click()
        page.wait_for_load_state()
        check(page, "edit", width)

        page.get_by_label("Search", exact=True).fill('"facial recognition')
        page.get_by_role("button", name="Save changes").click()
        page.wait_for_load_state()

        assert page.title().startswith("Error:")
        summary = page.locator(".error-summary")
        assert summary.count() == 1
        assert summary.get_by_role("heading", name="There is a problem").count() == 1
        assert "never closed" in summary.inner_text()
        focused = page.evaluate("document.activeElement.closest('.error-summary') !== null")
        assert focused, page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
        link = summary.get_by_role("link")
        assert link.count() == 1
        assert link.get_attribute("href") == "#id_q"
        field = page.get_by_label("Search", exact=True)
        assert field.get_attribute("id") == "id_q"
        assert field.input_value() == '"facial recognition'
        check(page, "edit-refused", width)

        # The summary's link takes the keyboard to the field.
        link.click()
        assert page.evaluate("document.activeElement.id") == "id_q"

    assert Subscriber.objects.get(email=f"refused-{width}@example.org").subscriptions.get().query == QUERY


@pytest.mark.parametrize("width", WIDTHS)
def test_used_confirmation_link_says_already_confirmed(live_server, live_archive, width):
    with signed_up(live_server, width, f"again-{width}@example.org") as (page, manage_url, confirm_url):
        page.goto(confirm_url)
        assert page.get_by_role("heading", level=1).inner_text() == "Already confirmed"
        assert page.title().startswith("Already confirmed")
        assert page.get_by_role("button", name="Confirm my alert").count() == 0
        check(page, "already-confirmed", width)

        page.get_by_role("button", name="Go to my alerts").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert "already confirmed" in status_message(page)
        check(page, "already-confirmed-manage", width)
