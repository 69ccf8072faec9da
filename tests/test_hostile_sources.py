"""Sources that are slow, that lie or that borrow ids, served by real local HTTP servers: no poll runs on
without end, no source delays another, and no feed item can overwrite a question from elsewhere."""

from __future__ import annotations

import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from werkzeug.wrappers import Response

from questions.ingest import upsert
from questions.models import Question, Source, SourceProblem
from questions.polling import poll_source
from questions.records import QuestionRecord
from tests.conftest import ROOT, wait_until
from tests.parliament_stub import LIST_PATH
from tests.slow_server import DrippingServer
from tests.test_parliament_api import client, real_record, source, stub  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def dripping():
    server = DrippingServer()
    yield server
    server.stop()


def test_a_feed_that_drips_one_byte_at_a_time_is_cut_off_at_the_response_budget(dripping, settings):
    settings.SOURCE_RESPONSE_SECONDS = 2
    feed = Source.objects.create(name="Drip", kind=Source.Kind.FEED, url=dripping.url())

    started = time.monotonic()
    report = poll_source(feed, client(read_timeout=5))

    assert time.monotonic() - started < 6
    feed.refresh_from_db()
    assert "took longer than 2 s" in report.error and feed.last_error == report.error
    assert feed.consecutive_failures == 1 and feed.problems.count() == 1


def test_an_api_that_ignores_skip_and_claims_a_huge_total_stops_at_once(httpserver, source):  # noqa: F811
    page = {"totalResults": 10**9, "results": [{"value": real_record(1000), "links": []}]}
    httpserver.expect_request(LIST_PATH).respond_with_json(page)
    httpserver.expect_request(f"{LIST_PATH}/1000").respond_with_json({"value": real_record(1000)})

    report = poll_source(source, client())

    assert "the API sent the same page again" in report.error
    assert len(httpserver.log) < 10  # one repeated page, not thousands
    assert Question.objects.filter(external_id="1000").exists()  # what was read still lands
    source.refresh_from_db()
    assert source.cursor is None  # the next poll reads the same days again


def test_pages_are_capped_whatever_total_the_api_claims(httpserver, source, settings):  # noqa: F811
    settings.PARLIAMENT_API_MAX_PAGES = 3
    served = iter(range(1, 10**6))

    def endless(request):
        # A new item on every page, and always more to come.
        value = real_record(1000) | {"id": next(served)}
        return Response(f'{{"totalResults": 1000000000, "results": [{{"value": {_json(value)}}}]}}',
                        content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(endless)

    report = poll_source(source, client())

    assert "more than 3 pages" in report.error
    assert len([r for r, _ in httpserver.log if r.path == LIST_PATH]) == 3


def _json(value) -> str:
    import json

    return json.dumps(value)


def test_a_whole_poll_has_a_deadline(httpserver, source, settings):  # noqa: F811
    settings.SOURCE_POLL_SECONDS = 1.5

    def slow(request):
        time.sleep(0.4)
        return Response('{"totalResults": 0, "results": []}', content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(slow)

    started = time.monotonic()
    report = poll_source(source, client())

    assert time.monotonic() - started < 3  # a week of days x three filters would take 10 s
    assert "the poll ran past its budget" in report.error
    source.refresh_from_db()
    assert source.cursor is None and source.last_error == report.error


def test_a_feed_guid_that_is_an_api_id_cannot_overwrite_the_api_question(stub, source, httpserver):  # noqa: F811
    stub.put(real_record(1000))
    poll_source(source, client())
    official = Question.objects.get(external_id="1000")
    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Borrowed</title>'
           '<guid isPermaLink="false">1000</guid><link>https://feed.example/borrowed</link>'
           '<description>Not the official text</description></item></channel></rss>')
    httpserver.expect_request("/feed").respond_with_data(rss, content_type="application/rss+xml")
    feed = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))

    poll_source(feed, client())

    after = Question.objects.get(external_id="1000")
    assert (after.heading, after.url, after.source_id) == (official.heading, official.url, source.pk)
    borrowed = Question.objects.get(source=feed)
    assert borrowed.external_id == f"feed:{feed.pk}:1000" and borrowed.heading == "Borrowed"


def test_a_record_for_a_question_another_source_owns_is_refused_and_logged(source):  # noqa: F811
    upsert([QuestionRecord(external_id="9101", heading="Official")], source)
    feed = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url="http://127.0.0.1:9/")

    result = upsert([QuestionRecord(external_id="9101", heading="Forged")], feed)

    assert Question.objects.get(external_id="9101").heading == "Official"
    assert result.refused == [("9101", "the id belongs to a question from API")]


def test_poll_sources_exits_non_zero_naming_the_source_that_failed(settings):
    settings.SOURCE_MAX_RETRIES = 0
    Source.objects.create(name="Nowhere feed", kind=Source.Kind.FEED, url="http://127.0.0.1:9/feed")

    with pytest.raises(CommandError, match="1 source\\(s\\) failed: Nowhere feed"):
        call_command("poll_sources", stdout=StringIO())
    assert SourceProblem.objects.filter(source__name="Nowhere feed").exists()


def test_migrate_alone_gives_a_site_whose_cache_works(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path), "HOME": str(tmp_path)}
    for command in (["migrate", "--no-input", "-v0"],
                    ["shell", "-c", "from django.core.cache import cache; cache.set('k', 'v'); print(cache.get('k'))"]):
        result = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "v"


def test_polls_go_to_a_queue_of_their_own_by_default():
    from config.celery import app

    route = app.amqp.router.route
    assert route({}, "questions.poll_source")["queue"].name == "poll"
    assert route({}, "alerts.send_due")["queue"].name == "celery"


@pytest.mark.worker
@pytest.mark.postgres
def test_a_slow_source_never_delays_another(worker_env, dripping, httpserver, settings):
    from config.celery import app
    from tests.conftest import Worker

    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Fast news</title>'
           '<guid>fast-1</guid></item></channel></rss>')
    httpserver.expect_request("/fast").respond_with_data(rss, content_type="application/rss+xml")
    Source.objects.create(name="Drip", kind=Source.Kind.FEED, url=dripping.url())
    Source.objects.create(name="Fast", kind=Source.Kind.FEED, url=httpserver.url_for("/fast"))
    app.control.purge()
    worker = Worker(worker_env | {"SOURCE_RESPONSE_SECONDS": "30"}, "--concurrency=2")
    worker.start()
    try:
        app.send_task("questions.poll_sources")
        # The dripping feed holds one poll process for 30 s; the other source lands meanwhile.
        landed = wait_until(lambda: Question.objects.filter(heading="Fast news").exists(), timeout=20,
                            message="the fast source's question")
        assert landed and not Source.objects.get(name="Drip").last_polled_at
    finally:
        worker.stop()
