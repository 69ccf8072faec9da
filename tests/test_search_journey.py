"""The edges of a search: no matches, filters an alert can and cannot carry, and the searches a visitor
more likely meant. What the visitor sees, in the page and in a browser."""

from __future__ import annotations

import html as htmllib
import re
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command

from questions.search import parse
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

DATES_NOTE = "The dates and the answered filter apply to this page only"


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), str(FIXTURES / "list_page_excerpt.json"),
                 stdout=StringIO())


def page(client, **params) -> str:
    response = client.get("/", params)
    assert response.status_code == 200
    return response.content.decode()


def heading(html: str) -> str:
    return htmllib.unescape(re.search(r'<h2 id="results-heading"[^>]*>(.*?)</h2>', html, re.S).group(1))


def link_query(href: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(htmllib.unescape(href)).query).items()}


def email_me(html: str) -> str | None:
    """The search the "Email me" button hands to the alert form, or None without the button."""
    found = re.search(r'<a class="button" href="(/alerts/new/\?[^"]*)"[^>]*>Email me when (?:new questions match '
                      r"this search|questions of this search go overdue)</a>", html)
    return link_query(found.group(1))["q"] if found else None


def suggestion(html: str, text: str) -> dict[str, str]:
    """The parameters of the "Did you mean" link whose text is `text`."""
    link_text = re.escape(htmllib.escape(text, quote=False))
    found = re.search(r'Did you mean <a href="([^"]+)">(?:<code>)?' + link_text, html)
    assert found, f"no suggestion of {text!r}"
    assert urlsplit(htmllib.unescape(found.group(1))).path == "/"
    return link_query(found.group(1))


def search_box(html: str) -> str:
    return htmllib.unescape(re.search(r'<input type="search" name="q"[^>]* value="([^"]*)"', html).group(1))


def test_a_word_nobody_has_used_says_so_and_offers_an_alert(client, archive):
    html = page(client, q="Palantri")

    assert heading(html) == "No questions match “Palantri”"
    assert "Check the spelling, or try fewer words" in html
    assert "an alert will tell you when someone does" in html
    assert email_me(html) == "Palantri"
    assert DATES_NOTE not in html
    assert '<ol class="results">' not in html


def test_commas_get_the_or_search_suggested_and_what_was_typed_stays(client, archive):
    html = page(client, q="police, prisons")

    assert heading(html) == "No questions match “police, prisons”"
    assert suggestion(html, "police OR prisons") == {"q": "police OR prisons"}
    assert "Commas don’t separate topics" in html
    assert search_box(html) == "police, prisons"
    assert email_me(html) == "police, prisons"
    followed = page(client, q="police OR prisons")
    assert re.fullmatch(r"\d+ questions match", heading(followed))


def test_a_members_name_typed_as_words_finds_their_questions_and_suggests_the_member_search(client, archive):
    html = page(client, q="Clive Lewis")

    # A name in a plain search looks at who asked (query language v2); the suggestion narrows it to that.
    assert heading(html) == "10 questions match"
    assert suggestion(html, "questions asked by Clive Lewis") == {"q": 'member:"Clive Lewis"'}
    assert search_box(html) == "Clive Lewis"
    assert email_me(html) == "Clive Lewis"
    assert heading(page(client, q='member:"Clive Lewis"')) == "10 questions match"


def test_a_name_in_any_case_or_in_quotes_is_recognised(client, archive):
    assert suggestion(page(client, q="clive  LEWIS"), "questions asked by Clive Lewis") == {"q": 'member:"Clive Lewis"'}
    assert suggestion(page(client, q='"Clive Lewis"'), "questions asked by Clive Lewis")


def test_a_department_typed_as_words_gets_the_department_search_suggested_keeping_the_filters(client, archive):
    html = page(client, q="home office", house="Commons", answered="answered")

    assert suggestion(html, "questions to the Home Office") == {
        "q": 'department:"Home Office"', "house": "Commons", "answered": "answered"}
    assert search_box(html) == "home office"


def test_a_suggestion_keeps_the_filters_of_the_page(client, archive):
    html = page(client, q="Clive Lewis", tabled_from="2025-01-01")

    assert suggestion(html, "questions asked by Clive Lewis") == {
        "q": 'member:"Clive Lewis"', "tabled_from": "2025-01-01"}


def test_an_ordinary_search_suggests_nothing(client, archive):
    html = page(client, q="police")

    assert "Did you mean" not in html
    assert "No questions match" not in html


