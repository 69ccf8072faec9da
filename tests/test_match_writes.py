"""Every match of a batch is recorded exactly once, however many there are, written as they are found, and a
worker killed while writing them leaves nothing half-done: the next run records each one once."""

from __future__ import annotations

import gzip
import itertools
import signal
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from alerts import matching
from alerts.matching import match_events
from alerts.models import FOLLOWED_KINDS, Match, Subscriber, Subscription
from questions.models import QuestionEvent
from questions.search import canonical, parse
from questions.searching import matching as searched
from tests.conftest import FIXTURES, send, start, wait_until
from tests.factories import follow_question, pairs

pytestmark = pytest.mark.usefixtures("fresh_percolators")

# Real searches, from narrow to broad, each held by several people.
SEARCHES = ['"mental health"', "school OR schools", "nhs", "housing", "police", "government", "department",
            "asked:2024-01-01..2024-12-31 health"]


def import_real_questions(tmp_path: Path, count: int) -> None:
    """The first `count` questions of the real sample, as if they had just appeared: their events wait to be
    matched."""
    path = tmp_path / "questions.jsonl"
    with gzip.open(FIXTURES / "written_questions_sample.jsonl.gz", "rt") as sample:
        path.write_text("".join(itertools.islice(sample, count)))
    call_command("import_questions", str(path), "--alert", stdout=StringIO())


def hold_searches(people: int) -> list[Subscription]:
    now = timezone.now()
    subscribers = Subscriber.objects.bulk_create(Subscriber(email=f"reader{i}@example.org", confirmed_at=now)
                                                 for i in range(people))
    return Subscription.objects.bulk_create(
        Subscription(subscriber=person, query=SEARCHES[i % len(SEARCHES)],
                     canonical_query=canonical(parse(SEARCHES[i % len(SEARCHES)])), confirmed_at=now,
                     frequency="immediate" if i % 2 else "daily")
        for i, person in enumerate(subscribers))


def expected(subscriptions: list[Subscription]) -> set[tuple[int, int]]:
    """(alert, event) of every match, worked out by the search page's SQL rather than the percolator."""
    events = list(QuestionEvent.objects.filter(matched_at__isnull=True).values_list("id", "question_id", "kind"))
    found = set()
    for query, holders in itertools.groupby(sorted(subscriptions, key=lambda s: s.query), key=lambda s: s.query):
        questions = set(searched(parse(query)).values_list("id", flat=True))
        for subscription in holders:
            found.update((subscription.pk, event_id) for event_id, question_id, kind in events
                         if question_id in questions and kind != QuestionEvent.Kind.WITHDRAWN
                         and subscription.wants(kind))
    return found


@pytest.mark.django_db
def test_a_batch_of_many_chunks_records_every_match_once(tmp_path, monkeypatch):
    monkeypatch.setattr(matching, "COPY_CHUNK", 50)
    monkeypatch.setattr(matching, "INSERT_CHUNK", 50)
    import_real_questions(tmp_path, 150)
    subscriptions = hold_searches(24)
    followed = QuestionEvent.objects.filter(kind=QuestionEvent.Kind.ANSWERED).first().question
    follow = follow_question("follower@example.org", followed)
    wanted = expected(subscriptions) | {(follow.pk, event_id) for event_id in
                                        followed.events.filter(kind__in=FOLLOWED_KINDS).values_list("id", flat=True)}
    assert len(wanted) > 20 * 50  # many chunks of each kind of write

    result = match_events()

    assert pairs() == sorted(wanted)
    assert result.matches == len(wanted)
    assert set(result.immediate_subscriber_ids) == {s.subscriber_id for s in subscriptions
                                                    if s.frequency == "immediate" and any(
                                                        alert == s.pk for alert, _ in wanted)} | {
                                                        follow.subscriber_id}
    # One row per alert that matched, however many chunks its matches spanned.
    assert Match.objects.count() == len({alert for alert, _ in wanted})
    assert all(m.size == len(m.events) and m.first_event == min(m.events) == m.events[0] for m in Match.objects.all())


