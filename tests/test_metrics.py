"""/metrics: who may read it, and what an operator's scraper sees there after the pipeline has run on the
real stack (a Celery worker polling, matching and sending, the web server taking a bounce)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import uuid

import pytest
import requests
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from alerts.models import Delivery, Match, Subscriber, Subscription
from questions.models import Question, QuestionEvent, Source
from tests.conftest import (
    POSTMARK_BOUNCE,
    ROOT,
    TOKEN,
    WebServer,
    Worker,
    purge_queues,
    samples,
    serve_postmark,
    value,
    wait_until,
)
from tests.esp_stub import PostmarkStub
from tests.factories import real_record, subscribe


def labelled(scraped: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in scraped.items() if n == name}


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return samples(response.content.decode())


# Who may read the page.


@pytest.fixture
def private_metrics(settings, tmp_path):
    """The page reads counters from an empty folder of its own; the database gauges are read as ever."""
    settings.METRICS_DIR = tmp_path
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    return settings


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer "}, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}])
def test_with_neither_a_token_nor_addresses_set_the_page_does_not_exist(client, private_metrics, headers):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **headers)

    assert response.status_code == 404
    assert b"wqa_" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                                           TOKEN, f"Token {TOKEN}", f"Basic {TOKEN}"])
def test_a_wrong_or_missing_token_is_refused(client, private_metrics, authorization):
    private_metrics.METRICS_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", **headers)

    assert response.status_code == 404
    assert b"wqa_" not in response.content


@pytest.mark.django_db
def test_the_right_bearer_token_reads_the_metrics_from_anywhere(client, private_metrics):
    private_metrics.METRICS_TOKEN = TOKEN
    private_metrics.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    scraped = samples(response.content.decode())
    assert value(scraped, "wqa_unmatched_events") == 0
    assert labelled(scraped, "wqa_deliveries", "status") == {"pending": 0, "sent": 0, "rejected": 0, "failed": 0}


@pytest.mark.django_db
@pytest.mark.parametrize(("address", "forwarded", "status"), [
    ("10.20.30.40", None, 200),
    ("192.0.2.7", None, 200),
    ("2001:db8::1", None, 200),
    ("192.0.2.8", None, 404),
    ("11.0.0.1", None, 404),
    ("2001:db9::1", None, 404),
    # The address is the connection's own: a header anyone can write does not let them in.
    ("203.0.113.9", "10.0.0.1", 404),
])
def test_only_addresses_in_the_allowed_networks_read_the_metrics(client, private_metrics, address, forwarded, status):
    private_metrics.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}

    response = client.get("/metrics", REMOTE_ADDR=address, **headers)

    assert response.status_code == status
    assert (b"wqa_unmatched_events" in response.content) == (status == 200)


@pytest.mark.django_db
def test_an_allowed_address_needs_no_token_and_a_wrong_token_from_it_is_still_let_in(client, private_metrics):
    private_metrics.METRICS_TOKEN = TOKEN
    private_metrics.METRICS_ALLOWED_IPS = ["127.0.0.1"]

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.2", HTTP_AUTHORIZATION="Bearer nope").status_code == 404


def test_a_bad_allowed_address_is_refused_by_the_system_check(settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "intranet", "10.0.0.1/33", "192.0.2.7"]

    errors = [e for e in run_checks() if e.id == "alerts.E002"]

    assert len(errors) == 1
    assert "intranet" in errors[0].msg and "10.0.0.1/33" in errors[0].msg
    assert "10.0.0.0/8" not in errors[0].msg and "192.0.2.7" not in errors[0].msg
    with pytest.raises(SystemCheckError, match="alerts.E002"):
        call_command("check")

    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7", "::1", "2001:db8::/32"]
    assert not [e for e in run_checks() if e.id == "alerts.E002"]


def test_a_bad_allowed_address_in_the_environment_stops_manage_py_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "METRICS", "PROMETHEUS"))}
    env |= {"VAR_DIR": str(tmp_path)}

    refused = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, env=env | {"METRICS_ALLOWED_IPS": "10.0.0.0/8,metrics.internal"})
    accepted = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=env | {"METRICS_ALLOWED_IPS": "10.0.0.0/8,192.0.2.7"})

    assert refused.returncode != 0
    assert "alerts.E002" in refused.stderr and "metrics.internal" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr


# What the page says.


@pytest.mark.django_db
def test_the_database_gauges_say_what_is_queued_stuck_suppressed_and_failing(client, private_metrics):
    private_metrics.METRICS_TOKEN = TOKEN
    now = timezone.now()
    question = Question.objects.create(external_id="g-1", heading="Schools")
    QuestionEvent.objects.create(question=question, kind="tabled", key="tabled", created_at=now - dt.timedelta(hours=1))
    QuestionEvent.objects.create(question=question, kind="answered", key="answered", created_at=now)
    QuestionEvent.objects.create(question=question, kind="withdrawn", key="withdrawn",
                                 created_at=now - dt.timedelta(days=3), matched_at=now - dt.timedelta(days=3))
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=now)
    Subscription.objects.create(subscriber=ada, query="schools", canonical_query="schools", confirmed_at=now)
    Subscription.objects.create(subscriber=ada, query="paused", canonical_query="paused", confirmed_at=now,
                                paused=True)
    for email, reason in [("bo@example.org", "bounced"), ("cy@example.org", "unsubscribed"),
                          ("di@example.org", "bounced")]:
        gone = Subscriber.objects.create(email=email, confirmed_at=now, suppressed_at=now, suppressed_reason=reason)
        Subscription.objects.create(subscriber=gone, query="schools", canonical_query="schools", confirmed_at=now)
    Delivery.objects.create(subscriber=ada, kind="immediate", next_attempt_at=now - dt.timedelta(minutes=10))
    Delivery.objects.create(subscriber=ada, kind="immediate", next_attempt_at=now + dt.timedelta(hours=1))
    Delivery.objects.create(subscriber=ada, kind="immediate", status="sent")
    Delivery.objects.create(subscriber=ada, kind="daily", status="failed")
    Source.objects.create(name="Failing feed", kind="feed", url="https://example.org/feed",
                          last_success_at=now - dt.timedelta(hours=2), consecutive_failures=3)
    Source.objects.create(name="Switched off", kind="feed", url="https://example.org/off", enabled=False,
                          consecutive_failures=9)

    scraped = scrape(client)

    assert value(scraped, "wqa_unmatched_events") == 2
    assert 3590 <= value(scraped, "wqa_oldest_unmatched_event_age_seconds") <= 3700
    assert labelled(scraped, "wqa_deliveries", "status") == {"pending": 2, "sent": 1, "rejected": 0, "failed": 1}
    # The one due ten minutes ago, not the one due in an hour.
    assert 590 <= value(scraped, "wqa_oldest_due_delivery_age_seconds") <= 700
    assert labelled(scraped, "wqa_suppressed_addresses", "reason") == {
        "unsubscribed": 1, "bounced": 2, "complained": 0, "operator": 0}
    assert value(scraped, "wqa_active_alerts") == 1
    assert value(scraped, "wqa_questions") == 1
    # Only enabled sources: one switched off on purpose is no alarm.
    failures = labelled(scraped, "wqa_source_consecutive_failures", "source")
    assert failures.get("Failing feed") == 3 and "Switched off" not in failures
    assert 7190 <= labelled(scraped, "wqa_source_last_success_age_seconds", "source")["Failing feed"] <= 7300


@pytest.mark.django_db(transaction=True)
def test_the_page_adds_up_what_this_process_counted_in_the_metrics_folder(client, settings, api, postmark,
                                                                          httpserver):
    """Counters of the process serving the page are read back from METRICS_DIR like any worker's."""
    from questions.tasks import poll_sources_task

    settings.METRICS_TOKEN = TOKEN
    settings.SOURCE_BACKOFF_SECONDS = 0.01
    name = f"Stub API {uuid.uuid4().hex[:8]}"
    broken = f"Broken API {uuid.uuid4().hex[:8]}"
    Source.objects.create(name=name, kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                          last_success_at=timezone.now())
    Source.objects.create(name=broken, kind=Source.Kind.PARLIAMENT_API, url="http://127.0.0.1:9/",
                          last_success_at=timezone.now())
    subscribe(query="apprenticeships")
    api.put(real_record(1000))
    before = scrape(client)

    poll_sources_task.delay()

    after = scrape(client)

    def change(name_, **labels):
        return (value(after, name_, **labels) or 0) - (value(before, name_, **labels) or 0)

    assert [m["To"] for m in postmark.messages] == ["ada@example.org"]
    assert value(before, "wqa_polls_total", source=name, outcome="ok") is None
    assert value(after, "wqa_polls_total", source=name, outcome="ok") == 1
    assert value(after, "wqa_polls_total", source=broken, outcome="error") == 1
    assert value(after, "wqa_questions_stored_total", source=name, change="new") == 1
    # Other processes may be counting into the same folder meanwhile: at least what this one did.
    assert change("wqa_events_stored_total", kind="tabled") >= 1
    assert change("wqa_events_stored_total", kind="answered") >= 1
    assert change("wqa_matches_total") >= 2
    assert change("wqa_match_run_seconds_count") >= 1
    assert change("wqa_emails_total", outcome="sent") >= 1
    assert change("wqa_esp_call_seconds_count", esp="Postmark") >= 1
    assert labelled(after, "wqa_source_consecutive_failures", "source")[broken] == 1
    assert labelled(after, "wqa_source_consecutive_failures", "source")[name] == 0
    assert labelled(after, "wqa_deliveries", "status")["sent"] == 1


