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
    assert "Daily digests" in html and "Poll sources" in html
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
    from tests.test_feeds_source import RSS

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
