"""The search page, question page and feeds, as a visitor gets them."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from functools import partial
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError

from questions import searching
from questions.models import CANARY_PREFIX, Question
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


@pytest.fixture
def over_the_years():
    """Questions from 2019 to 2025, two on each day that has any: "harbour" in all of them, "lantern" only in
    the two oldest years; and two without a date (PostgreSQL lists those first) and a canary, with both words.
    Stored in no order, so that ids do not follow dates."""
    questions = []
    for year in range(2019, 2026):
        for i in range(20 if year == 2019 else 8):
            questions.append(Question(
                external_id=f"years-{year}-{i}", heading=f"Harbour dues {year} {i}",
                question_text="harbour lights" + (" lantern" if year <= 2020 else ""),
                answer_text="An answer." if i % 4 else "", date_tabled=dt.date(year, 12 - i // 2, 15),
                house="Lords" if i % 3 == 0 else "Commons",
                answering_body_name="Home Office" if i % 2 else "Department for Transport"))
    for i in range(2):
        questions.append(Question(external_id=f"undated-{i}", heading="Harbour lantern", house="Commons",
                                  answering_body_name="Home Office", answer_text="An answer."))
    questions.append(Question(external_id=f"{CANARY_PREFIX}years", heading="Harbour lantern",
                              date_tabled=dt.date(2025, 12, 31)))
    random.Random(7).shuffle(questions)
    for question in questions:
        question.refresh_search_text()
    Question.objects.bulk_create(questions)


def out_of_time(walks: int | None):
    """`planner`, as if the first `walks` statements given a time limit (every one, for None) ran out of it."""
    real = searching.planner
    left = [walks]

    @contextmanager
    def planner(**settings):
        if "statement_timeout" in settings and left[0] != 0:
            if left[0] is not None:
                left[0] -= 1
            raise OperationalError("canceling statement due to statement timeout")
        with real(**settings):
            yield

    return planner


@pytest.mark.postgres
@pytest.mark.parametrize("walks", [2, None], ids=["the count and the page walk run out", "every walk runs out"])
@pytest.mark.parametrize("params", [
    {"q": "lantern"},
    {"q": "lantern", "page": "2"},
    {"q": "harbour"},
    {"q": "harbour", "page": "3"},
    {"q": "harbour", "page": "4"},
    {"q": "harbour", "house": "Lords"},
    {"q": "harbour", "department": "Home Office", "answered": "answered", "page": "2"},
    {"q": "lantern", "answered": "unanswered"},
    {"q": "harbour OR lantern", "tabled_from": "2020-09-01", "tabled_to": "2023-10-15", "page": "2"},
    {"q": "harbour -lantern", "page": "2"},
], ids=lambda params: " ".join(f"{k}={v}" for k, v in params.items()))
def test_a_page_gathered_year_by_year_is_the_page_of_the_search_newest_first(client, over_the_years, monkeypatch,
                                                                             params, walks):
    def page_of_search(response) -> tuple[list[int], int, int]:
        page = response.context["page"]
        return [q.pk for q in page], page.paginator.count, page.number

    with monkeypatch.context() as patch:
        patch.setattr(searching, "newest_first", lambda rows, start, stop, *_, **__: list(rows[start:stop]))
        expected = page_of_search(client.get("/", params))
    # A cap of 3 makes some years too full to read whole, so that they are walked instead.
    monkeypatch.setattr(searching, "YEAR_MATCHES_READ", 3)
    monkeypatch.setattr(searching, "planner", out_of_time(walks))
    calls = []
    for name in ("count_year_by_year", "year_by_year"):
        monkeypatch.setattr(searching, name, partial(lambda real, *args: calls.append(real.__name__) or real(*args),
                                                     getattr(searching, name)))

    assert page_of_search(client.get("/", params)) == expected
    assert calls == ["count_year_by_year", "year_by_year"] and expected[0]


@pytest.mark.postgres
@pytest.mark.parametrize("cap", [1, 7, 8, 9, 25, 69, 70])
@pytest.mark.parametrize("query", ["harbour", "lantern"])
def test_a_count_made_year_by_year_stops_at_the_cap_as_the_search_does(client, over_the_years, monkeypatch, query,
                                                                         cap):
    monkeypatch.setattr(searching.CappedPaginator, "cap", cap)
    with monkeypatch.context() as patch:
        patch.setattr(searching.CappedPaginator, "count", property(lambda self: self.object_list[: cap + 1].count()))
        expected = client.get("/", {"q": query}).context["page"].paginator.count
    monkeypatch.setattr(searching, "planner", out_of_time(1))

    assert client.get("/", {"q": query}).context["page"].paginator.count == expected


def own_time_limits(statements: list[str]) -> int:
    """How many statements ran under a time limit of their own, shorter than the request's whole budget (which
    every statement of a search runs within)."""
    limits = [int(ms) for sql in statements for ms in re.findall(r"statement_timeout = (\d+)", sql)]
    return sum(ms < 500 for ms in limits)


@pytest.mark.postgres
@pytest.mark.parametrize("page_number", ["1", "2"])
def test_a_search_with_no_more_matches_than_the_cap_sorts_their_keys_rather_than_walk_or_read_them_again(
        client, over_the_years, page_number):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from questions.search import parse

    rows = searching.matching(parse("lantern"))
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/", {"q": "lantern", "page": page_number}).context["page"]

    start = 20 * (int(page_number) - 1)
    assert ([q.pk for q in page], page.paginator.count) == ([q.pk for q in rows[start:start + 20]], rows.count())
    statements = [query["sql"] for query in queries.captured_queries]
    # A time limit for the count only (a word looked up in the word indexes is counted without asking for the
    # planner's estimate): no walk from the newest question was tried.
    assert own_time_limits(statements) == 1
    # The count read the matches' keys; the page's questions are then fetched by id, not all matches again.
    assert not any("COALESCE" in sql for sql in statements)
    assert any('"questions_question"."id" IN (' in sql for sql in statements)


def postgresql_expects(monkeypatch, matches: int) -> None:
    """PostgreSQL's estimates, as for an archive of a million questions of which `matches` match the search."""
    monkeypatch.setattr(searching, "estimated_rows", lambda rows: matches if rows.query.where else 1_000_000)


