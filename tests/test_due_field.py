"""The due field of the query language (docs/query-language.md, section 8) and alerts of the questions that go
overdue. On real records, on the day they are read: the search page's SQL, the evaluator and the percolator select
the same questions, on SQLite and PostgreSQL, and `due:overdue` is the search page's "overdue now" filter; a
search the field refuses is refused with the same message by the search page, its feed and the alert form. A saved
search of a department's overdue questions is emailed once when one of them goes overdue, and an ordinary search
of the same questions never. A department's page offers that alert, confirmed by email, and a feed of its overdue
questions. Saved searches that had `due:` as text before keep their meaning."""

from __future__ import annotations

import datetime as dt
import importlib
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from django.core import mail

from alerts.models import Match, Subscription
from questions.models import Question, QuestionEvent
from questions.overdue import record_overdue
from questions.search import QueryError, canonical, matches, parse
from questions.search.percolate import QueryIndex, iter_bits
from questions.searching import Filters, matching
from questions.views import FEED_SIZE
from tests.conftest import deliver, link_in, sign_up, words
from tests.factories import TODAY, follow_question, land, pairs, record, subscribe
from tests.test_timeliness import JUSTICE, anchors, at, store_archive
from tests.test_timeliness import TODAY as SAMPLE_DAY

pytestmark = pytest.mark.django_db(transaction=True)

# Searches with the due field alone, with words, negated and in alternatives.
QUERIES = [
    "due:overdue",
    "due:late",
    "due:named",
    "due:(overdue OR late)",
    "due:named -due:late",
    "due:named AND NOT due:overdue",
    f'department:"{JUSTICE}" due:overdue',
    "justice -due:named",
    "prison OR due:named",
    "NOT due:overdue department:(justice OR equalities)",
]


def selected(query: str, documents: dict[int, dict[str, str]]) -> tuple[set[int], set[int], set[int]]:
    """The questions `query` selects: by the search page's SQL, by the evaluator, and by the percolator."""
    node = parse(query)
    by_sql = set(matching(node).values_list("pk", flat=True))
    by_evaluator = {pk for pk, document in documents.items() if matches(node, document)}
    index = QueryIndex()
    index.add(canonical(node))
    keys = list(documents)
    masks = index.match_ids(list(documents.values()))
    by_percolator = {keys[position] for mask in masks.values() for position in iter_bits(mask)}
    return by_sql, by_evaluator, by_percolator


def test_the_search_page_the_evaluator_and_the_percolator_agree_on_real_records(monkeypatch):
    store_archive()
    at(monkeypatch, SAMPLE_DAY)
    today = dt.date.fromisoformat(SAMPLE_DAY)
    documents = {question.pk: question.search_document(today) for question in Question.objects.public()}

    found = {}
    for query in QUERIES:
        by_sql, by_evaluator, by_percolator = selected(query, documents)
        assert by_sql == by_evaluator == by_percolator, query
        found[query] = by_sql
    # Each state is there to be found in the sample, and each condition picks out some questions only.
    for query in QUERIES[:3]:
        assert 0 < len(found[query]) < len(documents), query
    # The search page's "overdue now" and "answered late" filters are the field's words.
    for timing in ("overdue", "late"):
        assert found[f"due:{timing}"] == set(Question.objects.filter(Filters(timing=timing).q()).values_list("pk",
                                                                                                             flat=True))
    # As Python says of each question on that day.
    overdue = {question.pk for question in Question.objects.public() if question.is_overdue(today)}
    assert found["due:overdue"] == overdue


def test_overdue_is_read_on_the_day_the_search_is_made(monkeypatch):
    question = land(record("wq-1", is_named_day=True, date_for_answer=TODAY + dt.timedelta(days=2)))
    assert set(matching(parse("due:overdue"))) == set()
    at(monkeypatch, (TODAY + dt.timedelta(days=3)).isoformat())
    assert set(matching(parse("due:overdue"))) == {question}
    assert matches(parse("due:overdue"), Question.objects.get().search_document())


REFUSED = {
    "due:tomorrow": '"tomorrow" at character 5 is not something the field "due:" can look for: it takes one of '
                    "the words overdue, late or named, on its own.",
    'due:"overdue"': '"overdue" at character 5 is not something the field "due:" can look for: it takes one of '
                     "the words overdue, late or named, on its own.",
    "police due:(overdue OR over*)": '"over*" at character 24 is not something the field "due:" can look for: it '
                                     "takes one of the words overdue, late or named, on its own.",
}