# The whole stack: a real worker and a real web server counting into one folder, as in production.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.worker
@pytest.mark.postgres
def test_a_scrape_shows_what_the_worker_did_and_the_web_server_was_told(worker_env, httpserver, esp_path, api,
                                                                         tmp_path):
    from config.celery import app

    folder = tmp_path / "metrics"
    folder.mkdir()
    esp = PostmarkStub()
    serve_postmark(httpserver, esp_path, esp)
    # One metrics folder for every process of the service, as a shared volume would be.
    shared = worker_env | {"PROMETHEUS_MULTIPROC_DIR": str(folder), "ANYMAIL_POSTMARK_SERVER_TOKEN": "test",
                           "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
                           "ANYMAIL_WEBHOOK_SECRET": "hook:s3cret"}
    worker_env = shared | {"ANYMAIL_POSTMARK_API_URL": httpserver.url_for(esp_path), "SITE_URL": "https://alerts.example.org",
                           "DELIVERY_BACKOFF_SECONDS": "0.2", "SOURCE_BACKOFF_SECONDS": "0.05"}
    web = WebServer(shared | {"METRICS_TOKEN": TOKEN}, tmp_path / "gunicorn.log")
    Source.objects.create(name="Stub API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                          last_success_at=timezone.now())
    subscribe(query="apprenticeships")
    api.put(real_record(1000))

    def scraped() -> dict:
        response = requests.get(web.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200, response.text[:500]
        return samples(response.text)

    purge_queues()
    worker = Worker(worker_env)
    try:
        web.start()
        assert requests.get(web.url + "/metrics", timeout=10).status_code == 404
        worker.start()
        app.send_task("questions.poll_sources")
        wait_until(lambda: Delivery.objects.filter(status="sent").exists(), timeout=90,
                   message="the alert to be sent")
        delivery = Delivery.objects.get()
        bounce = POSTMARK_BOUNCE | {"Email": "ada@example.org", "MessageID": delivery.esp_message_id}
        response = requests.post(web.url + "/anymail/postmark/tracking/", json=bounce, auth=("hook", "s3cret"),
                                 timeout=10)
        assert response.status_code == 200

        def counted_the_email() -> dict | None:
            now = scraped()
            return now if value(now, "wqa_emails_total", outcome="sent") == 1 else None

        after = wait_until(counted_the_email, timeout=30, message="the worker's count of the email sent")
        # Each web worker process counts into a file of its own; whichever answers the scrape adds them up.
        for _ in range(4):
            assert value(scraped(), "wqa_webhook_events_total", esp="Postmark", type="bounced") == 1
    finally:
        worker.stop()
        web.stop()

    assert [m["To"] for m in esp.messages] == ["ada@example.org"]
    assert Match.objects.filter(delivery=delivery).events() == 2
    assert value(after, "wqa_polls_total", source="Stub API", outcome="ok") == 1
    assert value(after, "wqa_polls_total", source="Stub API", outcome="error") is None
    assert value(after, "wqa_questions_stored_total", source="Stub API", change="new") == 1
    assert value(after, "wqa_events_stored_total", kind="tabled") == 1
    assert value(after, "wqa_events_stored_total", kind="answered") == 1
    assert value(after, "wqa_matches_total") == 2
    assert value(after, "wqa_match_run_seconds_count") >= 1
    assert value(after, "wqa_emails_total", outcome="sent") == 1
    assert value(after, "wqa_emails_total", outcome="retry") in (None, 0)
    assert value(after, "wqa_esp_call_seconds_count", esp="Postmark") >= 1
    assert value(after, "wqa_esp_call_seconds_sum", esp="Postmark") > 0
    assert value(after, "wqa_webhook_events_total", esp="Postmark", type="bounced") == 1
    assert labelled(after, "wqa_deliveries", "status") == {"pending": 0, "sent": 1, "rejected": 0, "failed": 0}
    assert labelled(after, "wqa_suppressed_addresses", "reason") == {
        "unsubscribed": 0, "bounced": 1, "complained": 0, "operator": 0}
    assert value(after, "wqa_unmatched_events") == 0
    assert value(after, "wqa_questions") == 1
    # Ada bounced: her alert no longer receives.
    assert value(after, "wqa_active_alerts") == 0
    assert labelled(after, "wqa_source_consecutive_failures", "source") == {"Stub API": 0}
    assert labelled(after, "wqa_source_last_success_age_seconds", "source")["Stub API"] < 120


def test_each_process_counts_in_files_named_for_its_host_and_pid():
    # Through the library's own multiprocess values, as config.settings installs them: an upgrade that renamed
    # the hook would leave the processes of two containers writing one file.
    from django.conf import settings
    from prometheus_client import CollectorRegistry, Counter

    name = f"counter_{socket.gethostname().replace('_', '-')}-{os.getpid()}.db"
    Counter("wqa_test_file_naming", "A counter made by this test.", registry=CollectorRegistry()).inc()
    assert (settings.METRICS_DIR / name).exists()