@pytest.mark.postgres
@pytest.mark.parametrize(("matches", "quick"), [(1, True), (4, True), (5, False), (799, False), (800, True)])
def test_a_plain_count_is_tried_when_postgresql_expects_few_or_dense_matches(monkeypatch, matches, quick):
    # Of 1,000,000 questions, with a cap of 3 and a dense scan of 5,000 rows: few is at most 4 (the cap and one),
    # dense is one in 1,250 or more.
    postgresql_expects(monkeypatch, matches)

    assert searching.counts_quickly(Question.objects.filter(heading="x"), 4) is quick


@pytest.mark.postgres
def test_a_search_whose_plan_takes_too_long_is_counted_year_by_year(monkeypatch):
    def out_of_time(rows):
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(searching, "estimated_rows", out_of_time)

    assert searching.counts_quickly(Question.objects.filter(heading="x"), 4) is False


@pytest.mark.postgres
def test_a_search_neither_rare_nor_common_goes_year_by_year_at_once_and_its_page_reads_no_year_twice(
        client, over_the_years, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from questions.search import parse

    # A word too common for the word indexes (else one capped read counts it): found through the trigram indexes.
    monkeypatch.setattr(searching, "common_words", lambda: frozenset({"lantern"}))
    rows = searching.matching(parse("lantern"))
    monkeypatch.setattr(searching.CappedPaginator, "cap", 3)
    # As if PostgreSQL expected "lantern" in 500 of a million questions: more than the cap, and too sparse for a
    # plain count to reach it soon.
    postgresql_expects(monkeypatch, 500)

    with CaptureQueriesContext(connection) as queries:
        page = client.get("/", {"q": "lantern"}).context["page"]

    assert ([q.pk for q in page], page.paginator.count) == ([q.pk for q in rows[:4]], 4)
    statements = [query["sql"] for query in queries.captured_queries]
    # Neither a plain count nor a walk from the newest question was tried and cut off: the estimate alone ran under
    # a time limit, and nothing was counted but by reading keys.
    assert own_time_limits(statements) == 1
    # Of the archive: without Redis the cache is a table of the database, which counts its own rows.
    assert not any("COUNT(" in sql and "questions_question" in sql for sql in statements)
    # "lantern" is only in 2019 and 2020 (and two undated questions): the count read the later years whole, and
    # the page did not read them again.
    assert set(page.paginator.whole_years) == {None, 2021, 2022, 2023, 2024, 2025}
    for year in range(2021, 2026):
        assert sum(f"date_tabled\") = {year}" in sql for sql in statements) == 1


def test_email_me_carries_the_house_and_department_filters_into_the_alert(client, archive):
    from urllib.parse import parse_qs, urlsplit

    from questions.search import parse

    response = client.get("/", {"q": "palantir OR taser", "house": "Commons", "department": "Home Office"})

    link = re.search(r'href="(/alerts/new/\?q=[^"]+)"', response.content.decode()).group(1)
    query = parse_qs(urlsplit(link.replace("&amp;", "&")).query)["q"][0]
    assert query == '(palantir OR taser) AND house:Commons AND department:"Home Office"'
    parse(query)


def test_a_question_without_a_heading_yet_is_named_by_its_uin_in_results_page_and_feed(client):
    # Headings often come with the answer: a quarter of the bundled real questions have none yet.
    question = Question(external_id="901293", uin="901293", house="Commons",
                        question_text="To ask the Secretary of State for Justice, how many prison places...")
    question.refresh_search_text()
    question.save()

    results = client.get("/", {"q": "prisons"}).content.decode()
    page = client.get(question.get_absolute_url()).content.decode()
    feed = client.get("/feeds/search.rss", {"q": "prisons"}).content.decode()

    assert f'<a href="{question.get_absolute_url()}">Written question 901293</a>' in results
    assert '<h1 id="question-heading">Written question 901293</h1>' in page
    assert "<title>Written question 901293</title>" in feed