@pytest.mark.parametrize("query", REFUSED)
def test_a_refused_due_field_is_refused_alike_everywhere(client, query):
    message = REFUSED[query]
    with pytest.raises(QueryError) as refused:
        parse(query)
    assert refused.value.message == message

    page = client.get("/", {"q": query})
    assert page.status_code == 400 and message in words(page.content)
    feed = client.get("/feeds/search.rss", {"q": query})
    assert feed.status_code == 400 and feed.content.decode() == message
    form = sign_up(client, q=query, alert_on="overdue")
    assert message in words(form.content)
    assert not Subscription.objects.exists()


def named_day(external_id: str, department: str, day: dt.date = TODAY - dt.timedelta(days=1)):
    return record(external_id, is_named_day=True, date_for_answer=day, answering_body_name=department,
                  heading=f"A question to the {department}")


def test_a_saved_search_of_a_departments_overdue_questions_is_emailed_once_and_an_ordinary_one_never():
    home_office = land(named_day("wq-home", "Home Office"))
    land(named_day("wq-justice", JUSTICE))
    told = subscribe("ho@example.org", 'department:"home office" due:overdue', alert_on="overdue")
    also = subscribe("any@example.org", 'department:"home office"', alert_on="overdue")
    ordinary = subscribe("bo@example.org", 'department:"home office"')
    answers = subscribe("an@example.org", 'department:"home office"', alert_on="answers")
    deliver()
    mail.outbox.clear()

    assert record_overdue(TODAY) == 2
    emails = deliver()

    subject = "Not answered on time: A question to the Home Office – "
    assert sorted(email.to[0] for email in emails) == ["any@example.org", "ho@example.org"]
    for email in emails:
        assert email.subject.startswith(subject)
        assert f"Not answered on its named day, {(TODAY - dt.timedelta(days=1)):%-d %B}" in words(email.body)
    overdue = QuestionEvent.objects.filter(kind="overdue").in_bulk()
    assert [(alert, overdue[event].question_id) for alert, event in pairs() if event in overdue] \
        == sorted([(told.pk, home_office.pk), (also.pk, home_office.pk)])
    assert not any(alert in (ordinary.pk, answers.pk) and event in overdue for alert, event in pairs())

    # Never twice, whatever runs again.
    record_overdue(TODAY)
    record_overdue(TODAY + dt.timedelta(days=1))
    assert deliver() == []


def test_an_overdue_question_answered_before_it_is_matched_is_not_told_as_overdue():
    land(named_day("wq-home", "Home Office"))
    subscribe("ho@example.org", 'department:"home office" due:overdue', alert_on="overdue")
    record_overdue(TODAY)
    question = Question.objects.get()
    question.answer_text, question.answer_is_holding = "An answer.", False
    question.save()

    assert deliver() == []
    assert not Match.objects.exists()


