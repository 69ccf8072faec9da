"""What an alert email says: a subject that tells a new question from an answer and a correction, counts each
kind, and names the alert or its search in words; a correction shown as what changed; and each question's
dates."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from alerts.changes import SHOWN_MAX, answer_changes
from alerts.matching import match_events
from alerts.models import Delivery
from alerts.readable import readable
from questions.due import working_days_after
from questions.ingest import upsert
from questions.models import Question, QuestionEvent
from questions.polling import poll_source
from questions.search import canonical, parse
from tests.conftest import api_client, deliver, html_part, run_digest, words
from tests.factories import (
    ANSWER,
    CORRECTED,
    HEADING,
    TODAY,
    answered,
    corrected,
    follow_question,
    holding,
    land,
    real_record,
    record,
    stamp,
    subscribe,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_percolators")]

def day(date: dt.date) -> str:
    """A date as emails write it: "Monday 7th December 2026"."""
    suffix = "th" if 11 <= date.day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(date.day % 10, "th")
    return f"{date:%A} {date.day}{suffix} {date:%B %Y}"


# --- Subjects ----------------------------------------------------------------------------------------------


def test_a_new_question_an_answer_and_a_correction_each_have_their_own_subject():
    subscribe("ada@example.org", "boilers")

    land(record())
    [tabled] = deliver()
    land(answered(record()))
    [answer] = deliver()
    land(corrected(record()))
    [correction] = deliver()

    assert tabled.subject == f"New question: {HEADING} – ‘boilers’"
    assert answer.subject == f"New answer: {HEADING} – ‘boilers’"
    assert correction.subject == f"Answer corrected: {HEADING} – ‘boilers’"


def test_an_answers_only_alert_is_told_of_an_answer_not_a_new_question():
    subscribe("ada@example.org", "boilers", alert_on="answers")
    land(record())
    assert deliver() == []

    land(holding(record()))
    [held] = deliver()
    land(answered(record()))
    [answer] = deliver()

    assert held.subject == f"Holding answer: {HEADING} – ‘boilers’"
    assert answer.subject == f"New answer: {HEADING} – ‘boilers’"


def test_a_digest_counts_each_kind_of_news_once_per_question():
    subscribe("ada@example.org", "boilers", label="School boilers", frequency="daily")
    subscribe("ada@example.org", "heating", label="Heating", frequency="daily")
    # Since the last digest: two new questions, one answered, one answered earlier and now corrected, and one
    # both tabled and answered, which is listed, and counted, once, as answered.
    land(record("wq-3"))
    land(answered(record("wq-4")))
    QuestionEvent.objects.update(matched_at=timezone.now())
    land(record("wq-1"))
    land(record("wq-2"))
    land(answered(record("wq-3")))
    land(corrected(record("wq-4")))
    land(answered(record("wq-5")))
    match_events()

    run_digest("daily")

    [digest] = mail.outbox
    end = timezone.localdate()
    assert digest.subject == (f"Daily digest, {end:%-d %B %Y}: 2 new questions, 2 answers and 1 corrected answer "
                              "match 2 of your alerts")
    listed = [line for line in digest.body.splitlines() if line.startswith("[")]
    assert sorted(listed) == sorted([f"[New question] {HEADING}"] * 2 + [f"[Answered] {HEADING}"] * 2
                                    + [f"[Answer corrected] {HEADING}"])


def test_one_question_and_one_new_answer_are_counted_with_the_right_grammar():
    subscribe("ada@example.org", "boilers", frequency="daily")
    land(record("wq-1"))
    land(answered(record("wq-2")))
    match_events()

    run_digest("daily")

    [digest] = mail.outbox
    assert digest.subject.endswith(": 1 new question and 1 answer match ‘boilers’")


def test_an_alert_with_a_name_is_called_by_its_name():
    subscribe("ada@example.org", 'member:"Jane Example"', label="Jane’s questions")
    land(record())

    [email] = deliver()

    assert email.subject == f"New question: {HEADING} – ‘Jane’s questions’"


def test_a_search_without_a_name_is_said_in_words_without_its_syntax():
    subscribe("ada@example.org", 'member:"Jane Example" (boilers OR radiators) -scotland')
    subscribe("bo@example.org", 'department:"Department for Education" heading:heating')
    land(record())

    emails = {m.to[0]: m.subject for m in deliver()}

    assert emails == {
        "ada@example.org": f"New question: {HEADING} – ‘asked by Jane Example, (boilers or radiators), not scotland’",
        "bo@example.org": f"New question: {HEADING} – ‘to Department for Education, heating in the heading’",
    }
    for subject in emails.values():
        named = subject.split(" – ", 1)[1]
        assert ":" not in named and '"' not in named and "OR" not in named and "-" not in named


@pytest.mark.parametrize(("query", "said"), [
    ('member:"Clive Lewis"', "asked by Clive Lewis"),
    ('"housing benefit"', "housing benefit"),
    ("housing benefit", "housing benefit"),
    ("housing OR rent", "housing or rent"),
    ("(housing OR rent) benefit", "(housing or rent) benefit"),
    ("police NOT Scotland", "police, not Scotland"),
    ("hous* minister:Hall", "hous…, answered by Hall"),
    ('party:Labour constituency:"Norwich South" house:commons uin:12345',
     "Labour party, Norwich South constituency, in the commons, UIN 12345"),
    ('heading:schools question:boilers answer:"£50 million"',
     "schools in the heading, boilers in the question, 50 million in the answer"),
    ("NHS AND (Wales OR Scotland AND nurses)", "NHS (Wales or (Scotland nurses))"),
    ("Siân Berry", "Siân Berry"),
    ('department:education Department:"Home Office"', "to education, to Home Office"),
])
def test_a_search_in_words(query, said):
    # From the stored canonical form, as emails read it, with the words spelt as typed.
    assert readable(parse(canonical(parse(query))), query) == said


def test_a_subject_stays_one_line_and_short_however_long_the_heading_and_the_search():
    long_query = " ".join(f"word{n}" for n in range(60))
    subscribe("ada@example.org", long_query)
    land(record(heading="Schools: " + "Heating " * 60, question_text=long_query))

    [email] = deliver()

    assert "\n" not in email.subject and len(email.subject) < 220
    title, named = email.subject.split(" – ")
    assert title.startswith("New question: Schools: Heating") and title.endswith("…")
    assert named.startswith("‘word0 word1 word2") and named.endswith("…’")


def test_a_follow_says_what_happened_to_the_question_it_follows():
    question = land(record())
    follow_question("ada@example.org", question)
    QuestionEvent.objects.update(matched_at=timezone.now())

    land(answered(record()))
    [answer] = deliver()
    land(corrected(record()))
    [correction] = deliver()

    assert answer.subject == f"Answered: “{HEADING}”"
    assert correction.subject == f"Answer corrected: “{HEADING}”"


# --- Corrections -------------------------------------------------------------------------------------------


def test_a_correction_keeps_the_answer_it_replaced_and_a_backfill_alerts_nobody():
    land(answered(record()))
    upsert([corrected(record())], alert=False)
    upsert([corrected(record(), "Corrected again: £40 million.")])

    backfilled, polled = QuestionEvent.objects.filter(kind="corrected").order_by("pk")
    assert (backfilled.answer_before, backfilled.matched_at is not None) == (ANSWER, True)
    assert (polled.answer_before, polled.matched_at) == (CORRECTED, None)
    assert not QuestionEvent.objects.exclude(kind="corrected").exclude(answer_before="").exists()


def test_a_correction_polled_from_the_api_keeps_the_answer_it_replaced(stub, source):
    stub.put(real_record(1003))
    poll_source(source, api_client())  # the source's first poll: a backfill
    first = Question.objects.get(external_id="1003").answer_text
    stub.update(1003, answerText="<p>Corrected: there are now 45 FJAAs.</p>", answerIsCorrection=True,
                dateAnswerCorrected=stamp(TODAY))

    poll_source(source, api_client())

    [correction] = QuestionEvent.objects.filter(kind="corrected")
    assert correction.answer_before == first and "FJAAs" in first and correction.matched_at is None


def test_a_correction_email_shows_what_changed_in_html_and_text():
    subscribe("ada@example.org", "boilers")
    land(answered(record()))
    deliver()

    land(corrected(record()))
    [email] = deliver()

    shown = words(html_part(email))
    assert "What the correction changed" in shown
    assert ("Words removed are struck through and marked “Removed”; words added are underlined and marked “Added”."
            in shown)
    assert "We have given schools [Removed: £50 ] [Added: £45 ] million for new boilers this year." in shown
    assert '<del style="' in html_part(email) and ">£50</del>" in html_part(email)
    assert ">£45</ins>" in html_part(email)
    assert "What the correction changed ([-removed words-] {+added words+}):" in email.body
    assert "We have given schools [-£50-] {+£45+} million for new boilers this year." in email.body
    # The answer as it is now follows, as in any email.
    assert CORRECTED in email.body and CORRECTED in shown


def test_a_question_corrected_twice_before_its_digest_shows_the_change_from_the_answer_first_sent():
    subscribe("ada@example.org", "boilers", frequency="daily")
    land(answered(record()))
    QuestionEvent.objects.update(matched_at=timezone.now())
    land(corrected(record()))
    land(corrected(record(), "We have given schools £40 million for new boilers this year."))
    match_events()

    run_digest("daily")

    [digest] = mail.outbox
    assert "We have given schools [-£50-] {+£40+} million" in digest.body
    assert digest.subject.endswith(": 1 corrected answer matches ‘boilers’")


def test_the_change_of_a_long_answer_is_cut_like_any_text_in_an_email():
    before = " ".join(f"Paragraph {n} says the figure was {n * 3}." for n in range(2000))
    after = " ".join(f"Paragraph {n} says the figure was {n * 3 + 1}." for n in range(2000))
    subscribe("ada@example.org", "boilers")
    land(answered(record(), before))
    deliver()

    land(corrected(record(), after))
    [email] = deliver()

    changes = answer_changes(before, after)
    assert changes.cut and sum(len(part.text) for part in changes.parts) <= SHOWN_MAX
    assert "More was changed than is shown here: read the whole answer" in words(html_part(email))
    assert "More was changed than is shown here: read the whole answer on its page." in email.body
    assert len(html_part(email)) < 20_000 and len(email.body) < 10_000


def test_a_change_of_spacing_alone_shows_no_changes():
    assert not answer_changes("We have given\n\nschools £50 million.", "We have given schools £50 million.")
    changes = answer_changes("One two three.", "One two four.")
    assert [(p.kind, p.text) for p in changes.parts] == [("same", "One two"), ("removed", "three."),
                                                          ("added", "four.")]


def test_a_correction_seen_before_its_answer_was_kept_shows_the_answer_without_a_change():
    subscribe("ada@example.org", "boilers")
    land(answered(record()))
    deliver()
    land(corrected(record()))
    QuestionEvent.objects.filter(kind="corrected").update(answer_before="")

    [email] = deliver()

    assert "What the correction changed" not in email.body and CORRECTED in email.body
    assert email.subject == f"Answer corrected: {HEADING} – ‘boilers’"


# --- Dates -------------------------------------------------------------------------------------------------


def test_each_question_shows_its_dates_and_the_day_its_answer_is_due():
    subscribe("ada@example.org", "boilers")
    tabled, due = TODAY - dt.timedelta(days=2), TODAY + dt.timedelta(days=5)
    land(record("wq-1", is_named_day=True))
    land(record("wq-2", heading="Schools: Boilers"))

    [email] = deliver()

    for part in (email.body, words(html_part(email))):
        assert f"Tabled {day(tabled)} · Due for answer on {day(due)} (a named day) · Commons UIN" in part
        # An ordinary question is due a working week from tabling: three working days after its date for answer.
        assert f"Tabled {day(tabled)} · Due for answer by {day(working_days_after(due, 3))} · Commons UIN" in part

    land(holding(record("wq-1", is_named_day=True)))
    [held] = deliver()
    assert f"Tabled {day(tabled)} · Holding answer {day(TODAY)} · Due for answer on {day(due)}" in held.body

    land(answered(record("wq-1", is_named_day=True, date_holding_answer=TODAY)))
    [answer] = deliver()
    assert f"Tabled {day(tabled)} · Holding answer {day(TODAY)} · Answered {day(TODAY)} · Commons UIN" in answer.body
    assert "Due for answer" not in answer.body

    land(corrected(record("wq-1", is_named_day=True, date_holding_answer=TODAY)))
    [correction] = deliver()
    shown = words(html_part(correction))
    for part in (correction.body, shown):
        assert f"Tabled {day(tabled)} · Holding answer {day(TODAY)} · Answered {day(TODAY)} · Corrected {day(TODAY)}" \
            in part


def test_the_stored_email_is_the_one_sent():
    subscribe("ada@example.org", "boilers")
    land(answered(record()))
    deliver()
    land(corrected(record()))

    [email] = deliver()

    delivery = Delivery.objects.latest("pk")
    assert (delivery.subject, delivery.body_text, delivery.body_html) == (email.subject, email.body,
                                                                          html_part(email))


def test_a_withdrawn_question_is_not_said_to_be_due():
    question = land(record())
    follow_question("ada@example.org", question)
    QuestionEvent.objects.update(matched_at=timezone.now())

    land(dataclasses.replace(record(), is_withdrawn=True))
    [email] = deliver()

    assert "Due for answer" not in email.body and f"Tabled {day(TODAY - dt.timedelta(days=2))}" in email.body


def test_a_single_changed_word_longer_than_the_room_is_cut_not_dropped():
    address = "https://example.org/" + "a" * 600
    changes = answer_changes("See the guidance.", f"See {address} for the guidance.")
    added = [part.text for part in changes.parts if part.kind == "added"]
    assert changes and changes.cut and added and added[0].startswith("https://example.org/aaa") and "…" in added[0]


def test_a_correction_of_repeated_figures_is_worked_out_at_once():
    # Compared exactly, a thousand repeated words on each side take seconds of a worker's time: the comparison
    # must stay near linear. Here, the work is counted in the comparisons difflib makes, not timed.
    import difflib

    calls = 0
    real = difflib.SequenceMatcher.find_longest_match

    def counted(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return real(self, *args, **kwargs)

    difflib.SequenceMatcher.find_longest_match = counted
    try:
        changes = answer_changes("y " + "0 " * 999, "0 1 " * 499 + "x")
    finally:
        difflib.SequenceMatcher.find_longest_match = real
    assert changes and calls < 50
