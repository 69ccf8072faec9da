"""What an operator relies on: health checks, the overview, support's command, production settings."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import Delivery, Subscriber, Subscription
from questions.models import Source
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def test_healthz_is_ok_when_everything_works(client):
    Source.objects.create(name="fresh", kind="api", url="http://127.0.0.1:9/", last_success_at=timezone.now())

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "polling": "ok"}}


def test_healthz_fails_when_a_source_has_not_been_read_for_a_while(client):
    stale = timezone.now() - dt.timedelta(hours=3)
    Source.objects.create(name="stale API", kind="api", url="http://127.0.0.1:9/", last_success_at=stale,
                          created_at=stale)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "failing",
                               "checks": {"database": "ok", "broker": "ok", "polling": "failing"}}
    # What a load balancer asks: the site itself is up.
    assert client.get("/healthz", {"checks": "database,broker"}).status_code == 200


def test_the_admin_needs_a_login(client):
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    assert client.get("/admin/overview/")["Location"].startswith("/admin/login/")


def test_the_overview_shows_each_stage(admin_client):
    Source.objects.create(name="Broken feed", kind="feed", url="http://127.0.0.1:9/", last_error="HTTP 500",
                          consecutive_failures=3)
    Subscriber.objects.create(email="gone@example.org", suppressed_at=timezone.now(), suppressed_reason="bounced")

    html = admin_client.get("/admin/overview/").content.decode()

    assert "Broken feed" in html and "HTTP 500" in html
    assert "1 bounced" in html
    assert "Start digest runs" in html and "Poll sources" in html
    assert "Overview" in admin_client.get("/admin/").content.decode()


def test_check_subscriber_explains_what_happened(client):
    now = timezone.now()
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=now, suppressed_at=now,
                                           suppressed_reason="complained")
    Subscription.objects.create(subscriber=subscriber, query="palantir", canonical_query="palantir",
                                confirmed_at=now, frequency="daily")
    Delivery.objects.create(subscriber=subscriber, kind="daily", status="failed", attempts=5, error="HTTP 500")
    out = StringIO()

    call_command("check_subscriber", "ADA@example.org", stdout=out)

    text = out.getvalue()
    assert "SUPPRESSED" in text and "complained" in text
    assert "[on] 'palantir': daily, both" in text
    assert "daily        failed  attempts=5" in text and "HTTP 500" in text


def test_pages_send_security_headers(client):
    response = client.get("/")

    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_check_deploy_is_clean_in_production(tmp_path):
    env = dict(os.environ, SITE_URL="https://alerts.example.org", ALLOWED_HOSTS="alerts.example.org",
               SECRET_KEY="x" * 20 + "-a-long-random-production-secret-key-0123456789", DEBUG="0",
               VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_the_admin_resends_a_failed_email(admin_client):
    from django.core import mail

    from alerts.delivery import queue_delivery

    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    Subscription.objects.create(subscriber=subscriber, query="palantir", canonical_query="palantir")
    delivery = queue_delivery(subscriber, "manage_link")
    mail.outbox.clear()
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=5, error="HTTP 500",
                                                   give_up_at=timezone.now())

    admin_client.post("/admin/alerts/delivery/", {"action": "resend", "_selected_action": [delivery.pk]})

    delivery.refresh_from_db()
    assert delivery.status == "sent" and [m.to for m in mail.outbox] == [["ada@example.org"]]


def test_matching_and_sending_can_have_queues_of_their_own(tmp_path):
    code = ("from config.celery import app; r = app.amqp.router.route; "
            "print(*(r({}, t)['queue'].name for t in ('alerts.match_events', 'alerts.send_due', "
            "'questions.poll_sources')))")
    env = dict(os.environ, MATCH_QUEUE="match", SEND_QUEUE="send", VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.stdout.split()[-3:] == ["match", "send", "celery"], result.stderr


def test_poll_now_in_the_admin_polls_the_source(admin_client, httpserver):
    from questions.models import Question
    from tests.conftest import RSS

    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    source = Source.objects.create(name="TWFY", kind="feed", url=httpserver.url_for("/feed"))

    response = admin_client.post("/admin/questions/source/", {"action": "poll_now", "_selected_action": [source.pk]})

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.last_success_at and Question.objects.count() == 2


def test_an_operator_edit_of_a_search_is_parsed_like_any_other(admin_client):
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    subscription = Subscription.objects.create(subscriber=subscriber, query="palantir", canonical_query="palantir",
                                               confirmed_at=timezone.now())
    url = f"/admin/alerts/subscription/{subscription.pk}/change/"
    form = {"subscriber": subscriber.pk, "query": "Palantir  OR “Facial Recognition”", "label": "",
            "frequency": "daily", "alert_on": "both", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}

    refused = admin_client.post(url, form | {"query": "palantir OR"})
    saved = admin_client.post(url, form)

    assert refused.status_code == 200 and "nothing after it" in refused.content.decode()
    assert saved.status_code == 302
    subscription.refresh_from_db()
    assert subscription.canonical_query == 'palantir OR "facial recognition"'


def test_editing_an_alert_into_one_the_subscriber_has_is_refused_not_a_500(admin_client):
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    Subscription.objects.create(subscriber=subscriber, query="taser", canonical_query="taser")
    other = Subscription.objects.create(subscriber=subscriber, query="palantir", canonical_query="palantir")
    form = {"subscriber": subscriber.pk, "query": "TASER", "label": "", "frequency": "daily", "alert_on": "both",
            "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}

    response = admin_client.post(f"/admin/alerts/subscription/{other.pk}/change/", form)

    assert response.status_code == 200 and "already has an alert for this search" in response.content.decode()
    other.refresh_from_db()
    assert other.canonical_query == "palantir"


def test_a_failing_source_is_flagged_with_its_whole_error_and_its_latest_problems(admin_client):
    from questions.models import SourceProblem

    error = "HTTP 503 " + "x" * 400 + " the end of the error"
    source = Source.objects.create(name="Broken feed", kind="feed", url="http://127.0.0.1:9/", last_error=error,
                                   consecutive_failures=4)
    SourceProblem.objects.bulk_create(SourceProblem(source=source, record_id=f"item-{i}", message="bad")
                                      for i in range(300))

    listing = admin_client.get("/admin/questions/source/").content.decode()
    page = admin_client.get(f"/admin/questions/source/{source.pk}/change/").content.decode()
    overview = admin_client.get("/admin/overview/").content.decode()

    assert "FAILING: 4 poll(s) in a row" in listing and "<strong>FAILING</strong>: 4 in a row" in overview
    assert "the end of the error" in page
    assert page.count("item-") == 20 and "All 300 problems" in page
    problems = admin_client.get(f"/admin/questions/sourceproblem/?source__id__exact={source.pk}")
    assert problems.status_code == 200 and "300 source problems" in problems.content.decode()


def test_an_operator_edit_of_a_question_is_found_by_its_new_words(admin_client):
    from questions.models import Question
    from questions.search import parse
    from questions.searching import matching

    call_command("import_questions", str(ROOT / "questions/fixtures/seed_questions.json"), stdout=StringIO())
    question = Question.objects.get(external_id="seed-7")
    url = f"/admin/questions/question/{question.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data |= {"heading": "Conducted energy devices", "question_events-TOTAL_FORMS": "0",
             "question_events-INITIAL_FORMS": "0", "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"}

    response = admin_client.post(url, {k: ("" if v is None else v) for k, v in data.items()})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(matching(parse("heading:conducted"))) == [Question.objects.get(pk=question.pk)]
    assert not matching(parse('heading:"stun guns"')).exists()


def test_refresh_search_text_rebuilds_what_is_stale():
    from questions.models import Question
    from questions.search import parse
    from questions.searching import matching

    call_command("import_questions", str(ROOT / "questions/fixtures/seed_questions.json"), stdout=StringIO())
    Question.objects.filter(external_id="seed-7").update(norm_heading="something else")
    out = StringIO()

    call_command("refresh_search_text", stdout=out)

    assert out.getvalue().startswith("1 question(s) had stale searchable text")
    assert matching(parse('heading:"stun guns"')).get().external_id == "seed-7"


def test_an_alerts_admin_page_lists_its_latest_matches_in_the_same_queries_however_many(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from alerts.models import Match
    from questions.models import Question, QuestionEvent

    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    subscription = Subscription.objects.create(subscriber=subscriber, query="x", canonical_query="x")
    questions = Question.objects.bulk_create(Question(external_id=f"q{i}", heading=f"Q{i}") for i in range(30))
    events = QuestionEvent.objects.bulk_create(QuestionEvent(question=q, kind="tabled", key="tabled")
                                               for q in questions)
    delivery = Delivery.objects.create(subscriber=subscriber, kind="immediate")
    url = f"/admin/alerts/subscription/{subscription.pk}/change/"

    def matched(events) -> int:
        Match.objects.bulk_create(Match.of(subscription.pk, [e.pk], delivery=delivery if i < 25 else None,
                                           created_at=timezone.now() + dt.timedelta(seconds=i))
                                  for i, e in events)
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(url)
        return len(queries)

    admin_client.get(url)  # the session's first page reads the user; the rest come from the session
    assert matched(list(enumerate(events))[:1]) == matched(list(enumerate(events))[1:])
    page = admin_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "5 waiting for an email." in text
    # The latest first, twenty of them: Q29 down to Q10.
    assert text.index("Q29") < text.index("Q10") and "Q9:" not in text and ">Q9<" not in text
    assert text.count(f"/admin/alerts/delivery/{delivery.pk}/change/") == 15
