"""When an answer is due, and how late it came (questions/due.py, the help page's "When an answer is due"),
on real records of the bundled sample: named days, a recess, a bank holiday, a question with no date for
answer, holding answers. Then the search page's filters for them, the same on SQLite and PostgreSQL, and the
question page's words."""

from __future__ import annotations

import datetime as dt
import importlib
from functools import cache

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from questions.due import due_date
from questions.importing import read_records
from questions.ingest import upsert
from questions.models import Question
from questions.searching import Filters, search
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

D = dt.date.fromisoformat


@cache
def sample():
    return {record.external_id: record
            for record in read_records(FIXTURES / "written_questions_sample.jsonl.gz").records}


# Real questions of the sample, by their API ids.
NAMED = "1674573"  # UIN 4805, named day 6 December 2023, answered the 14th
RECESS_LATE = "1678642"  # UIN 7237, tabled 18 December 2023, date for answer 8 January 2024, answered the 12th
RECESS_ON_TIME = "1678643"  # UIN 7238, the same dates, answered 9 January
HOLDING = "1675093"  # UIN 4962, named day 7 December 2023, a holding answer that day, answered 11 January
BANK_HOLIDAY = "1906437"  # UIN 1869, tabled 18 May 2026, date for answer the 20th, not answered
BANK_HOLIDAY_TOO = "1906425"  # UIN 1880, the same
NO_DATE = "1656125"  # UIN 195831, tabled 1 September 2023 in recess, no date for answer, answered the 11th


def store(*ids: str) -> dict[str, Question]:
    upsert([sample()[key] for key in ids], alert=False)
    return {q.external_id: q for q in Question.objects.filter(external_id__in=ids)}


def at(monkeypatch, day: str) -> None:
    """Today, where the site is, is `day` (noon in London)."""
    moment = timezone.make_aware(dt.datetime.combine(D(day), dt.time(12)))
    monkeypatch.setattr(timezone, "now", lambda: moment)


@pytest.mark.parametrize(("key", "due", "why"), [
    # Named day: the day itself, whatever the weekday.
    (NAMED, "2023-12-06", "named day"),
    # Ordinary, date for answer Wednesday 20 May 2026: Thursday, Friday, then Tuesday (Monday 25 May is the Spring
    # bank holiday).
    (BANK_HOLIDAY, "2026-05-26", "bank holiday"),
    # Tabled 18 December 2023, date for answer 8 January 2024 after the Christmas recess: three working days on.
    (RECESS_LATE, "2024-01-11", "recess"),
    # Tabled in the September 2023 recess, with no date for answer: five working days from tabling.
    (NO_DATE, "2023-09-08", "no date for answer"),
])
def test_the_due_date_of_real_questions(key, due, why):
    question = store(key)[key]
    assert question.date_due == D(due), why
    assert due_date(question.date_tabled, question.date_for_answer, question.is_named_day) == D(due)


def test_how_late_real_answers_came():
    found = store(NAMED, RECESS_LATE, RECESS_ON_TIME, HOLDING, BANK_HOLIDAY)
    assert found[NAMED].days_late == 8  # named day 6 December 2023, answered the 14th
    assert found[RECESS_LATE].days_late == 1
    assert found[RECESS_ON_TIME].days_late == 0
    # A holding answer on its named day (7 December 2023) does not stop the clock: the answer came 11 January.
    assert found[HOLDING].date_holding_answer == D("2023-12-07") and found[HOLDING].days_late == 35
    assert found[BANK_HOLIDAY].days_late is None


def test_overdue_is_past_the_due_date_with_no_answer_but_a_holding_one(monkeypatch):
    found = store(BANK_HOLIDAY, NAMED)
    unanswered, answered = found[BANK_HOLIDAY], found[NAMED]
    assert not unanswered.is_overdue(D("2026-05-26")) and unanswered.is_overdue(D("2026-05-27"))
    assert unanswered.days_overdue(D("2026-06-01")) == 6
    assert not answered.is_overdue(D("2030-01-01"))
    unanswered.answer_text, unanswered.answer_is_holding = "I will reply as soon as possible.", True
    assert unanswered.is_overdue(D("2026-05-27"))
    unanswered.is_withdrawn = True
    assert not unanswered.is_overdue(D("2026-05-27"))