@pytest.mark.postgres
@pytest.mark.django_db
def test_matches_are_written_a_chunk_at_a_time_as_they_are_found(monkeypatch):
    import psycopg

    monkeypatch.setattr(matching, "COPY_CHUNK", 1000)
    watcher = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    seen: list[int] = []

    def taken() -> int:
        """What PostgreSQL has taken of the COPY under way, asked from another connection."""
        return watcher.execute("SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy "
                               "WHERE datname = current_database()").fetchone()[0]

    def endless() -> Iterator[matching.Found]:
        for alert in itertools.count(1):
            if alert == 500:
                seen.append(taken())
            if alert == 2500:
                # Two chunks are on their way while the finding goes on.
                wait_until(lambda: taken() >= 2000, timeout=30, interval=0.05, message="two chunks taken")
                seen.append(taken())
                raise RuntimeError("the finding stops here")
            yield alert, alert, alert % 2 == 0, matching.Events.of([7])

    noted = matching.Recorded()
    with pytest.raises(RuntimeError):
        matching._copy_matches(matching._noted(endless(), noted))
    watcher.close()

    # Nothing goes before a chunk is full; then each chunk goes while the matches are still being found.
    assert seen == [0, 2000]
    assert noted.matches == 2499 and len(noted.immediate_subscriber_ids) == 1249


@pytest.mark.postgres
@pytest.mark.worker
def test_a_worker_killed_while_writing_matches_loses_none_and_repeats_none(worker_env, tmp_path):
    import_real_questions(tmp_path, 1000)
    subscriptions = hold_searches(400)
    wanted = expected(subscriptions)
    assert len(wanted) > 100_000

    def writing() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY \"alerts_match\"%%' "
                           "AND state = 'active' AND datname = current_database()")
            return cursor.fetchone()[0] > 0

    worker = start(worker_env)
    try:
        send("alerts.match_events")
        wait_until(writing, timeout=120, interval=0.02, message="the worker writing matches")
        worker.kill(signal.SIGKILL)
    finally:
        worker.stop()
    # Its transaction went with it: nothing of the batch is recorded and its events wait still.
    wait_until(lambda: not writing(), timeout=30, message="the killed worker's COPY to end")
    assert not Match.objects.exists()
    assert not QuestionEvent.objects.filter(matched_at__isnull=False).exists()

    worker = start(worker_env)
    try:
        send("alerts.match_events")
        wait_until(lambda: not QuestionEvent.objects.filter(matched_at__isnull=True).exists(), timeout=300,
                   message="the next worker to match the events")
    finally:
        worker.stop()
    assert pairs() == sorted(wanted)


@pytest.mark.django_db
def test_a_match_of_a_deleted_alert_or_of_deleted_events_is_never_sent_and_goes(tmp_path):
    from alerts.delivery import deliver_immediate
    from alerts.retention import prune

    import_real_questions(tmp_path, 20)
    subscriptions = hold_searches(16)
    match_events()
    kept = Match.objects.count()
    assert kept > 0
    event = QuestionEvent.objects.first()
    # What a run that was writing when a question and an alert were deleted leaves behind: the database
    # does not check a match's alert, and a match's events are ids.
    gone_event = QuestionEvent.objects.order_by("-id").first().id + 1000
    gone_alert = Subscription.objects.order_by("-id").first().id + 1000
    immediate = next(s for s in subscriptions if s.frequency == "immediate")
    Match.objects.bulk_create([Match.of(immediate.pk, [gone_event]), Match.of(gone_alert, [event.pk])])

    sent = deliver_immediate()
    report = prune()

    assert not Match.objects.filter(events=[gone_event]).exists()
    assert all(gone_event not in m.events for m in Match.objects.all())
    assert report.counts["matches of deleted alerts"] == 1
    assert Match.objects.count() == kept
    assert sent and all(m.delivery_id for m in Match.objects.filter(subscription__frequency="immediate"))