def test_words_and_a_department_with_no_questions_yet(client, archive):
    html = page(client, q="police", department="Department for Education")

    assert heading(html) == "No questions match “police” with these filters"
    assert "or fewer filters" in html
    assert '<option value="Department for Education" selected>Department for Education</option>' in html
    query = email_me(html)
    assert query == '(police) AND department:"Department for Education"'
    parse(query)
    assert DATES_NOTE not in html


def test_the_named_day_and_timing_filters_are_carried_into_the_alert(client, archive):
    for filters, carried, alert_on in (({"timing": "overdue"}, "due:overdue", "overdue"),
                                       ({"timing": "late"}, "due:late", None),
                                       ({"named_day": "on", "timing": "overdue"}, "due:named AND due:overdue",
                                        "overdue")):
        html = page(client, q="police", department="Department for Education", **filters)

        assert email_me(html) == f'(police) AND department:"Department for Education" AND {carried}'
        href = re.search(r'<a class="button" href="(/alerts/new/\?[^"]*)"', html).group(1)
        assert link_query(href).get("alert_on") == alert_on
        assert ("go overdue</a>" in html) == (alert_on == "overdue")
        assert DATES_NOTE not in html


def test_dates_and_answered_are_said_to_stay_on_the_page(client, archive):
    for filters in ({"tabled_from": "2024-01-01"}, {"tabled_to": "2024-12-31"}, {"answered": "unanswered"},
                    {"due_from": "2024-01-01"}, {"due_to": "2024-12-31"}):
        html = page(client, q="police", department="Department for Education", **filters)

        assert email_me(html) == '(police) AND department:"Department for Education"'
        assert (f'<p class="tips" id="alert-note">{DATES_NOTE}: an alert tells you about new questions and answers '
                "as they come.</p>") in html
        assert 'aria-describedby="alert-note">Email me' in html


def test_house_is_carried_into_the_alert_of_an_empty_search(client, archive):
    html = page(client, q="Palantri", house="Lords")

    assert heading(html) == "No questions match “Palantri” with these filters"
    assert email_me(html) == "(Palantri) AND house:Lords"


def test_a_department_alone_is_a_search_with_its_own_alert(client, archive):
    empty = page(client, department="Department for Education")
    found = page(client, department="Home Office")

    assert heading(empty) == "No questions match these filters"
    assert "Try fewer filters." in empty
    assert email_me(empty) == 'department:"Department for Education"'
    assert re.fullmatch(r"\d+ questions? match(es)?", heading(found))
    assert email_me(found) == 'department:"Home Office"'
    parse(email_me(found))


def test_filters_an_alert_cannot_carry_alone_offer_no_alert(client, archive):
    html = page(client, answered="unanswered", tabled_from="2030-01-01")

    assert heading(html) == "No questions match these filters"
    assert email_me(html) is None


def test_the_front_page_lists_the_latest_questions_without_an_alert(client, archive):
    html = page(client)

    assert heading(html) == "Latest questions"
    assert email_me(html) is None and "Did you mean" not in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 375])
def test_an_empty_search_leads_to_an_alert_in_a_browser(live_server, archive, width):
    from tests.browser import axe_violations, browser_page, screenshot

    with browser_page() as browser:
        browser.set_viewport_size({"width": width, "height": 900})
        browser.goto(live_server.url + "/")
        browser.get_by_label("Search written questions").fill("Palantri")
        browser.get_by_role("button", name="Search").click()
        browser.wait_for_load_state()

        assert browser.get_by_role("heading", level=2, name="No questions match").inner_text() == (
            "No questions match “Palantri”")
        screenshot(browser, f"search-no-matches-{width}")
        assert axe_violations(browser) == []
        assert browser.evaluate("document.documentElement.scrollWidth") <= width

        browser.get_by_role("link", name="Email me when new questions match this search").click()
        browser.wait_for_load_state()
        assert browser.get_by_role("heading", level=1).inner_text() == "Email me when new questions match this search"
        assert browser.get_by_label("Search", exact=True).input_value() == "Palantri"

        # An empty search with a suggestion and the note on what an alert leaves out.
        browser.goto(live_server.url + "/?q=Clive+Lewis&tabled_from=2025-01-01")
        assert browser.get_by_role("link", name="questions asked by Clive Lewis").is_visible()
        assert "apply to this page only" in browser.locator("#alert-note").inner_text()
        assert axe_violations(browser) == []
        assert browser.evaluate("document.documentElement.scrollWidth") <= width