def test_the_migration_fills_every_question_with_what_the_rule_says():
    records = list(sample().values())[:3000]
    upsert(records, alert=False)
    expected = dict(Question.objects.values_list("pk", "date_due"))
    assert sum(day is not None for day in expected.values()) > 2900
    Question.objects.update(date_due=None)
    fill = importlib.import_module("questions.migrations.0018_fill_due_dates").fill
    fill(apps, connection.schema_editor(atomic=False))  # only its connection is used
    assert dict(Question.objects.values_list("pk", "date_due")) == expected


UINS = (NAMED, RECESS_LATE, RECESS_ON_TIME, HOLDING, BANK_HOLIDAY, BANK_HOLIDAY_TOO, NO_DATE)


def found(query: str = "", **filters) -> set[str]:
    rows = search(query, Filters(**filters)) if query else Question.objects.filter(Filters(**filters).q())
    return set(rows.values_list("external_id", flat=True))


def test_the_search_filters_for_when_answers_are_due(monkeypatch):
    questions = store(*UINS)
    at(monkeypatch, "2026-06-01")
    today = timezone.localdate()
    # What each filter must give, from the questions' own rule.
    overdue = {key for key, q in questions.items() if q.is_overdue(today)}
    late = {key for key, q in questions.items() if q.days_late}
    assert overdue == {BANK_HOLIDAY, BANK_HOLIDAY_TOO} and late == {NAMED, RECESS_LATE, HOLDING, NO_DATE}
    assert found(timing="overdue") == overdue
    assert found(timing="late") == late
    assert found(named_day=True) == {NAMED, HOLDING}
    assert found(timing="late", named_day=True) == {NAMED, HOLDING}
    assert found(due_from=D("2024-01-01"), due_to=D("2024-01-31")) == {RECESS_LATE, RECESS_ON_TIME}
    assert found(due_to=D("2023-12-06")) == {NAMED, NO_DATE}
    # With words too, through the search's own roads on PostgreSQL.
    assert found("answer", timing="late") == {q for q in late if "answer" in questions[q].norm_question
                                              + questions[q].norm_heading + questions[q].norm_answer} | (
        found("answer") & late)
    # The day before 1869 and 1880 fall due, nothing is overdue.
    at(monkeypatch, "2026-05-26")
    assert found(timing="overdue") == set()


def test_the_search_page_offers_the_filters_and_the_question_page_says_when_due(client, monkeypatch):
    store(*UINS)
    at(monkeypatch, "2026-06-01")
    page = client.get("/", {"timing": "overdue"})
    assert page.status_code == 200
    assert {q.external_id for q in page.context["page"]} == {BANK_HOLIDAY, BANK_HOLIDAY_TOO}
    text = page.content.decode()
    assert "Overdue: due 26th May 2026</strong> (6 days ago)" in text
    # An alert carries the filter in the language's due field, and hears of each question as it goes overdue.
    alerting = client.get("/", {"q": "crime", "timing": "overdue"}).content.decode()
    assert "?q=%28crime%29%20AND%20due%3Aoverdue&amp;alert_on=overdue" in alerting
    assert "apply to this page only" not in alerting
    # So does the due field typed, where every match must be overdue; not where it is one choice of several.
    typed = client.get("/", {"q": "crime due:overdue"}).content.decode()
    assert "?q=crime%20due%3Aoverdue&amp;alert_on=overdue" in typed
    assert "alert_on=" not in client.get("/", {"q": "crime OR due:overdue"}).content.decode()
    assert "alert_on=" not in client.get("/", {"q": "crime due:late"}).content.decode()

    def shown(key: str) -> str:
        question = Question.objects.get(external_id=key)
        return client.get(question.get_absolute_url()).content.decode()

    assert "<strong>Answered 8 days after its named day</strong>, 6th December 2023." in shown(NAMED)
    assert "Answered on time (due 11th January 2024)." not in shown(RECESS_LATE)
    assert "<strong>Answered 1 day late</strong> (due 11th January 2024)." in shown(RECESS_LATE)
    assert "Answered on time (due 11th January 2024)." in shown(RECESS_ON_TIME)
    assert "A holding answer was given first, on 7th December 2023." in shown(HOLDING)
    assert 'href="/help/#due"' in shown(BANK_HOLIDAY)
    at(monkeypatch, "2026-05-22")
    assert "Due for answer by 26th May 2026." in shown(BANK_HOLIDAY)
    assert '<h2 id="due">When an answer is due</h2>' in client.get("/help/").content.decode()
