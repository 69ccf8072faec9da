"""A poll records each cause of trouble once, saying how many items it hit and naming some: a hostile source
that fails a thousand items the same way gives the operator one line to read, not a thousand, while the counts
of items skipped stay counts of items. Sources are real local HTTP servers."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from werkzeug.wrappers import Response

from questions.models import Question, Source, SourceProblem
from questions.polling import poll_source
from tests.conftest import RSS, TOKEN, api_client, samples, value
from tests.factories import TODAY, real_record, stamp
from tests.parliament_stub import LIST_PATH

pytestmark = pytest.mark.django_db

FIRST_ID = 3_000_001


@pytest.fixture
def endless(httpserver, settings):
    """An API whose every list page holds one new question and claims a billion more, none of which has a
    detail record: 50 pages for each of the three date filters, then 150 detail pages answering 404."""
    settings.PARLIAMENT_API_MAX_PAGES, settings.PARLIAMENT_API_OVERLAP_DAYS = 50, 0
    served = iter(range(FIRST_ID, 10**9))

    def page(request):
        value_ = real_record(1000) | {"id": next(served)}
        return Response(json.dumps({"totalResults": 10**9, "results": [{"value": value_}]}),
                        content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(page)
    httpserver.expect_request(re.compile(rf"^{LIST_PATH}/\d+$")).respond_with_json({"title": "Not Found"},
                                                                                   status=404)
    return Source.objects.create(name=f"Endless {uuid.uuid4().hex[:8]}", kind=Source.Kind.PARLIAMENT_API,
                                 url=httpserver.url_for("/"), cursor=TODAY)


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return samples(response.content.decode())


def test_an_api_with_endless_pages_is_two_problems_not_153(endless, httpserver, client, admin_client, settings,
                                                           caplog):
    settings.METRICS_TOKEN = TOKEN
    before = value(scrape(client), "wqa_source_items_refused_total", source=endless.name) or 0

    report = poll_source(endless, api_client())

    assert report.error == ""
    assert str(report) == (f"{endless.name}: nothing new; 150 item(s) skipped; 2 problem(s), see the source's "
                           f"problems")
    problems = {p.record_id: p.message for p in SourceProblem.objects.filter(source=endless)}
    assert len(problems) == 2
    day = TODAY.isoformat()
    assert problems[""] == (f"more than 50 pages for tabled on {day}: the listing of that day stopped there "
                            f"(and 2 more like it: answered on {day}, corrected on {day})")
    named = ", ".join(str(FIRST_ID + n) for n in range(1, 21))
    assert problems[str(FIRST_ID)] == (f"{httpserver.url_for('/')}{LIST_PATH[1:]}/{FIRST_ID}: HTTP 404 "
                                       f"(and 149 more like it: ids {named}, …)")
    # None of the 150 is lost from sight: the log names every one.
    logged = [r.ids for r in caplog.records if r.getMessage() == "items with one cause" and r.items == 150]
    assert logged == [[str(FIRST_ID + n) for n in range(150)]]
    # The counter of items a source sent that could not be used still counts each of them.
    after = value(scrape(client), "wqa_source_items_refused_total", source=endless.name)
    assert after - before == 150
    page = admin_client.get(f"/admin/questions/source/{endless.pk}/change/").content.decode()
    assert "All 2 problems" in page and "and 149 more like it" in page


def test_the_next_poll_says_its_causes_again_once_each(endless):
    poll_source(endless, api_client())

    second = poll_source(endless, api_client())

    assert (second.problems, second.items_skipped) == (2, 150)
    messages = list(SourceProblem.objects.filter(source=endless).values_list("message", flat=True))
    assert len(messages) == 4
    assert sum("HTTP 404 (and 149 more like it: ids " in m for m in messages) == 2


def test_one_bad_record_among_good_ones_costs_that_record_and_each_cause_is_one_problem(stub, source):
    stub.put(real_record(1000))
    stub.put(real_record(1001, dateTabled=stamp(TODAY), dateForAnswer="next Tuesday"))
    stub.put(real_record(1002))
    stub.put(real_record(1003, dateTabled=stamp(TODAY), dateForAnswer="soon"))
    stub.put(real_record(1004))
    stub.detail_failures[1004] = 99

    report = poll_source(source, api_client())

    assert report.error == ""
    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["1000", "1002"]
    problems = {p.record_id: p.message for p in SourceProblem.objects.filter(source=source)}
    assert problems == {
        "1001": "dateForAnswer is not a date in the form YYYY-MM-DD: 'next Tuesday' (and 1 more like it: ids 1003)",
        "1004": f"{source.url}{LIST_PATH[1:]}/1004: HTTP 500 (gave up after 3 attempts)",
    }
    assert (report.problems, report.items_skipped) == (2, 3)
    assert "3 item(s) skipped; 2 problem(s)" in str(report)


def test_a_feed_with_two_kinds_of_fault_has_two_problems_and_a_repaired_entry_is_not_skipped(httpserver):
    nameless = "<item><title>Nameless {n}</title><description>no id</description></item>"
    broken = RSS.replace("<item>", "".join(nameless.format(n=n) for n in range(3)) + "<item>", 1)
    broken = broken.replace("Police: Artificial Intelligence", "Police: &#xD800; Intelligence")
    httpserver.expect_request("/feed").respond_with_data(broken, content_type="application/rss+xml")
    source = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))

    report = poll_source(source, api_client())

    assert Question.objects.count() == 2
    problems = {p.record_id: p.message for p in SourceProblem.objects.filter(source=source)}
    assert len(problems) == 2
    assert problems["Nameless 0"] == ("the entry has neither a guid nor a link "
                                      "(and 2 more like it: ids Nameless 1, Nameless 2)")
    [repaired] = [m for m in problems.values() if "U+FFFD" in m]
    assert repaired == "a character reference to no character in its title: replaced with U+FFFD; the entry was stored"
    # Three entries were left out; the repaired one was stored.
    assert (report.problems, report.items_skipped) == (2, 3)


def test_thousands_of_bad_entries_with_huge_titles_make_one_short_problem(httpserver):
    long_title = "x" * 5000
    items = "".join(f"<item><title>{n} {long_title}</title></item>" for n in range(2000))
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    httpserver.expect_request("/feed").respond_with_data(feed, content_type="application/rss+xml")
    source = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))

    report = poll_source(source, api_client())

    problem = SourceProblem.objects.get(source=source)
    assert problem.message.startswith("the entry has neither a guid nor a link (and 1999 more like it: ids 1 xxx")
    assert problem.message.endswith(", …)") and len(problem.message) < 2500
    assert (report.problems, report.items_skipped) == (1, 2000)
