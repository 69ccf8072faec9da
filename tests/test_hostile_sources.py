"""Sources that are slow, that lie or that borrow ids, served by real local HTTP servers: no poll runs on
without end, no source delays another, and no feed item can overwrite a question from elsewhere."""

from __future__ import annotations

import datetime as dt
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
from tests.conftest import ROOT, Worker, api_client, purge_queues, wait_until
from tests.factories import TODAY, real_record
from tests.parliament_stub import LIST_PATH
from tests.slow_server import DrippingServer

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
    report = poll_source(feed, api_client(read_timeout=5))

    assert time.monotonic() - started < 6
    feed.refresh_from_db()
    assert "took longer than 2 s" in report.error and feed.last_error == report.error
    assert feed.consecutive_failures == 1 and feed.problems.count() == 1


def test_an_api_that_ignores_skip_and_claims_a_huge_total_stops_at_once(httpserver, source, settings):
    settings.PARLIAMENT_API_OVERLAP_DAYS = 0
    Source.objects.filter(pk=source.pk).update(cursor=TODAY)
    source.refresh_from_db()
    page = {"totalResults": 10**9, "results": [{"value": real_record(1000), "links": []}]}
    httpserver.expect_request(LIST_PATH).respond_with_json(page)
    httpserver.expect_request(f"{LIST_PATH}/1000").respond_with_json({"value": real_record(1000)})

    report = poll_source(source, api_client())

    assert report.error == "" and len(httpserver.log) == 3 * 2 + 1  # each filter's page once, then again
    # One cause, said once for the three filters it stopped.
    day = TODAY.isoformat()
    assert SourceProblem.objects.get(message__contains="the API sent the same page again").message == (
        f"the API sent the same page again for tabled on {day} (skip=1); the listing of that day stopped there "
        f"(and 2 more like it: answered on {day}, corrected on {day})")
    assert report.items_skipped == 0
    assert Question.objects.filter(external_id="1000").exists()
    source.refresh_from_db()
    assert source.cursor == TODAY


def test_pages_are_capped_whatever_total_the_api_claims(httpserver, source, settings):
    settings.PARLIAMENT_API_MAX_PAGES, settings.PARLIAMENT_API_OVERLAP_DAYS = 3, 0
    Source.objects.filter(pk=source.pk).update(cursor=TODAY)
    source.refresh_from_db()
    served = iter(range(1, 10**6))

    def endless(request):
        # A new item on every page, and always more to come.
        value = real_record(1000) | {"id": next(served)}
        return Response(f'{{"totalResults": 1000000000, "results": [{{"value": {_json(value)}}}]}}',
                        content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(endless)

    report = poll_source(source, api_client())

    day = TODAY.isoformat()
    assert SourceProblem.objects.get(message__contains="more than 3 pages").message == (
        f"more than 3 pages for tabled on {day}: the listing of that day stopped there "
        f"(and 2 more like it: answered on {day}, corrected on {day})")
    # Nine listed questions whose detail pages this server does not have: one cause, nine items.
    failed = SourceProblem.objects.exclude(message__contains="more than 3 pages").get()
    assert failed.record_id == "1" and "(and 8 more like it: ids 2, 3, 4, 5, 6, 7, 8, 9)" in failed.message
    assert (report.problems, report.items_skipped) == (2, 9)
    assert len([r for r, _ in httpserver.log if r.path == LIST_PATH]) == 3 * 3


def _json(value) -> str:
    import json

    return json.dumps(value)


def test_a_whole_poll_has_a_deadline_and_the_next_goes_on_from_the_last_day_read(httpserver, source, settings):
    settings.SOURCE_POLL_SECONDS = 1.5

    def slow(request):
        time.sleep(0.4)
        return Response('{"totalResults": 0, "results": []}', content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(slow)

    started = time.monotonic()
    report = poll_source(source, api_client())

    assert time.monotonic() - started < 3  # eight days x three filters would take 10 s
    assert "the poll ran past its budget" in report.error
    source.refresh_from_db()
    days = settings.PARLIAMENT_API_FIRST_POLL_DAYS + settings.PARLIAMENT_API_OVERLAP_DAYS
    first_day = TODAY - dt.timedelta(days=days)
    assert source.cursor == first_day and source.last_error == report.error


def test_a_feed_guid_that_is_an_api_id_cannot_overwrite_the_api_question(stub, source, httpserver):
    stub.put(real_record(1000))
    poll_source(source, api_client())
    official = Question.objects.get(external_id="1000")
    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Borrowed</title>'
           '<guid isPermaLink="false">1000</guid><link>https://feed.example/borrowed</link>'
           '<description>Not the official text</description></item></channel></rss>')
    httpserver.expect_request("/feed").respond_with_data(rss, content_type="application/rss+xml")
    feed = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))

    poll_source(feed, api_client())

    after = Question.objects.get(external_id="1000")
    assert (after.heading, after.url, after.source_id) == (official.heading, official.url, source.pk)
    borrowed = Question.objects.get(source=feed)
    assert borrowed.external_id == f"feed:{feed.pk}:1000" and borrowed.heading == "Borrowed"


