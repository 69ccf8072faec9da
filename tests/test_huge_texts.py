"""Texts of a megabyte from a source: what is stored is capped and says it was cut, and no page or email grows
with them (an ESP refuses an email over 10 MB). The source is a real local HTTP server in the API's shape."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from alerts.delivery import deliver_immediate, send_due
from alerts.matching import match_events
from questions.models import Question, Source
from questions.polling import poll_source
from questions.records import TEXT_LIMITS
from questions.views import FEED_SIZE
from tests.parliament_stub import LIST_PATH, ParliamentStub
from tests.test_delivery import subscribe
from tests.test_parliament_api import client as api_client
from tests.test_parliament_api import real_record

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