def test_a_department_page_offers_an_alert_of_its_overdue_questions_and_their_feed(client, monkeypatch):
    store_archive()
    at(monkeypatch, SAMPLE_DAY)
    page = client.get("/departments/ministry-of-justice/")
    links = anchors(page.content.decode())

    alert = links["Email me when this department’s questions go overdue"]
    query = parse_qs(urlsplit(alert).query)
    assert query == {"q": ['department:"ministry of justice" due:overdue'], "alert_on": ["overdue"]}
    form = client.get(alert).context["form"]
    assert form["q"].value() == 'department:"ministry of justice" due:overdue'
    assert form["alert_on"].value() == "overdue"

    # The feed, fetched as a feed reader would: the department's questions overdue today, and only those.
    feed = client.get(links["RSS feed of the questions overdue now"])
    assert feed.status_code == 200
    titles = [item.findtext("title") for item in ET.fromstring(feed.content).iter("item")]
    today = dt.date.fromisoformat(SAMPLE_DAY)
    overdue = [question.title for question in Question.objects.public().filter(answering_body_name=JUSTICE)
               .order_by("-date_tabled", "-id") if question.is_overdue(today)]
    # Newest first, as many as a feed holds, each saying since when it is overdue.
    assert len(overdue) > FEED_SIZE and titles == overdue[:FEED_SIZE]
    first = Question.objects.get(pk=matching(parse(query["q"][0])).values_list("pk", flat=True)[0])
    description = next(ET.fromstring(feed.content).iter("item")).findtext("description")
    assert description.startswith(f"<p><strong>{first.overdue_label}</strong></p>")
    atom = client.get(links["Atom feed of the questions overdue now"])
    assert atom.status_code == 200 and atom.content.count(b"<entry>") == FEED_SIZE
    listed = client.get(links["The questions overdue now"])
    assert f"{len(overdue)} questions match" in words(listed.content)

    # Signed up through the form it offers, and confirmed by email: an alert of questions that go overdue.
    # Today again: the email queue's clock is the real one.
    monkeypatch.undo()
    sign_up(client, "ada@example.org", q=form["q"].value(), alert_on="overdue")
    [confirmation] = mail.outbox
    said = 'questions that go overdue matching department:"ministry of justice" due:overdue: as it happens'
    assert said in words(confirmation.body)
    confirmed = client.post(link_in(confirmation, "/alerts/confirm/"), follow=True)
    assert ("we’ll email you when questions that go overdue match “department:\"ministry of justice\" due:overdue”"
            in words(confirmed.content))
    alert = Subscription.objects.get(subscriber__email="ada@example.org")
    assert (alert.query, alert.alert_on, alert.confirmed_at is not None) == (
        'department:"ministry of justice" due:overdue', "overdue", True)
    assert alert.canonical_query == 'department:"ministry of justice" AND due:overdue'


def test_the_manage_page_says_a_followed_question_is_overdue(client):
    late = land(named_day("wq-late", "Home Office", day=TODAY - dt.timedelta(days=2)))
    waiting = land(named_day("wq-waiting", "Home Office", day=TODAY + dt.timedelta(days=2)))
    sign_up(client, "ada@example.org")
    manage = client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))["Location"]
    for question in (late, waiting):
        follow_question("ada@example.org", question, label=question.external_id)

    shown = words(client.get(manage).content)

    assert f"Following: A question to the Home Office Not answered on its named day, " \
           f"{(TODAY - dt.timedelta(days=2)):%-d %B}." in shown
    assert "Following: A question to the Home Office Waiting for an answer." in shown


def test_saved_searches_that_had_due_as_text_keep_their_meaning():
    migration = importlib.import_module("alerts.migrations.0020_due_field_and_overdue_alerts")
    subscriber = subscribe("ada@example.org", "police").subscriber
    # As they were saved before the field: `due:` was text, and the canonical text says so.
    before = {"due:overdue prisons": '"due overdue" AND prisons', "due:tomorrow": '"due tomorrow"',
              "overdue police": "overdue AND police",
              # Refused for a reason of its own (saved under rules since changed), not for a due field.
              "residue AND": "residue"}
    for query, text in before.items():
        Subscription.objects.create(subscriber=subscriber, query=query, canonical_query=text)

    migration.keep_meaning(apps, None)

    queries = dict(Subscription.objects.filter(canonical_query__in=before.values())
                   .values_list("canonical_query", "query"))
    assert queries == {'"due overdue" AND prisons': '"due overdue" AND prisons', '"due tomorrow"': '"due tomorrow"',
                       "overdue AND police": "overdue police", "residue": "residue AND"}
    for subscription in Subscription.objects.exclude(query="residue AND"):
        assert parse(subscription.query) == parse(subscription.canonical_query)


@pytest.mark.parametrize("query", ["due:tomorrow", 'due:"overdue"', "due:over*", "due:named-day", "NOT due:overdue",
                                   "due:(overdue OR police)", "due:"])
def test_what_section_8_refuses_is_refused(query):
    with pytest.raises(QueryError):
        parse(query)


@pytest.mark.parametrize(("query", "written"), [
    ("due:overdue", "due:overdue"),
    ("Due: Overdue", "due:overdue"),
    ("due:(overdue OR late)", "due:overdue OR due:late"),
    ('department:"Home Office" due:overdue', 'department:"home office" AND due:overdue'),
    ("prisons -due:late", "prisons AND NOT due:late"),
    ("department:(due:named)", "due:named"),
])
def test_what_section_8_reads(query, written):
    assert canonical(parse(query)) == written
