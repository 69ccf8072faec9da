"""New question events become matches for the saved searches that want them, each exactly once."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from alerts import tasks
from alerts.matching import mark_matched, match_events
from alerts.models import MatchedShard, Subscriber, Subscription
from alerts.percolator import Percolator
from questions.models import Question, QuestionEvent, Source
from questions.search import document, matches, parse
from tests.conftest import FIXTURES, Worker, wait_until
from tests.factories import pairs, real_record, subscribe, subscriber
from tests.parliament_stub import LIST_PATH, ParliamentStub

# A process keeps its percolators between runs; each test starts from its own database.
pytestmark = pytest.mark.usefixtures("fresh_percolators")

def question(external_id: str, **fields) -> Question:
    found = Question(external_id=external_id, **fields)
    found.refresh_search_text()
    found.save()
    return found


def event(of: Question, kind: str, key: str | None = None) -> QuestionEvent:
    return QuestionEvent.objects.create(question=of, kind=kind, key=key or kind)


def matched() -> set[tuple[str, str, str]]:
    """(subscriber, saved search, question:event) of every match, as a subscriber would read them; a match
    recorded twice fails here."""
    alerts = Subscription.objects.select_related("subscriber").in_bulk()
    events = QuestionEvent.objects.select_related("question").in_bulk()
    found = [(alerts[alert].subscriber.email, alerts[alert].query,
              f"{events[event].question.external_id}:{events[event].kind}") for alert, event in pairs()]
    assert len(found) == len(set(found)), "a match was recorded twice"
    return set(found)


@pytest.mark.django_db
def test_each_event_matches_the_saved_searches_it_satisfies_once():
    ann, bob = subscriber("ann@example.com"), subscriber("bob@example.com")
    subscribe(subscriber=ann, query='"facial recognition" police')
    subscribe(subscriber=ann, query="palantir", frequency=Subscription.Frequency.DAILY)
    subscribe(subscriber=bob, query="member:lewis")
    subscribe(subscriber=bob, query="tasers")
    surveillance = question("q1", heading="Police: Palantir", asking_member_name="Clive Lewis",
                            question_text="Will the police use facial recognition supplied by Palantir?")
    schools = question("q2", heading="Schools: Heating", asking_member_name="Jane Lewis")
    event(surveillance, "tabled")
    event(schools, "tabled")

    result = match_events()

    assert matched() == {
        ("ann@example.com", '"facial recognition" police', "q1:tabled"),
        ("ann@example.com", "palantir", "q1:tabled"),
        ("bob@example.com", "member:lewis", "q1:tabled"),
        ("bob@example.com", "member:lewis", "q2:tabled"),
    }
    assert (result.events, result.matches, result.more) == (2, 4, False)
    # Both have an immediate alert that matched; Ann's daily one does not count here.
    assert result.immediate_subscriber_ids == sorted([ann.pk, bob.pk])
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()

    again = match_events()

    assert (again.events, again.matches) == (0, 0) and len(pairs()) == 4


@pytest.mark.django_db
def test_a_shard_run_again_records_nothing_twice_even_in_a_batch_sent_out_anew():
    ann, bob = subscriber("ann@example.com"), subscriber("bob@example.com")
    subscribe(subscriber=ann, query="palantir")
    subscribe(subscriber=bob, query="palantir contracts")
    first = event(question("q1", heading="Palantir contracts"), "tabled").pk
    # Both shards ran and one was run again (its task retried); the chord never finished.
    for shard in (0, 1, 0):
        match_events(shard=shard, shards=2, event_ids=[first])
    # Its lock expired and the events went out anew, with one that came meanwhile.
    second = event(question("q2", heading="Palantir again"), "tabled").pk
    for shard in (0, 1):
        match_events(shard=shard, shards=2, event_ids=[first, second])
    mark_matched([first, second])

    assert matched() == {("ann@example.com", "palantir", "q1:tabled"), ("ann@example.com", "palantir", "q2:tabled"),
                         ("bob@example.com", "palantir contracts", "q1:tabled")}
    assert not MatchedShard.objects.exists()


@pytest.mark.django_db
def test_an_unsharded_run_finishes_what_a_sharded_run_left_without_recording_anything_twice():
    readers = [subscriber(f"reader{n}@example.com") for n in range(6)]
    for reader, query in zip(readers, ["palantir", "police", "contracts", "heading:palantir", "police -schools",
                                       "palantir OR schools"], strict=True):
        subscribe(subscriber=reader, query=query)
    ids = [event(question("q1", heading="Police: Palantir contracts"), "tabled").pk,
           event(question("q2", heading="Schools"), "tabled").pk]
    # Shard 0 of 3 recorded its matches; the others never ran, and runs are no longer sharded.
    match_events(shard=0, shards=3, event_ids=ids)
    told = {Subscription.objects.get(pk=alert).subscriber_id for alert, _ in pairs()}
    assert told

    result = match_events()

    assert matched() == {
        ("reader0@example.com", "palantir", "q1:tabled"), ("reader1@example.com", "police", "q1:tabled"),
        ("reader2@example.com", "contracts", "q1:tabled"), ("reader3@example.com", "heading:palantir", "q1:tabled"),
        ("reader4@example.com", "police -schools", "q1:tabled"), ("reader5@example.com", "palantir OR schools",
                                                                  "q1:tabled"),
        ("reader5@example.com", "palantir OR schools", "q2:tabled")}
    # Emailed now: those whose matches this run recorded.
    assert result.immediate_subscriber_ids == sorted({reader.pk for reader in readers} - told)
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    assert not MatchedShard.objects.exists()


@pytest.mark.django_db
def test_alert_on_chooses_which_events_a_saved_search_hears_about():
    ann = subscriber("ann@example.com")
    subscribe(subscriber=ann, query="palantir", alert_on=Subscription.AlertOn.BOTH)
    subscribe(subscriber=ann, query="palantir contracts", alert_on=Subscription.AlertOn.NEW)
    subscribe(subscriber=ann, query="palantir police", alert_on=Subscription.AlertOn.ANSWERS)
    asked = question("q1", heading="Police: Palantir contracts", answer_text="The police have no contracts.")
    for kind, key in (("tabled", None), ("answered", None), ("corrected", "corrected:1"), ("withdrawn", None)):
        event(asked, kind, key)

    match_events()

    assert matched() == {
        ("ann@example.com", "palantir", "q1:tabled"),
        ("ann@example.com", "palantir", "q1:answered"),
        ("ann@example.com", "palantir", "q1:corrected"),
        ("ann@example.com", "palantir contracts", "q1:tabled"),
        ("ann@example.com", "palantir police", "q1:answered"),
        ("ann@example.com", "palantir police", "q1:corrected"),
    }
    # The withdrawn event matched nobody, and is done with all the same.
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.django_db
def test_only_active_subscriptions_are_matched():
    live = subscriber("live@example.com")
    subscribe(subscriber=live, query="palantir")
    subscribe(subscriber=live, query="palantir contracts", paused=True)
    subscribe(subscriber=live, query="palantir police", confirmed_at=None)
    subscribe(subscriber=subscriber("unconfirmed@example.com", confirmed_at=None), query="palantir")
    gone = subscriber("bounced@example.com")
    subscribe(subscriber=gone, query="palantir")
    gone.suppress(Subscriber.Suppression.BOUNCED)
    event(question("q1", heading="Police: Palantir contracts"), "tabled")

    match_events()

    assert matched() == {("live@example.com", "palantir", "q1:tabled")}


@pytest.mark.django_db
def test_the_bundled_questions_match_every_saved_search_as_the_evaluator_says():
    call_command("import_questions", *(str(FIXTURES / name) for name in
                                       ("seed_questions.json", "list_page_excerpt.json", "question_detail.json")),
                 "--alert", stdout=StringIO())
    searches = ['"facial recognition"', "police -palantir", "member:lewis department:\"home office\"",
                "apprentic*", "palantir OR tasers", 'heading:"artificial intelligence"', "house:lords",
                "NOT police schools", "department:(education OR justice)", "covenant"]
    for number, query in enumerate(searches):
        subscribe(subscriber=subscriber(f"reader{number}@example.com"), query=query,
                  alert_on=("both", "new", "answers")[number % 3])

    match_events(batch_size=4)
    while match_events(batch_size=4).events:
        pass

    expected = set()
    for subscription in Subscription.objects.select_related("subscriber"):
        node = parse(subscription.canonical_query)
        for found in QuestionEvent.objects.select_related("question"):
            if subscription.wants(found.kind) and matches(node, found.question.search_document()):
                expected.add((subscription.subscriber.email, subscription.query,
                              f"{found.question.external_id}:{found.kind}"))
    assert len(expected) > 20
    assert matched() == expected
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.django_db
def test_shards_each_match_their_own_saved_searches_and_the_events_are_marked_after_all():
    queries = ["palantir", "police", '"facial recognition"', "member:lewis", "polic*", "contracts -police",
               "heading:palantir", "schools OR police"]
    for number, query in enumerate(queries):
        subscribe(subscriber=subscriber(f"reader{number}@example.com"), query=query)
    asked = question("q1", heading="Police: Palantir", question_text="Facial recognition contracts",
                     asking_member_name="Clive Lewis")
    events = [event(asked, "tabled").pk, event(question("q2", heading="Schools"), "tabled").pk]
    ids = events + [event(question("q3", heading="Nothing"), "tabled").pk]

    for shard in range(3):
        match_events(shard=shard, shards=3, event_ids=ids)
        assert QuestionEvent.objects.filter(matched_at__isnull=True).count() == 3
    mark_matched(ids)

    doc = asked.search_document()
    expected = {(f"reader{n}@example.com", q, "q1:tabled") for n, q in enumerate(queries)
                if matches(parse(q), doc)}
    expected.add(("reader7@example.com", "schools OR police", "q2:tabled"))
    assert matched() == expected
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_the_task_emails_immediate_subscribers_through_delivery():
    from django.core import mail

    ann, bob = subscriber("ann@example.com"), subscriber("bob@example.com")
    subscribe(subscriber=ann, query="palantir")
    subscribe(subscriber=bob, query="palantir", frequency=Subscription.Frequency.WEEKLY)
    event(question("q1", heading="Palantir"), "tabled")

    # Another test's thread may be inside an eager task, which Celery marks for the whole process.
    outcome = tasks.match_events_task.apply().get(disable_sync_subtasks=False)

    assert outcome["matches"] == 2
    assert [m.to for m in mail.outbox] == [["ann@example.com"]]
    tasks.match_events_task.apply()
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_sharded_task_sends_every_shard_the_same_events_and_marks_them_after(monkeypatch, settings):
    from celery.backends.cache import CacheBackend

    from config.celery import app

    monkeypatch.setattr(tasks, "deliver_immediate", lambda ids: None)
    settings.MATCH_SHARDS = 3
    for number, query in enumerate(["palantir", "police", "contracts", "heading:palantir", "police -schools"]):
        subscribe(subscriber=subscriber(f"reader{number}@example.com"), query=query)
    event(question("q1", heading="Police: Palantir contracts"), "tabled")
    event(question("q2", heading="Police: Schools"), "tabled")
    # An in-memory result backend and eager tasks: the chord runs here, as workers would run it.
    monkeypatch.setattr(app._local, "backend", CacheBackend(app=app, backend="memory"), raising=False)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        outcome = tasks.match_events_task.apply().get(disable_sync_subtasks=False)
    finally:
        app.conf.task_always_eager = eager

    assert outcome == {"fanned_out": 2}
    assert matched() == {
        ("reader0@example.com", "palantir", "q1:tabled"), ("reader1@example.com", "police", "q1:tabled"),
        ("reader2@example.com", "contracts", "q1:tabled"), ("reader3@example.com", "heading:palantir", "q1:tabled"),
        ("reader4@example.com", "police -schools", "q1:tabled"), ("reader1@example.com", "police", "q2:tabled"),
    }
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_sharded_task_first_finishes_what_runs_sharded_another_way_left(monkeypatch, settings):
    from celery.backends.cache import CacheBackend

    from config.celery import app

    monkeypatch.setattr(tasks, "deliver_immediate", lambda ids: None)
    for number, query in enumerate(["palantir", "police", "contracts", "heading:palantir", "police -schools"]):
        subscribe(subscriber=subscriber(f"reader{number}@example.com"), query=query)
    first = event(question("q1", heading="Police: Palantir contracts"), "tabled").pk
    # Runs were sharded two ways: one shard recorded its matches, and the chord never finished.
    match_events(shard=1, shards=2, event_ids=[first])
    assert pairs()
    event(question("q2", heading="Police: Schools"), "tabled")
    settings.MATCH_SHARDS = 3
    monkeypatch.setattr(app._local, "backend", CacheBackend(app=app, backend="memory"), raising=False)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        tasks.match_events_task.apply().get(disable_sync_subtasks=False)
    finally:
        app.conf.task_always_eager = eager

    assert matched() == {
        ("reader0@example.com", "palantir", "q1:tabled"), ("reader1@example.com", "police", "q1:tabled"),
        ("reader2@example.com", "contracts", "q1:tabled"), ("reader3@example.com", "heading:palantir", "q1:tabled"),
        ("reader4@example.com", "police -schools", "q1:tabled"), ("reader1@example.com", "police", "q2:tabled"),
    }
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    assert not MatchedShard.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_share_the_events_without_overlap():
    readers = [subscriber(f"reader{n}@example.com") for n in range(3)]
    for reader, query in zip(readers, ["police", "palantir", "schools OR police"], strict=True):
        subscribe(subscriber=reader, query=query)
    for number in range(60):
        event(question(f"q{number}", heading=("Police", "Palantir", "Schools")[number % 3]), "tabled")
    done: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def run(slot: int) -> None:
        # Each with a percolator of its own, as two worker processes have.
        percolator = Percolator()
        try:
            percolator.refresh()
            start.wait()
            while True:
                result = match_events(batch_size=7, percolator=percolator)
                if not result.events:
                    break
                done[slot].append(result.events)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Every event was taken by exactly one run.
    assert sum(done[0]) + sum(done[1]) == 60
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    assert len(pairs()) == len(set(pairs())) == 20 + 20 + 40


@pytest.mark.worker
@pytest.mark.postgres
def test_polled_questions_become_matches_once_with_two_workers_and_two_runs(celery_worker, worker_env, httpserver):
    from config.celery import app

    api = ParliamentStub()
    for api_id in (1000, 1001):
        api.put(real_record(api_id))
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(api)
    api.put(real_record(1002, answered=False, heading="Prisons: Drones", questionText="How many drones?"))
    httpserver.expect_request(f"{LIST_PATH}/1002").respond_with_handler(api)
    httpserver.expect_request(LIST_PATH).respond_with_handler(api)
    Source.objects.create(name="Stub API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                          last_success_at=timezone.now())
    ann, bob = subscriber("ann@example.com"), subscriber("bob@example.com")
    daily = {"frequency": Subscription.Frequency.DAILY}
    subscribe(subscriber=ann, query='"flexi job" apprenticeships', **daily)
    subscribe(subscriber=ann, query="department:education", alert_on=Subscription.AlertOn.ANSWERS, **daily)
    subscribe(subscriber=bob, query="apprentic* OR drones", alert_on=Subscription.AlertOn.NEW, **daily)
    subscribe(subscriber=bob, query="tasers", **daily)

    app.send_task("questions.poll_sources")
    wait_until(lambda: QuestionEvent.objects.count() == 5, timeout=60, message="the worker to land the events")
    second = Worker(worker_env)
    second.log = second.log.with_name(second.log.stem + "-second.log")
    second.start()
    try:
        wait_until(lambda: len(app.control.ping(timeout=1)) >= 2, timeout=60, message="the second worker")
        app.send_task("alerts.match_events")
        app.send_task("alerts.match_events")
        wait_until(lambda: not QuestionEvent.objects.filter(matched_at__isnull=True).exists(), timeout=90,
                   message="the workers to match every event")
    finally:
        second.stop()

    uins = {q.external_id: q.uin for q in Question.objects.all()}
    assert sorted(uins) == ["1000", "1001", "1002"]
    assert matched() == {
        ("ann@example.com", '"flexi job" apprenticeships', "1000:tabled"),
        ("ann@example.com", '"flexi job" apprenticeships', "1000:answered"),
        ("ann@example.com", '"flexi job" apprenticeships', "1001:tabled"),
        ("ann@example.com", '"flexi job" apprenticeships', "1001:answered"),
        ("ann@example.com", "department:education", "1000:answered"),
        ("ann@example.com", "department:education", "1001:answered"),
        ("bob@example.com", "apprentic* OR drones", "1000:tabled"),
        ("bob@example.com", "apprentic* OR drones", "1001:tabled"),
        ("bob@example.com", "apprentic* OR drones", "1002:tabled"),
    }
    assert len(pairs()) == 9


def test_documents_of_the_fixture_questions_are_what_matching_reads():
    # The percolator reads the normalised columns; they are the evaluator's documents of the same text.
    found = Question(heading="Police: AI", answer_text="Facial recognition")
    found.refresh_search_text()
    assert found.search_document() == document(found.search_fields())


@pytest.mark.django_db
def test_a_sharded_run_releases_only_its_own_lock():
    from django.core.cache import cache

    # This run's lock expired and another run took it: finishing must leave the other's alone.
    cache.set(tasks.FAN_OUT_LOCK, "another-run", 60)
    tasks.finish_match_task([], [], token="this-run")
    assert cache.get(tasks.FAN_OUT_LOCK) == "another-run"

    cache.set(tasks.FAN_OUT_LOCK, "this-run", 60)
    tasks.finish_match_task([], [], token="this-run")
    assert cache.get(tasks.FAN_OUT_LOCK) is None
