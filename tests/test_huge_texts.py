"""Texts of a megabyte from a source: what is stored is capped and says it was cut, and no page or email grows
with them (an ESP refuses an email over 10 MB). The source is a real local HTTP server in the API's shape."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.conf import settings
from django.utils import timezone

from alerts.delivery import deliver_immediate, send_due
from alerts.matching import match_events
from questions import html
from questions.models import Question, Source
from questions.polling import poll_source
from questions.records import TEXT_LIMITS
from questions.views import FEED_SIZE
from tests.conftest import api_client
from tests.factories import real_record, subscribe
from tests.parliament_stub import LIST_PATH, ParliamentStub

MEGABYTE = 1_000_000
FIRST_ID = 2000


def megabyte_of(word: str) -> str:
    return (word + " ") * (MEGABYTE // (len(word) + 1))


@pytest.fixture
def huge_questions(httpserver):
    """As many questions as one email lists, each with a megabyte of question and of answer, polled."""
    stub = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(stub)
    for api_id in range(FIRST_ID, FIRST_ID + settings.EMAIL_MAX_QUESTIONS):
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(stub)
        stub.put(real_record(api_id, heading=megabyte_of("Otters")[:100_000], questionText=megabyte_of("otters"),
                             answerText=f"<p>{megabyte_of('rivers')}</p>"))
    # Polled before: what this poll brings is news, and alerts.
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                                   last_success_at=timezone.now() - dt.timedelta(hours=1))
    report = poll_source(source, api_client(read_timeout=30))
    assert report.error == "" and report.landed.created == settings.EMAIL_MAX_QUESTIONS


@pytest.mark.django_db
def test_huge_texts_are_stored_cut_and_pages_send_readers_to_the_full_text(huge_questions, client):
    question = Question.objects.get(external_id=str(FIRST_ID))
    assert question.text_cut
    for name, limit in TEXT_LIMITS.items():
        assert len(getattr(question, name)) <= limit, name
    assert question.question_text.startswith("otters otters") and question.question_text.endswith(" …")

    search = client.get("/", {"q": "otters"})

    assert len(search.context["page"]) == 20
    assert len(search.content) < 500_000
    assert "The answer goes on: read it all" in search.content.decode()
    feed = client.get("/feeds/search.rss", {"q": "otters"})
    assert feed.status_code == 200 and feed.content.count(b"<item>") == FEED_SIZE
    assert len(feed.content) < MEGABYTE

    page = client.get(question.get_absolute_url()).content.decode()

    assert len(page) < 2 * sum(TEXT_LIMITS.values())
    assert (f'the full text is on <a href="{question.official_url}">questions-statements.parliament.uk</a>'
            in page)


@pytest.mark.django_db(transaction=True)
def test_an_alert_of_as_many_huge_questions_as_an_email_holds_stays_far_under_the_esp_limit(huge_questions,
                                                                                          postmark):
    subscribe(query="otters")
    match_events()

    deliver_immediate()
    send_due()

    [message] = postmark.messages
    assert len(message["HtmlBody"]) + len(message["TextBody"]) < MEGABYTE
    assert message["TextBody"].count("Read it: ") == settings.EMAIL_MAX_QUESTIONS
    assert message["HtmlBody"].count("Read the full question") == settings.EMAIL_MAX_QUESTIONS


@pytest.fixture
def sanitised(monkeypatch):
    """The length of every text handed to the HTML sanitiser, which is the costly step of reading an answer."""
    lengths: list[int] = []
    sanitise = html.sanitise

    def counted(raw: str) -> str:
        lengths.append(len(raw))
        return sanitise(raw)

    monkeypatch.setattr(html, "sanitise", counted)
    return lengths


def poll_answers(httpserver, *answers: str) -> tuple[Source, object]:
    stub = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(stub)
    for api_id, answer in enumerate(answers, start=FIRST_ID):
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(stub)
        stub.put(real_record(api_id, answerText=answer))
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))
    return source, poll_source(source, api_client(read_timeout=30))


@pytest.mark.django_db
def test_an_answer_nested_thousands_of_tags_deep_is_refused_before_it_is_sanitised(httpserver, sanitised):
    deep = "<blockquote>" * 20_000 + "otters" + "</blockquote>" * 20_000

    source, report = poll_answers(httpserver, "<p>Rivers.</p>", deep, "<div><p>Heating.</p></div>")

    assert report.error == ""
    assert sorted(Question.objects.values_list("external_id", flat=True)) == [str(FIRST_ID), str(FIRST_ID + 2)]
    problem = source.problems.get()
    assert problem.record_id == str(FIRST_ID + 1) and "nests HTML tags more than 200 levels deep" in problem.message
    assert max(sanitised) < 1_000
    source.refresh_from_db()
    assert source.cursor == timezone.localdate() and source.consecutive_failures == 0


@pytest.mark.django_db
def test_an_answer_cut_inside_a_long_link_is_cut_with_a_bounded_number_of_sanitisings(httpserver, sanitised):
    # Cut anywhere inside the long link, the answer sanitises to the text before it plus the closing tags of
    # the quotes: one character too long, however far back in the link the cut moves.
    quotes, target = 40, TEXT_LIMITS["answer_html"] - len("<p>…</p>")
    before = target - quotes * len("</blockquote>") + 1
    answer = ("<blockquote>" * quotes + "x" * (before - quotes * len("<blockquote>"))
              + '<a href="https://example.org/' + "a" * 5_000 + '">otters</a>' + "</blockquote>" * quotes)

    source, report = poll_answers(httpserver, answer)

    question = Question.objects.get()
    assert question.text_cut and len(question.answer_html) <= TEXT_LIMITS["answer_html"]
    assert question.answer_html.endswith("</blockquote>" * quotes + "<p>…</p>")
    assert len(sanitised) <= 25


@pytest.mark.django_db
def test_an_answer_of_megabytes_is_cut_before_it_is_sanitised(httpserver, sanitised):
    source, report = poll_answers(httpserver, "<p>" + megabyte_of("rivers") * 5 + "</p>")

    question = Question.objects.get()
    assert question.text_cut and question.answer_text.startswith("rivers rivers")
    assert max(sanitised) <= 2 * TEXT_LIMITS["answer_html"]


@pytest.mark.django_db
def test_grouped_questions_and_attachments_of_megabytes_are_not_stored(httpserver):
    stub = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(stub)
    httpserver.expect_request(f"{LIST_PATH}/{FIRST_ID}").respond_with_handler(stub)
    stub.put(real_record(FIRST_ID, groupedQuestions=["HL1234", megabyte_of("HL"), *["HL9"] * 200],
                         attachments=[{"title": megabyte_of("Table"), "url": "https://example.org/a.pdf"},
                                      {"title": ["Annex"] * 100_000, "url": "https://example.org/b.pdf"}]))
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))

    report = poll_source(source, api_client(read_timeout=30))

    assert report.error == ""
    question = Question.objects.get()
    assert question.grouped_uins[:2] == ["HL1234", "HL9"] and len(question.grouped_uins) == 100
    assert [a["url"] for a in question.attachments] == ["https://example.org/a.pdf", "https://example.org/b.pdf"]
    assert len(json.dumps(question.attachments)) < 1_500


@pytest.mark.django_db
def test_a_poller_of_the_release_before_can_still_store_questions_once_text_cut_is_added():
    # The poller keeps running while a release migrates: its inserts name every column but the new one.
    before = [f for f in Question._meta.concrete_fields if f.name not in ("id", "text_cut")]
    Question.objects._insert([Question(external_id="old-1", heading="Otters")], fields=before)

    assert Question.objects.get(external_id="old-1").text_cut is False
