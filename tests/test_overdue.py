"""A followed question whose answer is overdue: one event per question (`questions.overdue.record_overdue`), told
to its followers once, in their own email, worded for a named day or an ordinary due date; never for a question
withdrawn or answered in full, and never to a saved search. Then the whole stack: beat's hourly entry on a real
worker and beat whose clock is moved past a named day."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from django.core import mail
from django.utils import timezone

from alerts.delivery import build_run
from alerts.models import Subscription
from config import schedule
from questions.models import CANARY_PREFIX, Question, QuestionEvent, Source
from questions.overdue import OVERDUE_WITHIN_DAYS, known_day, record_overdue
from questions.tasks import record_overdue_task
from tests.conftest import (
    ROOT,
    at_once,
    beat_sends_due_emails,
    database_url_for_tests,
    deliver,
    digest_run_now,
    esp_env,
    html_part,
    link_in,
    start,
    wait_until,
    words,
)
from tests.esp_stub import emails_to
from tests.factories import (
    HEADING,
    TODAY,
    answered,
    follow_question,
    holding,
    land,
    pairs,
    record,
    subscribe,
    withdrawn,
)
from tests.test_delivery_stack import clock, london  # noqa: F401 - `clock` is a fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_percolators")]


def named_day(external_id: str = "wq-1", day: dt.date = TODAY - dt.timedelta(days=1), **changes):
    """A named-day question to be answered on `day`."""
    return record(external_id, is_named_day=True, date_for_answer=day, **changes)


def ordinary(external_id: str = "wq-1", due_before: dt.date = TODAY, **changes):
    """An ordinary question whose answer was due a day or more before `due_before` (its date for answer a
    calendar week and more earlier: three working days after it fall inside the week)."""
    return record(external_id, date_tabled=due_before - dt.timedelta(days=12),
                  date_for_answer=due_before - dt.timedelta(days=9), **changes)


def overdue_ids() -> set[int]:
    return set(QuestionEvent.objects.filter(kind="overdue").values_list("question_id", flat=True))


def day_month(day: dt.date) -> str:
    return f"{day.day} {day:%B}"


# The events.


def test_each_overdue_question_gets_one_event_however_many_runs():
    late = land(named_day("wq-named"))
    also_late = land(ordinary("wq-ordinary"))
    held = land(holding(named_day("wq-holding")))
    assert late.date_due < TODAY and also_late.date_due < TODAY

    runs = [record_overdue(TODAY) for _ in range(3)]

    assert runs == [3, 0, 0]
    assert overdue_ids() == {late.pk, also_late.pk, held.pk}
    assert set(QuestionEvent.objects.filter(kind="overdue").values_list("key", flat=True)) == {"overdue"}
    # The next days too: still once.
    assert record_overdue(TODAY + dt.timedelta(days=1)) == 0
    assert QuestionEvent.objects.filter(kind="overdue").count() == 3


def test_no_event_for_a_question_withdrawn_answered_in_full_not_yet_due_or_due_long_ago():
    land(withdrawn(named_day("wq-withdrawn")))
    land(answered(named_day("wq-answered")))
    land(named_day("wq-due-today", day=TODAY))
    land(named_day("wq-due-tomorrow", day=TODAY + dt.timedelta(days=1)))
    land(named_day("wq-long-ago", day=TODAY - dt.timedelta(days=OVERDUE_WITHIN_DAYS + 1)))
    land(named_day(f"{CANARY_PREFIX}probe"))
    land(record("wq-no-dates", date_tabled=None, date_for_answer=None))
    oldest_told = land(named_day("wq-a-week-ago", day=TODAY - dt.timedelta(days=OVERDUE_WITHIN_DAYS)))

    assert record_overdue(TODAY) == 1
    assert overdue_ids() == {oldest_told.pk}


def test_a_question_answered_after_it_was_due_is_not_told_of_again_and_one_answered_meanwhile_never():
    first = land(named_day("wq-1"))
    second = land(named_day("wq-2"))
    record_overdue(TODAY)
    land(answered(named_day("wq-1")))
    land(named_day("wq-3"))
    land(answered(named_day("wq-3")))

    assert record_overdue(TODAY) == 0
    assert overdue_ids() == {first.pk, second.pk}


@pytest.mark.postgres
def test_a_question_a_poll_is_answering_is_checked_again_when_its_event_would_be_made():
    import psycopg

    question = land(named_day())
    # Another connection, as a poll storing the answer: it holds the row while its transaction runs.
    with psycopg.connect(database_url_for_tests()) as poll:
        with poll.cursor() as cursor:
            cursor.execute("SELECT id FROM questions_question WHERE id = %s FOR UPDATE", [question.pk])
            assert record_overdue(TODAY) == 0
            cursor.execute("UPDATE questions_question SET answer_text = 'An answer.', answer_is_holding = false "
                           "WHERE id = %s", [question.pk])
        poll.commit()

    assert record_overdue(TODAY) == 0
    assert overdue_ids() == set()


@pytest.mark.postgres
def test_runs_at_the_same_time_make_each_event_once():
    for number in range(40):
        land(named_day(f"wq-{number}"))
    made = at_once(lambda: record_overdue(TODAY), 4)

    assert sum(made) == 40
    assert QuestionEvent.objects.filter(kind="overdue").count() == 40


# The email.


def test_a_follower_of_a_named_day_question_is_emailed_once_that_it_was_not_answered_on_the_day():
    day = TODAY - dt.timedelta(days=2)
    question = land(named_day(day=day))
    follow_question("ada@example.org", question)
    deliver()  # what was there before

    record_overdue(TODAY)
    [email] = deliver()

    label = f"Not answered on its named day, {day_month(day)}"
    assert "Due for answer" not in email.body
    assert email.to == ["ada@example.org"]
    assert email.subject == f"{label} – “{HEADING}”"
    assert f"[{label}] {HEADING}" in email.body
    shown = words(html_part(email))
    assert shown.startswith(f"Written question alerts The question you follow {label} {HEADING}")
    assert "We’ll tell you when it is answered" in shown
    record_overdue(TODAY)
    record_overdue(TODAY + dt.timedelta(days=1))
    assert deliver() == []


def test_a_follower_of_an_ordinary_question_is_told_it_is_overdue_even_after_a_holding_answer():
    question = land(holding(ordinary()))
    follow_question("ada@example.org", question)

    record_overdue(TODAY)
    [email] = deliver()

    label = f"Overdue: due {day_month(question.date_due)}"
    assert email.subject == f"{label} – “{HEADING}”"
    assert f"[{label}] {HEADING}" in email.body
    assert label in words(html_part(email))
    # The label names the day it was due; the date for answer (an earlier day) is not shown beside it.
    assert "Due for answer" not in email.body


def test_a_follower_who_chose_a_daily_digest_finds_it_there():
    day = TODAY - dt.timedelta(days=1)
    question = land(named_day(day=day))
    follow_question("ada@example.org", question, frequency=Subscription.Frequency.DAILY)

    record_overdue(TODAY)

    assert deliver() == []
    build_run(digest_run_now(Subscription.Frequency.DAILY))
    deliver()
    [email] = mail.outbox
    assert email.subject == f"Not answered on its named day, {day_month(day)} – “{HEADING}”"


def test_saved_searches_are_not_told_and_a_question_answered_before_matching_is_not_told_as_overdue():
    question = land(named_day())
    search = subscribe("bo@example.org", "boilers")
    follow = follow_question("ada@example.org", question)
    deliver()
    mail.outbox.clear()

    record_overdue(TODAY)
    land(answered(named_day()))
    emails = deliver()

    told = {m.to[0]: m.subject for m in emails}
    assert told.keys() == {"ada@example.org", "bo@example.org"}
    assert told["ada@example.org"] == f"Answered: “{HEADING}”"
    assert told["bo@example.org"].startswith(f"New answer: {HEADING}")
    kinds = dict(QuestionEvent.objects.values_list("pk", "kind"))
    assert "overdue" not in [kinds[event] for _, event in pairs()]
    assert sorted(alert for alert, event in pairs() if kinds[event] == "answered") == sorted([follow.pk, search.pk])


# Saying when the answer is due, where a follow is asked for.


def test_the_follow_form_and_its_confirmation_say_when_the_answer_is_due(client):
    day = TODAY + dt.timedelta(days=3)
    named = land(named_day("wq-named", day=day))
    plain = land(record("wq-plain"))

    page = words(client.get(named.get_absolute_url()).content)
    assert f"If it is not answered on its named day, {day_month(day)}, we tell you once." in page
    page = words(client.get(plain.get_absolute_url()).content)
    assert f"If it is not answered by {day_month(plain.date_due)}, when it is due, we tell you once." in page

    client.post(f"/alerts/follow/{named.pk}/", {"email": "ada@example.org", "website": ""})
    [confirmation] = mail.outbox
    note = f"when this question is answered: {HEADING} (to be answered on its named day, {day_month(day)})"
    assert note in confirmation.body and note in words(html_part(confirmation))
    shown = words(client.get(link_in(confirmation, "/alerts/confirm/")).content)
    assert f"When this question is answered: {HEADING} (to be answered on its named day, {day_month(day)})" in shown


# Only days the sources have been read for: an answer late on its day, or during an outage, is not missed.


def polled(at: dt.datetime, failures: int = 0, name: str = "API") -> Source:
    return Source.objects.create(name=name, kind=Source.Kind.PARLIAMENT_API, url="http://127.0.0.1:9/",
                                 last_success_at=at, consecutive_failures=failures)


def test_overdue_counts_only_days_every_source_has_been_read_for():
    now = london(2027, 3, 13, 9)
    assert known_day(now) is None  # nothing polled: nothing known
    api = polled(london(2027, 3, 13, 0, 10))
    assert known_day(now) == dt.date(2027, 3, 13)
    feed = polled(london(2027, 3, 12, 23, 50), name="Feed")
    # The feed was last read before midnight: an answer it brings at 23:55 on the 12th is not in yet.
    assert known_day(now) == dt.date(2027, 3, 12)
    Source.objects.filter(pk=feed.pk).update(consecutive_failures=3)
    assert known_day(now) is None
    Source.objects.filter(pk=feed.pk).update(enabled=False)
    assert known_day(now) == dt.date(2027, 3, 13)
    Source.objects.filter(pk=api.pk).update(last_success_at=None)
    assert known_day(now) is None


def test_no_follower_is_told_of_a_question_due_on_a_day_the_api_has_not_been_read_for():
    question = land(named_day(day=TODAY - dt.timedelta(days=1)))
    follow_question("ada@example.org", question)
    deliver()
    # The API failed since yesterday morning: the answer may have come and not been read.
    polled(timezone.now() - dt.timedelta(days=1), failures=2)
    assert record_overdue_task() == 0
    Source.objects.update(consecutive_failures=0)
    assert record_overdue_task() == 0  # read yesterday: the named day, yesterday, is not over as far as it knows
    Source.objects.update(last_success_at=timezone.now())
    sent = len(mail.outbox)
    assert record_overdue_task() == 1  # and, tasks running in this process, matched and sent
    assert len(mail.outbox) == sent + 1 and mail.outbox[-1].to == ["ada@example.org"]
    assert "Not answered on its named day" in mail.outbox[-1].subject


def test_a_question_whose_due_date_moved_later_is_not_told_as_overdue():
    question = land(ordinary(due_before=TODAY - dt.timedelta(days=1)))
    follow_question("ada@example.org", question)
    deliver()
    record_overdue(TODAY)
    # A date for answer arrived before matching: the question is due next week now.
    Question.objects.filter(pk=question.pk).update(date_due=TODAY + dt.timedelta(days=7))
    assert deliver() == []


# The stack: beat's hourly entry on a real worker, the clock moved past a named day.


def runs(log, since: int) -> list[int]:
    """What each run of the task on the worker since `since` returned (the events it made), from its log."""
    text = log.read_bytes()[since:].decode(errors="replace")
    return [int(json.loads(line)["data"]["return_value"]) for line in text.splitlines()
            if "questions.record_overdue" in line and "succeeded" in line]


@pytest.mark.worker
@pytest.mark.postgres
def test_a_follower_gets_one_email_when_the_named_day_passes_with_beat_running_every_hour(worker_env, esp_server,
                                                                                           clock):  # noqa: F811
    named = dt.date(2027, 3, 12)
    question = land(named_day(day=named, date_tabled=dt.date(2027, 3, 8)))
    follow_question("ada@example.org", question)
    # A saved search of the department's overdue questions, whose due field the worker reads on its own clock,
    # and an ordinary search of the same questions, which is not told.
    subscribe("bo@example.org", 'department:"Department for Education" due:overdue', alert_on="overdue")
    subscribe("cy@example.org", 'department:"Department for Education"')
    QuestionEvent.objects.update(matched_at=timezone.now())  # the tabling, told long ago
    from django_celery_beat.models import PeriodicTask

    beat_sends_due_emails(every_seconds=1)
    schedule.sync(only=["Record overdue questions"])
    first = london(2027, 3, 13, 9)
    polled(first - dt.timedelta(minutes=30))
    # Last run just over an hour before the faked clock: beat runs it as it starts, then hourly.
    PeriodicTask.objects.update(last_run_at=first - dt.timedelta(hours=1, minutes=1))
    clock.set(first)
    env = clock.env(esp_env(worker_env, esp_server))
    log = ROOT / "var" / f"test-worker-{os.getpid()}.log"  # where `start` has the worker write
    since = log.stat().st_size if log.exists() else 0
    worker, beat = start(env), start(env, beat=True)
    assert worker.log == log
    stub = esp_server.stub
    try:
        wait_until(lambda: emails_to(stub, "ada@example.org"), timeout=90, message="the overdue email")
        wait_until(lambda: len(runs(log, since)) >= 1, timeout=30, message="the first hourly run")
        clock.set(first + dt.timedelta(hours=1, minutes=1))
        wait_until(lambda: len(runs(log, since)) >= 2, timeout=90, message="the second hourly run")
        clock.set(first + dt.timedelta(hours=2, minutes=2))
        wait_until(lambda: len(runs(log, since)) >= 3, timeout=90, message="the third hourly run")
        # Time for anything the later runs queued to be matched and sent.
        wait_until(lambda: not QuestionEvent.objects.filter(matched_at__isnull=True).exists(), timeout=30,
                   message="every event matched")
        time.sleep(3)
    finally:
        beat.stop()
        worker.stop()
    assert runs(log, since) == [1, 0, 0]
    [email] = emails_to(stub, "ada@example.org")
    assert email["Subject"] == f"Not answered on its named day, 12 March – “{HEADING}”"
    assert f"[Not answered on its named day, 12 March] {HEADING}" in email["TextBody"]
    event = QuestionEvent.objects.get(kind="overdue")
    # Made on the worker's clock, the day after the named day.
    assert timezone.localtime(event.created_at).date() == dt.date(2027, 3, 13)
    [search_email] = emails_to(stub, "bo@example.org")
    assert search_email["Subject"].startswith(f"Not answered on time: {HEADING}")
    assert emails_to(stub, "cy@example.org") == []
    assert len(stub.messages) == 2

