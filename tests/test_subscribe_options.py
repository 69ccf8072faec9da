"""The page of ways to subscribe: what it offers from a search and from a question, that each way lands on the
signup or follow form with a search the language accepts, and the links to it from the search and question pages."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail

from alerts.models import Subscriber
from questions.models import Question
from tests.conftest import (
    OBRIEN,
    OPPONG_ASARE,
    SPEAKERS_COMMITTEE,
    UNANSWERED,
    import_chosen,
    link_in,
    page,
    page_text,
    sign_up,
)

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture
def sample(tmp_path) -> list[dict]:
    return import_chosen(tmp_path)


def offered(response) -> dict[str, str]:
    """The ways the options page offers, as the text of each button and the address it goes to."""
    return {re.sub(r"\s+", " ", html.unescape(text)): html.unescape(href) for href, text in
            re.findall(r'<a class="button" href="([^"]+)">([^<]+)</a>', response.content.decode())}


def query_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["q"][0]


def count_shown(client, query: str) -> int:
    heading = re.search(r'<h2 id="results-heading" class="count">([^<]*)</h2>', page(client.get("/", {"q": query})))
    found = re.match(r"(\d+) questions? match", heading.group(1))
    assert found, heading.group(1)
    return int(found.group(1))


def test_a_question_offers_its_member_its_department_and_itself(client, sample):
    question = Question.objects.get(external_id=str(UNANSWERED))
    response = client.get("/alerts/ways/", {"question": question.pk})

    assert response.status_code == 200
    ways = offered(response)
    assert list(ways) == [f"Email me about {OBRIEN}", "Email me about the Department for Business and Trade",
                          "Email me when this is answered"]
    assert ways["Email me when this is answered"] == f"{question.get_absolute_url()}#follow-heading"
    member = query_of(ways[f"Email me about {OBRIEN}"])
    assert member == f'member:"{OBRIEN}" OR minister:"{OBRIEN}"'
    # The signup form it lands on holds that search, previewed, with no error.
    signup = client.get(ways[f"Email me about {OBRIEN}"])
    assert signup.status_code == 200 and signup.context["form"]["q"].value() == member


def test_an_mps_alert_finds_what_they_ask_and_what_they_answer(client, sample):
    asked = sum(line["asking_member"] == OPPONG_ASARE for line in sample)
    answered = sum(line["answering_member"] == OPPONG_ASARE for line in sample)
    assert asked and answered

    ways = offered(client.get("/alerts/ways/", {"member": OPPONG_ASARE}))

    query = query_of(ways[f"Email me about {OPPONG_ASARE}"])
    assert count_shown(client, query) == asked + answered


def test_a_name_with_an_apostrophe_makes_a_valid_search(client, sample):
    ways = offered(client.get("/alerts/ways/", {"member": OBRIEN, "department": SPEAKERS_COMMITTEE}))

    member = query_of(ways[f"Email me about {OBRIEN}"])
    department = query_of(ways[f"Email me about the {SPEAKERS_COMMITTEE}"])
    assert count_shown(client, member) == sum(line["asking_member"] == OBRIEN for line in sample)
    assert count_shown(client, department) == sum(line["department"] == SPEAKERS_COMMITTEE for line in sample)


def test_quote_marks_in_a_name_still_make_a_valid_search(client):
    ways = offered(client.get("/alerts/ways/", {"member": 'Dr “Rosie” "Allin-Khan'}))

    query = query_of(ways['Email me about Dr “Rosie” "Allin-Khan'])
    assert query == 'member:"Dr Rosie Allin-Khan" OR minister:"Dr Rosie Allin-Khan"'
    assert client.get("/alerts/new/", {"q": query}).context["form"].errors == {}


def test_a_name_that_makes_no_search_is_said_so(client):
    response = client.get("/alerts/ways/", {"member": '"'})

    assert offered(response) == {}
    assert "There is no search for that name" in page_text(response)


def test_an_answered_question_is_not_offered_to_follow(client, sample):
    answered = Question.objects.exclude(answer_text="").filter(answering_member_name=OPPONG_ASARE).first()

    ways = offered(client.get("/alerts/ways/", {"question": answered.pk}))

    assert "Email me when this is answered" not in ways
    assert f"Email me about {OPPONG_ASARE}" in ways


def test_a_search_is_offered_as_it_was_typed_and_a_refused_one_is_explained(client):
    ways = offered(client.get("/alerts/ways/", {"q": "prisons OR probation"}))
    assert query_of(ways["Email me about this search"]) == "prisons OR probation"

    refused = client.get("/alerts/ways/", {"q": '"unclosed'})
    assert "Email me about this search" not in offered(refused)
    assert "can’t be run, so there is no alert for it" in page_text(refused)


def test_the_home_search_and_question_pages_link_to_the_ways(client, sample):
    home = page(client.get("/"))
    assert "Alerts email you when new questions and answers match" in home
    assert 'href="/alerts/ways/"' in home

    results = page(client.get("/", {"q": "asylum"}))
    assert '<a href="/alerts/ways/?q=asylum">Get alerts…</a>' in results

    question = Question.objects.get(external_id=str(UNANSWERED))
    assert f'<a href="/alerts/ways/?question={question.pk}">Get alerts…</a>' in page(
        client.get(question.get_absolute_url()))


def test_a_way_signs_up_with_the_same_confirmation(client, sample):
    ways = offered(client.get("/alerts/ways/", {"department": SPEAKERS_COMMITTEE}))
    query = query_of(ways[f"Email me about the {SPEAKERS_COMMITTEE}"])

    assert sign_up(client, "ada@example.org", query).status_code == 302
    assert Subscriber.objects.get().subscriptions.get().confirmed_at is None
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))

    alert = Subscriber.objects.get().subscriptions.get()
    assert alert.query == query and alert.confirmed_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("question", ["²", "٣", "1" * 40])
def test_a_question_number_that_is_no_row_id_offers_no_question(client, question):
    response = client.get("/alerts/ways/", {"question": question})
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_member_whose_search_would_be_too_long_is_not_offered():
    from alerts.subscribing import member_query

    assert member_query("Neil O'Brien") == 'member:"Neil O\'Brien" OR minister:"Neil O\'Brien"'
    assert member_query("a" * 600) == ""
