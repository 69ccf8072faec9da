"""How an address's news is put into emails: one email for all its alerts or one per alert, each question once
per email, and the labels of what became of a followed question."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from alerts.models import Delivery, Subscriber
from questions.models import QuestionEvent
from tests.conftest import deliver, html_part, words
from tests.factories import TODAY, answered, follow_question, holding, land, pairs, record, subscribe, withdrawn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_percolators")]

TASERS = "Police: Tasers"
LIAISON = "Schools: Police Liaison Officers"
HEATING = "Schools: Heating"


@pytest.fixture(autouse=True)
def _send_only_when_asked(monkeypatch):
    # The sender runs when the test calls send_due, not when a delivery is committed.
    monkeypatch.setattr("alerts.delivery.kick", lambda count=1: None)




def three_questions() -> None:
    """One question about police, one about schools, and one about both, tabled a day apart."""
    for number, (heading, text) in enumerate([
        (TASERS, "what assessment has been made of the use of tasers by police officers."),
        (LIAISON, "how many police liaison officers are based in schools."),
        (HEATING, "what funding is available to replace school boilers."),
    ]):
        land(record(f"wq-{number}", heading=heading, question_text=f"To ask the Secretary of State, {text}",
                    date_tabled=TODAY - dt.timedelta(days=3 - number)))


def sections_html(message) -> dict[str, list[str]]:
    """Each section of the HTML part (its heading) and the questions listed in it, in order."""
    found: dict[str, list[str]] = {}
    body = html_part(message)
    parts = re.split(r"<h1[^>]*>(.*?)</h1>", body, flags=re.S)
    for heading, content in zip(parts[1::2], parts[2::2], strict=True):
        found[words(heading)] = [words(h) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", content, re.S)]
    return found


def also_html(message) -> dict[str, str]:
    """Question heading -> the "Also matches" line under it, in the HTML part."""
    found = {}
    for item in re.split(r'(?=<div style="border-top)', html_part(message))[1:]:
        heading = words(re.search(r"<h2[^>]*>(.*?)</h2>", item, re.S).group(1))
        line = re.search(r"<p[^>]*>(Also matches:.*?)</p>", item, re.S)
        if line:
            found[heading] = words(line.group(1))
    return found


def sections_text(message, names: list[str]) -> dict[str, list[str]]:
    """The same from the text part: the sections named `names`, and their "[label] heading" lines."""
    found: dict[str, list[str]] = {}
    current = None
    for line in message.body.splitlines():
        if line in names or any(line.startswith(f"{name} (search: ") for name in names):
            current = found.setdefault(line.split(" (search: ")[0], [])
        elif current is not None and (line.startswith("[") or line.startswith("Also matches:")):
            current.append(line)
    return found


def alerts_of_ada(*, grouping: str = Subscriber.Grouping.COMBINED):
    policing = subscribe("ada@example.org", "police", label="Policing")
    schools = subscribe("ada@example.org", "schools", label="Schools")
    Subscriber.objects.filter(email="ada@example.org").update(email_grouping=grouping)
    return policing, schools


def test_combined_sends_one_email_with_a_section_per_alert_and_each_question_once():
    alerts_of_ada()
    three_questions()

    [email] = deliver()

    assert email.to == ["ada@example.org"]
    assert email.subject == "3 new questions match 2 of your alerts"
    assert sections_html(email) == {"Policing": [LIAISON, TASERS], "Schools": [HEATING]}
    assert also_html(email) == {LIAISON: "Also matches: Schools"}
    assert sections_text(email, ["Policing", "Schools"]) == {
        "Policing": [f"[New question] {LIAISON}", "Also matches: Schools", f"[New question] {TASERS}"],
        "Schools": [f"[New question] {HEATING}"],
    }
    [delivery] = Delivery.objects.filter(kind="immediate")
    carried = pairs(delivery.matches.all())
    assert delivery.subscription is None and len(set(carried)) == len(carried) == 4


def test_separate_sends_one_email_per_alert_each_with_only_its_own_questions():
    policing, schools = alerts_of_ada(grouping=Subscriber.Grouping.SEPARATE)
    subscribe("bo@example.org", "police")
    subscribe("bo@example.org", "schools")
    three_questions()

    sent = deliver()

    to_ada = sorted((m for m in sent if m.to == ["ada@example.org"]), key=lambda m: m.subject)
    assert [m.subject for m in to_ada] == ["2 new questions match ‘Policing’", "2 new questions match ‘Schools’"]
    about_police, about_schools = to_ada
    assert sections_html(about_police) == {"Policing": [LIAISON, TASERS]}
    assert sections_html(about_schools) == {"Schools": [HEATING, LIAISON]}
    for email in to_ada:
        assert "Also matches" not in email.body and "Also matches" not in html_part(email)
    assert HEATING not in about_police.body and TASERS not in about_schools.body
    assert sections_text(about_schools, ["Schools"]) == {
        "Schools": [f"[New question] {HEATING}", f"[New question] {LIAISON}"]}
    by_alert = dict(Delivery.objects.filter(subscriber__email="ada@example.org").values_list("subscription", "subject"))
    assert by_alert == {policing.pk: "2 new questions match ‘Policing’", schools.pk: "2 new questions match ‘Schools’"}
    # Bo, who kept the default, gets the same news in one email.
    [to_bo] = [m for m in sent if m.to == ["bo@example.org"]]
    assert to_bo.subject == "3 new questions match 2 of your alerts"
    assert len(sent) == 3


def test_a_question_matching_several_alerts_is_listed_once_under_the_first_naming_the_others():
    # Created first, so listed first, though its name sorts last.
    subscribe("ada@example.org", "liaison", label="Youth work")
    subscribe("ada@example.org", "police", label="Policing")
    subscribe("ada@example.org", "schools", label="Education")
    land(record("wq-1", heading=LIAISON, question_text="To ask the Secretary of State, how many police liaison "
                                                       "officers are based in schools."))

    [email] = deliver()

    assert email.subject == f"New question: {LIAISON} – 3 of your alerts"
    assert sections_html(email) == {"Youth work": [LIAISON]}
    assert also_html(email) == {LIAISON: "Also matches: Policing, Education"}
    assert sections_text(email, ["Youth work", "Policing", "Education"]) == {
        "Youth work": [f"[New question] {LIAISON}", "Also matches: Policing, Education"]}
    assert words(html_part(email)).count(LIAISON) == 1
    assert email.body.count(LIAISON) == 1
    matched = pairs()
    assert len(set(matched)) == len(matched) == 3


def test_a_follow_and_a_search_of_the_same_answered_question_share_one_email():
    question = land(record(heading=HEATING))
    follow = follow_question("ada@example.org", question)
    subscribe("ada@example.org", "boilers", label="Boilers")
    QuestionEvent.objects.update(matched_at=dt.datetime.now(dt.UTC))

    land(answered(record(heading=HEATING)))
    [email] = deliver()

    assert email.subject == f"New answer: {HEATING} – 2 of your alerts"
    assert sections_html(email) == {"The question you follow": [HEATING]}
    assert also_html(email) == {HEATING: "Also matches: Boilers"}
    shown = words(html_part(email))
    assert shown.count(HEATING) == 1
    assert "Answered Schools: Heating" in shown and "We have given schools £50 million" in shown
    assert "Stop following this question" in shown and "Stop this alert" not in shown
    assert sections_text(email, ["The question you follow", "Boilers"]) == {
        "The question you follow": [f"[Answered] {HEATING}", "Also matches: Boilers"]}
    answer = QuestionEvent.objects.get(kind="answered")
    assert pairs(follow.matches.all()) == [(follow.pk, answer.pk)]
    assert [event for _, event in pairs()] == [answer.pk, answer.pk]


def test_a_search_saved_before_a_follow_lists_the_answer_once_under_the_search():
    question = land(record(heading=HEATING))
    subscribe("ada@example.org", "boilers", label="Boilers")
    follow_question("ada@example.org", question)
    QuestionEvent.objects.update(matched_at=dt.datetime.now(dt.UTC))

    land(answered(record(heading=HEATING)))
    [email] = deliver()

    assert email.subject == f"New answer: {HEATING} – 2 of your alerts"
    assert sections_html(email) == {"Boilers": [HEATING]}
    assert words(html_part(email)).count("We have given schools £50 million") == 1
    assert list(also_html(email)) == [HEATING]
    assert "[Answered] Schools: Heating" in email.body


def test_a_holding_answer_is_labelled_holding_answer_and_the_real_answer_is_news_again():
    question = land(record(heading=HEATING))
    follow_question("ada@example.org", question)
    subscribe("bo@example.org", "boilers", alert_on="answers")
    QuestionEvent.objects.update(matched_at=dt.datetime.now(dt.UTC))

    land(holding(record(heading=HEATING)))
    held = {m.to[0]: m for m in deliver()}

    assert set(held) == {"ada@example.org", "bo@example.org"}
    assert held["ada@example.org"].subject == f"Holding answer: “{HEATING}”"
    assert held["bo@example.org"].subject == f"Holding answer: {HEATING} – ‘boilers’"
    for email in held.values():
        assert f"Holding answer {HEATING}" in words(html_part(email))
        assert f"[Holding answer] {HEATING}" in email.body
        assert "I will reply to the honourable member as soon as possible." in email.body
        assert "[Answered]" not in email.body

    land(answered(record(heading=HEATING)))
    final = {m.to[0]: m for m in deliver()}

    assert final["ada@example.org"].subject == f"Answered: “{HEATING}”"
    assert final["bo@example.org"].subject == f"New answer: {HEATING} – ‘boilers’"
    assert f"[Answered] {HEATING}" in final["ada@example.org"].body
    assert "We have given schools £50 million" in words(html_part(final["ada@example.org"]))
    assert set(final) == {"ada@example.org", "bo@example.org"}


def test_a_withdrawn_followed_question_is_labelled_withdrawn_and_its_search_subscribers_hear_nothing():
    question = land(record(heading=HEATING))
    follow = follow_question("ada@example.org", question)
    search = subscribe("bo@example.org", "boilers")

    tabled = deliver()
    assert [m.to for m in tabled] == [["bo@example.org"]]  # the new question, to the search only

    land(withdrawn(record(heading=HEATING)))
    [email] = deliver()

    assert email.to == ["ada@example.org"]
    assert email.subject == f"Withdrawn: “{HEATING}”"
    assert f"Withdrawn {HEATING}" in words(html_part(email))
    assert f"[Withdrawn] {HEATING}" in email.body
    withdrawal = QuestionEvent.objects.get(kind="withdrawn")
    assert withdrawal.matched_at is not None
    assert [alert for alert, event in pairs() if event == withdrawal.pk] == [follow.pk]
    assert (search.pk, withdrawal.pk) not in pairs()


@pytest.mark.browser
def test_the_combined_email_with_also_matches_reads_well_on_a_phone():
    from tests.browser import axe_violations, browser_page, screenshot

    alerts_of_ada()
    three_questions()
    land(answered(record("wq-1", heading=LIAISON, question_text="To ask the Secretary of State, how many police "
                                                                "liaison officers are based in schools.",
                         date_tabled=TODAY - dt.timedelta(days=2))))
    [email] = deliver()
    assert "Also matches: Schools" in words(html_part(email))

    with browser_page() as page:
        page.set_viewport_size({"width": 375, "height": 800})
        page.set_content(html_part(email))
        screenshot(page, "email-combined-also-matches-375")
        assert page.get_by_role("heading", level=1, name="Policing").count() == 1
        assert page.get_by_role("heading", level=1, name="Schools").count() == 1
        assert page.get_by_text("Also matches: Schools").is_visible()
        assert page.get_by_role("heading", level=2, name=LIAISON).count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert axe_violations(page) == []


def test_changing_the_grouping_applies_to_the_next_email():
    alerts_of_ada()
    three_questions()
    [combined] = deliver()
    assert combined.subject == "3 new questions match 2 of your alerts"

    Subscriber.objects.filter(email="ada@example.org").update(email_grouping=Subscriber.Grouping.SEPARATE)
    land(dataclasses.replace(record("wq-9", heading="Schools: Police Visits"),
                             question_text="To ask the Secretary of State, how often police visit schools."))
    separate = deliver()

    assert sorted(m.subject for m in separate) == ["New question: Schools: Police Visits – ‘Policing’",
                                                   "New question: Schools: Police Visits – ‘Schools’"]
