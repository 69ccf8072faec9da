"""RSS and Atom sources, read for real from a local HTTP server."""

from __future__ import annotations

import pytest
from werkzeug.wrappers import Response

from questions.models import Question, Source, SourceProblem
from questions.polling import poll_source
from questions.sources.http import PoliteClient
from tests.conftest import ATOM, RSS

pytestmark = pytest.mark.django_db

def client() -> PoliteClient:
    return PoliteClient(requests_per_second=1000, backoff_seconds=0.01, max_retries=1)


def feed_source(httpserver, path="/feed") -> Source:
    return Source.objects.create(name=f"Feed {path}", kind=Source.Kind.FEED, url=httpserver.url_for(path))


def test_rss_entries_land_as_questions(httpserver):
    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    source = feed_source(httpserver)

    report = poll_source(source, client())

    assert not report.error
    question = Question.objects.get(
        external_id=f"feed:{source.pk}:https://www.theyworkforyou.com/wrans/?id=2025-06-24.61234.h")
    assert question.heading == "Police: Artificial Intelligence"
    assert "police use of facial recognition" in " ".join(question.question_text.split())
    assert "<b>" not in question.question_text
    assert question.date_tabled.isoformat() == "2025-06-24"
    assert question.url.startswith("https://www.theyworkforyou.com/wrans/")
    assert question.events.get().kind == "tabled"
    assert Question.objects.count() == 2


def test_atom_entries_land_as_questions(httpserver):
    httpserver.expect_request("/atom").respond_with_data(ATOM, content_type="application/atom+xml")

    source = feed_source(httpserver, "/atom")
    poll_source(source, client())

    question = Question.objects.get(external_id=f"feed:{source.pk}:urn:question:70001")
    assert question.heading == "Schools: Heating" and question.url == "https://example.org/q/70001"


def test_conditional_get_304_does_nothing(httpserver):
    seen_headers = []

    def handler(request):
        seen_headers.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304)
        return Response(RSS, content_type="application/rss+xml",
                        headers={"ETag": '"v1"', "Last-Modified": "Tue, 24 Jun 2025 10:00:00 GMT"})

    httpserver.expect_request("/feed").respond_with_handler(handler)
    source = feed_source(httpserver)
    poll_source(source, client())
    source.refresh_from_db()
    assert source.etag == '"v1"'
    Question.objects.all().delete()

    report = poll_source(source, client())

    assert seen_headers == [None, '"v1"']
    assert report.landed is None and not report.error
    assert Question.objects.count() == 0


def test_a_truncated_feed_lands_what_could_be_read_and_records_a_warning(httpserver):
    cut = RSS[: RSS.index("<item><title>Prisons")] + "<item><title>Prisons: Mob"
    httpserver.expect_request("/feed").respond_with_data(cut, content_type="application/rss+xml",
                                                         headers={"ETag": '"cut"'})
    source = feed_source(httpserver)

    report = poll_source(source, client())

    assert Question.objects.filter(heading="Police: Artificial Intelligence").exists()
    assert "malformed feed" in report.warning and report.error == ""
    assert SourceProblem.objects.filter(source=source, message__contains="malformed feed").exists()
    source.refresh_from_db()
    # Not failing, and not remembered: the next poll reads the whole feed again rather than hear "not modified".
    assert source.consecutive_failures == 0 and source.etag == ""


def test_a_feed_that_is_not_a_feed_is_an_error_not_a_crash(httpserver):
    httpserver.expect_request("/feed").respond_with_data("<html><body>Gateway error", content_type="text/html")
    source = feed_source(httpserver)

    report = poll_source(source, client())

    assert report.error and Question.objects.count() == 0
    assert SourceProblem.objects.filter(source=source).exists()


def test_an_entry_without_guid_or_link_is_logged_and_the_rest_land(httpserver):
    broken = RSS.replace(
        "<item><title>Prisons",
        "<item><title>Nameless</title><description>no id</description></item><item><title>Prisons",
    )
    httpserver.expect_request("/feed").respond_with_data(broken, content_type="application/rss+xml")
    source = feed_source(httpserver)

    report = poll_source(source, client())

    assert Question.objects.count() == 2
    assert report.problems == 1
    problem = SourceProblem.objects.get(source=source)
    assert problem.record_id == "Nameless" and "neither a guid nor a link" in problem.message


def test_a_feed_body_that_looks_like_a_path_is_not_read_as_a_file(httpserver, tmp_path):
    local = tmp_path / "local.xml"
    local.write_text(RSS)
    httpserver.expect_request("/feed").respond_with_data(str(local), content_type="application/rss+xml")
    source = feed_source(httpserver)

    report = poll_source(source, client())

    assert report.error and Question.objects.count() == 0


def test_a_source_that_redirects_forever_is_an_error_and_the_others_still_poll(httpserver):
    from questions.polling import poll_sources

    httpserver.expect_request("/loop").respond_with_response(
        Response("", status=302, headers={"Location": httpserver.url_for("/loop")}))
    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    looping = feed_source(httpserver, "/loop")
    good = feed_source(httpserver, "/feed")

    reports = poll_sources()

    looping.refresh_from_db()
    good.refresh_from_db()
    assert "more than 5 redirects" in looping.last_error and looping.consecutive_failures == 1
    assert good.last_success_at and Question.objects.count() == 2
    assert len(reports) == 2


def test_a_poll_does_not_undo_what_an_operator_changed_meanwhile(httpserver):
    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    source = feed_source(httpserver)
    Source.objects.filter(pk=source.pk).update(enabled=False, poll_interval_minutes=60)

    poll_source(source, client())

    source.refresh_from_db()
    assert source.enabled is False and source.poll_interval_minutes == 60 and source.last_success_at


def test_a_feed_question_links_to_itself_not_to_a_question_with_that_number(httpserver, client):
    from questions.polling import poll_source as poll

    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    poll(feed_source(httpserver), PoliteClient(requests_per_second=1000))
    question = Question.objects.get(heading="Police: Artificial Intelligence")
    Question.objects.create(external_id="commons-1", uin=str(question.pk), heading="Another question")

    page = client.get(question.get_absolute_url())

    assert page.status_code == 200 and "Police: Artificial Intelligence" in page.content.decode()


def test_a_feed_link_that_is_not_a_web_address_is_not_kept(httpserver):
    hostile = RSS.replace("<link>https://www.theyworkforyou.com/wrans/?id=2025-06-24.61234.h</link>",
                          "<link>javascript:alert(1)</link>")
    httpserver.expect_request("/feed").respond_with_data(hostile, content_type="application/rss+xml")

    poll_source(feed_source(httpserver), client())

    question = Question.objects.get(heading="Police: Artificial Intelligence")
    assert question.url == "" and "javascript" not in question.official_url