def test_a_record_for_a_question_another_source_owns_is_refused_and_logged(source):
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


    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Fast news</title>'
           '<guid>fast-1</guid></item></channel></rss>')
    httpserver.expect_request("/fast").respond_with_data(rss, content_type="application/rss+xml")
    Source.objects.create(name="Drip", kind=Source.Kind.FEED, url=dripping.url())
    Source.objects.create(name="Fast", kind=Source.Kind.FEED, url=httpserver.url_for("/fast"))
    purge_queues()
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


@pytest.mark.worker
@pytest.mark.postgres
def test_a_source_that_drips_its_headers_is_stopped_by_the_polls_time_limit(worker_env):
    from config.celery import app


    server = DrippingServer(headers_too=True)
    feed = Source.objects.create(name="Drip headers", kind=Source.Kind.FEED, url=server.url())
    purge_queues()
    # Prefork, as the poll workers run: its time limits are what stop a read that never returns.
    worker = Worker(worker_env | {"SOURCE_POLL_SECONDS": "3", "SOURCE_RESPONSE_SECONDS": "2"}, "--concurrency=1")
    worker.start()
    try:
        # As beat asks: the worker hands each due source to a poll task, with the worker's own time limits.
        app.send_task("questions.poll_sources")
        wait_until(lambda: Source.objects.get(pk=feed.pk).consecutive_failures, timeout=60,
                   message="the stuck poll to be stopped and recorded")
    finally:
        worker.stop()
        server.stop()
    assert "stopped by its time limit" in Source.objects.get(pk=feed.pk).last_error


def test_redirects_are_followed_within_the_budget_and_capped(httpserver, dripping, settings):
    settings.SOURCE_RESPONSE_SECONDS = 2
    httpserver.expect_request("/moved").respond_with_data("", status=302, headers={"Location": dripping.url()})
    httpserver.expect_request("/loop").respond_with_data("", status=302, headers={"Location": "/loop"})
    moved = Source.objects.create(name="Moved", kind=Source.Kind.FEED, url=httpserver.url_for("/moved"))
    loop = Source.objects.create(name="Loop", kind=Source.Kind.FEED, url=httpserver.url_for("/loop"))

    started = time.monotonic()
    assert "took longer than 2 s" in poll_source(moved, api_client(read_timeout=5)).error
    assert time.monotonic() - started < 6
    assert "more than 5 redirects" in poll_source(loop, api_client()).error


def test_an_item_two_feeds_carry_is_stored_and_alerted_once(httpserver):
    from questions.models import QuestionEvent

    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Shared</title>'
           '<guid>https://www.theyworkforyou.com/wrans/?id=2025-06-24.1.h</guid></item></channel></rss>')
    httpserver.expect_request("/a").respond_with_data(rss, content_type="application/rss+xml")
    httpserver.expect_request("/b").respond_with_data(rss, content_type="application/rss+xml")
    first = Source.objects.create(name="Police", kind=Source.Kind.FEED, url=httpserver.url_for("/a"))
    second = Source.objects.create(name="Palantir", kind=Source.Kind.FEED, url=httpserver.url_for("/b"))

    poll_source(first, api_client())
    poll_source(second, api_client())

    assert list(Question.objects.values_list("source__name", flat=True)) == ["Police"]
    assert QuestionEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_feed_id_migration_renames_what_feeds_brought_and_can_be_undone():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("questions", "0004_cache_table")], [("questions", "0005_feed_question_ids")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    feed = old.get_model("questions", "Source").objects.create(name="F", kind="feed", url="http://127.0.0.1:9/")
    api = old.get_model("questions", "Source").objects.create(name="A", kind="api", url="http://127.0.0.1:9/")
    questions = old.get_model("questions", "Question").objects
    long_guid = "https://example.org/" + "x" * 478
    for external_id, owner in (("guid-1", feed), (long_guid, feed), ("9101", api)):
        questions.create(external_id=external_id, source=owner)
    try:
        MigrationExecutor(connection).migrate(after)
        renamed = set(Question.objects.values_list("external_id", flat=True))
        assert f"feed:{feed.pk}:guid-1" in renamed and "9101" in renamed
        assert any(i.startswith(f"feed:{feed.pk}:sha256:") for i in renamed) and max(map(len, renamed)) <= 500

        MigrationExecutor(connection).migrate(before)
        assert set(questions.values_list("external_id", flat=True)) == {"guid-1", "9101"} | {
            i for i in renamed if "sha256" in i}
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_an_import_can_neither_overwrite_a_feeds_item_nor_take_a_feed_id(tmp_path):
    feed = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url="http://127.0.0.1:9/")
    upsert([QuestionRecord(external_id=f"feed:{feed.pk}:g1", heading="From the feed")], feed)
    path = tmp_path / "import.jsonl"
    path.write_text(f'{{"id": "feed:{feed.pk}:g1", "heading": "Forged"}}\n{{"id": "feed:99:g2", "heading": "x"}}\n')
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert Question.objects.get().heading == "From the feed"
    assert err.getvalue().count("ids that start with feed: belong to feeds") == 2
