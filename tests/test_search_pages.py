"""The search page, question page and feeds, as a visitor gets them."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from io import StringIO

import pytest
from django.core.management import call_command

from questions.models import Question
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), str(FIXTURES / "list_page_excerpt.json"),
                 stdout=StringIO())


def result_headings(response) -> list[str]:
    return [q.heading for q in response.context["page"]]


def test_a_phrase_search_lists_matches_newest_first_with_words_highlighted(client, archive):
    response = client.get("/", {"q": '"facial recognition"'})

    assert response.status_code == 200
    page = response.context["page"]
    assert page.paginator.count == 5
    dates = [q.date_tabled for q in page]
    assert dates == sorted(dates, reverse=True)
    html = response.content.decode()
    assert "<mark>facial recognition</mark>" in html
    assert "Asked by:</span> Clive Lewis (Labour - Norwich South)" in html
    assert "Question to the</span> Home Office" in html
    assert "Answered by</span> Diana Johnson - Minister of State (Home Office)" in html
    assert "Tuesday 24th June 2025" in html
    assert "Read the full answer" in html


def test_the_page_shows_the_search_tips_and_a_link_to_help(client):
    html = client.get("/").content.decode()

    assert ('To match an exact phrase, use quotation marks around the search term, e.g. "Parliamentary Estate". '
            "Use OR or AND as link words to form more complex queries.") in html
    assert 'href="/help/"' in html
    assert client.get("/help/").status_code == 200


@pytest.mark.parametrize(
    "query, message, marked",
    [
        ('"facial recognition', "The quote you opened at character 1 is never closed", "<mark>&quot;</mark>"),
        ("police AND", "nothing after it", None),
        ("NOT police", "no words at all", None),
        ("po*", "at least 3", None),
    ],
)
def test_a_refused_query_says_what_is_wrong_and_where(client, archive, query, message, marked):
    response = client.get("/", {"q": query})

    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'aria-invalid="true"' in html and 'role="alert"' in html
    if marked:
        assert marked in html
    assert response.context["page"] is None


def test_filters_narrow_the_results(client, archive):
    everything = client.get("/", {"q": "secretary"}).context["page"].paginator.count
    home_office = client.get("/", {"q": "secretary", "department": "Home Office"})
    defra = client.get("/", {"q": "secretary", "department": "Department for Environment, Food and Rural Affairs"})
    lords = client.get("/", {"q": "secretary", "house": "Lords"})
    unanswered = client.get("/", {"q": "secretary", "answered": "unanswered"})
    in_2024 = client.get("/", {"q": "secretary", "tabled_from": "2024-01-01", "tabled_to": "2024-12-31"})

    assert everything == 14
    assert {q.answering_body_name for q in home_office.context["page"]} == {"Home Office"}
    assert defra.context["page"].paginator.count == 4
    assert lords.context["page"].paginator.count == 0
    assert unanswered.context["page"].paginator.count == 0
    assert {q.date_tabled.year for q in in_2024.context["page"]} == {2024}


def test_the_department_filter_lists_the_departments_of_the_archive(client, archive):
    options = dict(client.get("/").context["form"].fields["department"].choices)

    assert "Home Office" in options and "Department for Environment, Food and Rural Affairs" in options


def test_results_are_paginated(client, archive):
    for i in range(25):
        Question.objects.create(external_id=f"extra-{i}", heading=f"Tunnels {i}", question_text="tunnels",
                                date_tabled=dt.date(2025, 1, 1) + dt.timedelta(days=i)).refresh_search_text()
    for q in Question.objects.filter(external_id__startswith="extra-"):
        q.refresh_search_text()
        q.save()

    first = client.get("/", {"q": "tunnels"})
    second = client.get("/", {"q": "tunnels", "page": 2})

    assert first.context["page"].paginator.count == 25
    assert len(first.context["page"]) == 20 and len(second.context["page"]) == 5
    assert 'rel="next"' in first.content.decode()


def test_every_search_has_rss_and_atom_feeds_linked_from_the_page(client, archive):
    html = client.get("/", {"q": "police"}).content.decode()
    assert 'rel="alternate" type="application/rss+xml"' in html
    assert 'rel="alternate" type="application/atom+xml"' in html

    rss = client.get("/feeds/search.rss", {"q": "police"})
    atom = client.get("/feeds/search.atom", {"q": "police"})

    assert rss.status_code == 200 and atom.status_code == 200
    rss_titles = [e.text for e in ET.fromstring(rss.content).iter("item/title")] or [
        e.findtext("title") for e in ET.fromstring(rss.content).iter("item")]
    atom_titles = [e.findtext("{http://www.w3.org/2005/Atom}title")
                   for e in ET.fromstring(atom.content).iter("{http://www.w3.org/2005/Atom}entry")]
    page_titles = result_headings(client.get("/", {"q": "police"}))
    assert rss_titles == atom_titles == page_titles[: len(rss_titles)]
    assert len(rss_titles) == min(50, len(page_titles)) > 0


def test_a_feed_of_a_refused_query_says_why(client):
    response = client.get("/feeds/search.rss", {"q": "(police"})

    assert response.status_code == 400
    assert "bracket" in response.content.decode()


def test_the_question_page_shows_one_question_in_full(client, archive):
    response = client.get("/questions/seed-1/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1 id=\"question-heading\">Police: Artificial Intelligence</h1>" in html
    assert "forthcoming White Paper on policing" in html
    assert client.get("/questions/1679703/").status_code == 200
    assert client.get("/questions/no-such-question/").status_code == 404


def test_stored_html_is_rendered_sanitised(client):
    record = json.loads((FIXTURES / "question_detail.json").read_text())["value"]
    record.update(id=42, answerText='<p>Fine.<script>alert(1)</script><img src=x onerror="alert(2)"></p>'
                                    '<a href="javascript:alert(3)">x</a>')
    from questions.ingest import upsert
    from questions.sources.parliament import record_from_api

    upsert([record_from_api(record)])

    html = client.get("/questions/42/").content.decode()
    assert "<script>alert" not in html and "onerror" not in html and "javascript:alert" not in html
    assert "Fine." in html


def test_a_very_common_search_says_more_than_the_cap(client, archive, monkeypatch):
    from questions.searching import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 3)

    response = client.get("/", {"q": "secretary"})

    assert "More than 3 questions match" in response.content.decode()
    assert response.context["page"].paginator.num_pages == 1  # 4 counted, 20 a page


@pytest.mark.postgres
def test_the_fallback_for_a_slow_newest_first_walk_gives_the_same_pages(archive):
    from questions.search import parse
    from questions.searching import collect_then_sort, matching

    questions = matching(parse("secretary OR police"))
    for start, stop in ((0, 5), (5, 10), (10, 20), (3, 4)):
        page = questions[start:stop]
        assert [q.pk for q in collect_then_sort(questions, start, stop)] == [q.pk for q in page]


def test_email_me_carries_the_house_and_department_filters_into_the_alert(client, archive):
    from urllib.parse import parse_qs, urlsplit

    from questions.search import parse

    response = client.get("/", {"q": "palantir OR taser", "house": "Commons", "department": "Home Office"})

    link = re.search(r'href="(/alerts/new/\?q=[^"]+)"', response.content.decode()).group(1)
    query = parse_qs(urlsplit(link.replace("&amp;", "&")).query)["q"][0]
    assert query == '(palantir OR taser) AND house:Commons AND department:"Home Office"'
    parse(query)
