"""The end-to-end canary and /healthz?checks=delivery, as an operator sees them: a real Celery worker (and
beat), PostgreSQL, Redis and a Postmark stub on its own port that answers, fails, refuses connections or
comes back; the queues' own lag, with no canary; and the canary's questions, which nobody else sees."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

from alerts.canary import finish_probes, start_probe
from alerts.delivery import queue_delivery
from alerts.models import CanaryProbe, Delivery, EspState, Subscriber, Subscription
from alerts.tasks import canary_task, match_events_task
from config import schedule
from questions.ingest import upsert
from questions.models import CANARY_PREFIX, Question, QuestionEvent
from questions.records import QuestionRecord
from questions.search import canonical, parse
from tests.conftest import Worker, beat_sends_due_emails, delivery_section, post_webhook, purge_queues, wait_until
from tests.esp_stub import PostmarkStub
from tests.factories import pairs

CANARY = "canary-inbox@example.org"
BOUND = 5  # CANARY_MAX_SECONDS, for the worker and for the pages alike
INTERVAL_MINUTES = 1
STALE = dt.timedelta(minutes=2 * INTERVAL_MINUTES, seconds=BOUND)
TOKEN = "scrape-me"


def on_the_stack(test):
    """A test with real worker (and beat) processes, which share the PostgreSQL test database and Redis."""
    return pytest.mark.worker(pytest.mark.postgres(test))


# What the operator looks at.


def delivery_health(client) -> tuple[int, dict]:
    response = client.get("/healthz", {"checks": "delivery"})
    return response.status_code, response.json()


def gauges(client) -> dict[str, float]:
    """The unlabelled samples of /metrics, as Prometheus scrapes them with the token."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {sample.name: sample.value for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples if not sample.labels}


def healthy(client) -> bool:
    return delivery_health(client)[0] == 200


def failing(client) -> bool:
    return delivery_health(client)[0] == 503


@pytest.fixture
def operator(client):
    staff = get_user_model().objects.create_user("operator", "ops@example.org", "pw", is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def canary_on(settings):
    settings.CANARY_EMAIL = CANARY
    settings.CANARY_MAX_SECONDS = BOUND
    settings.CANARY_INTERVAL_MINUTES = INTERVAL_MINUTES
    settings.CANARY_WAIT_FOR_DELIVERED = False
    settings.DELIVERY_LAG_MAX_SECONDS = 900
    settings.METRICS_TOKEN = TOKEN
    return settings


# The real stack.


class Stack:
    """Workers and beat on the test database, sending through the ESP stub with the canary's settings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[Worker] = []

    def start(self, beat: bool = False, purge: bool = True) -> Worker:
        if purge and not beat:
            purge_queues()
        process = Worker(self.env, beat=beat)
        process.start()
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        """Every process stopped at once, as a crash stops them."""
        for process in self.running:
            if process.process and process.process.poll() is None:
                os.killpg(process.process.pid, signal.SIGKILL)
        for process in self.running:
            process.process.wait(timeout=30)
        self.running.clear()


@pytest.fixture
def stack_env(worker_env, esp_server, canary_on):
    purge_queues()
    return worker_env | {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend", "ANYMAIL_POSTMARK_SERVER_TOKEN": "test",
        "ANYMAIL_POSTMARK_API_URL": esp_server.url(), "ANYMAIL_REQUESTS_TIMEOUT": "5",
        "CANARY_EMAIL": CANARY, "CANARY_MAX_SECONDS": str(BOUND), "CANARY_INTERVAL_MINUTES": str(INTERVAL_MINUTES),
    }


@pytest.fixture
def processes(stack_env):
    running = Stack(stack_env)
    yield running
    running.stop_all()


def canary_every(seconds: int) -> None:
    """Beat's schedule holding only the canary, as declared, run every few seconds."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    PeriodicTask.objects.all().delete()
    schedule.sync(only=["End-to-end canary"])
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    assert PeriodicTask.objects.filter(name="End-to-end canary", task="alerts.canary").update(interval=every) == 1


def to_canary(stub: PostmarkStub) -> list[dict]:
    return [message for message in stub.messages if message.get("To") == CANARY]


def probe_email_sent(probe: CanaryProbe):
    return Delivery.objects.filter(matches__subscription_id=probe.subscription_id, status="sent").first()


# 1. It passes.


@on_the_stack
def test_beat_runs_the_canary_and_its_email_reaches_the_esp_in_time(processes, esp_server, operator):
    canary_every(1)
    processes.start()
    processes.start(beat=True)

    ok = wait_until(lambda: CanaryProbe.objects.filter(outcome="ok", question=None).last(), timeout=40,
                    message="beat's canary to record a probe whose email arrived, and remove its question")

    assert delivery_health(operator) == (200, {"status": "ok", "checks": {"delivery": "ok"}})
    metrics = gauges(operator)
    assert metrics["wqa_canary_healthy"] == 1 and metrics["wqa_delivery_healthy"] == 1
    assert 0 < metrics["wqa_canary_last_seconds"] <= BOUND
    assert 0 < ok.seconds <= BOUND and ok.finished_at > ok.started_at
    assert ok.detail == "sent to the ESP (sent)"
    # The email itself, at the ESP, to the canary's address alone, about the canary's question.
    assert ok.delivery.status == "sent" and ok.delivery.subscriber.email == CANARY
    sent = [m for m in to_canary(esp_server.stub) if m["Subject"] == ok.delivery.subject]
    assert len(sent) == 1 and "Canary check" in sent[0]["Subject"] + sent[0].get("TextBody", "")
    assert set(esp_server.stub.to()) == {CANARY}
    # Its question went with the probe (deleting it is what cleared the link), and its follow with it.
    assert ok.question_id is None and ok.subscription_id is None
    token = re.search(r"Canary check (\w+)", ok.delivery.subject + sent[0].get("TextBody", "")).group(1)
    assert not Question.objects.filter(external_id=CANARY_PREFIX + token).exists()
    section = delivery_section(operator)
    assert "FAILING" not in section
    assert "Working: no email is overdue and no event waits to be matched, and the canary’s latest probe arrived " \
           "in time." in section
    assert "Email arrived in time" in section


@on_the_stack
def test_a_fresh_deploy_probes_at_start_up_rather_than_an_interval_later(processes, esp_server, operator):
    # Beat's schedule as a fresh install has it: the canary every 15 minutes, never run yet.
    canary_every(15 * 60)
    assert failing(operator)  # no probe yet: what a fresh deploy showed for its first 15 minutes
    processes.start()
    processes.start(beat=True)

    ok = wait_until(lambda: CanaryProbe.objects.filter(outcome="ok").first() or (
        (probe := CanaryProbe.objects.first()) and probe_email_sent(probe) and probe), timeout=60,
        message="a probe started as beat starts, and its email sent")
    assert CanaryProbe.objects.count() == 1 and ok.pk
    assert healthy(operator)


# 2. It fails when the ESP drops mail, and recovers when the ESP comes back.


@on_the_stack
def test_the_esp_refusing_the_canary_address_fails_the_probe_at_once(processes, esp_server, operator):
    esp_server.stub.inactive = {CANARY}
    processes.start()
    canary_task.delay()

    probe = wait_until(lambda: CanaryProbe.objects.first(), timeout=20, message="a probe")
    wait_until(lambda: Delivery.objects.filter(status="rejected").exists(), timeout=20, message="the refusal")
    assert (timezone.now() - probe.started_at).total_seconds() < BOUND  # not waiting for the bound
    assert delivery_health(operator) == (503, {"status": "failing", "checks": {"delivery": "failing"}})
    section = delivery_section(operator)
    assert "FAILING: alerts may not be reaching inboxes." in section
    assert "the email was rejected: Postmark error 406" in section
    assert gauges(operator)["wqa_canary_healthy"] == 0

    canary_task.delay()  # the next tick records it
    wait_until(lambda: CanaryProbe.objects.filter(pk=probe.pk, outcome="failed").exists(), timeout=20,
               message="the probe to be recorded as failed")
    probe.refresh_from_db()
    assert probe.detail.startswith("the email was rejected: Postmark error 406")
    assert probe.question_id is None
    assert "Email refused or given up" in delivery_section(operator)
    assert failing(operator)


@on_the_stack
def test_an_esp_outage_makes_the_canary_late_and_a_probe_after_it_passes(processes, esp_server, operator):
    canary_every(1)
    stub = esp_server.stub
    stub.failures_left, stub.failure_status = 10**6, 503
    processes.start()
    processes.start(beat=True)

    first = wait_until(lambda: CanaryProbe.objects.last(), timeout=30, message="beat to start a probe")
    wait_until(lambda: Delivery.objects.filter(error__contains="503").exists(), timeout=BOUND,
               message="the ESP to answer the first email with a 503")
    assert healthy(operator)  # no probe's bound has passed yet
    esp_server.stop()  # and now the port refuses connections

    wait_until(lambda: failing(operator), timeout=BOUND + 20, message="the late canary to fail /healthz")
    assert (timezone.now() - first.started_at).total_seconds() > BOUND
    section = delivery_section(operator)
    assert "FAILING: alerts may not be reaching inboxes." in section
    assert f"nothing arrived within {BOUND} s: its email is pending" in section
    assert "503" in section or "Connection" in section
    metrics = gauges(operator)
    assert metrics["wqa_canary_healthy"] == 0 and metrics["wqa_delivery_healthy"] == 0

    wait_until(lambda: CanaryProbe.objects.filter(outcome="late", detail__contains="503", question=None).exists(),
               timeout=20, message="beat's next tick to record the first probe late, with the ESP's 503")
    refused = wait_until(lambda: CanaryProbe.objects.filter(outcome="late", detail__contains="Connection").last(),
                         timeout=20, message="a probe recorded late against refused connections")
    assert "No email in time" in delivery_section(operator)
    assert failing(operator)
    assert not to_canary(stub)

    stub.failures_left = 0
    esp_server.start()
    ok = wait_until(lambda: CanaryProbe.objects.filter(outcome="ok").first(), timeout=BOUND + 20,
                    message="a probe to pass once the ESP is back")
    assert ok.started_at > refused.started_at
    assert any(m["Subject"] == ok.delivery.subject for m in to_canary(stub))
    # The late probes' emails went with their probes: none shows among the subscribers' failed emails.
    wait_until(lambda: not Delivery.objects.filter(status="pending").exists(), timeout=20, message="an empty queue")
    assert not Delivery.objects.filter(status="failed").exists()
    assert healthy(operator)
    assert gauges(operator)["wqa_canary_healthy"] == 1
    section = delivery_section(operator)
    assert "FAILING" not in section and "the canary’s latest probe arrived in time" in section
    assert "No email in time" in section  # the outage stays in the probes' history


@on_the_stack
def test_an_esp_outage_fails_the_check_within_five_minutes_and_passes_within_two_of_recovery(
        processes, esp_server, operator, settings, monkeypatch):
    """At the default settings (no canary: the emails due are what meets the outage)."""
    settings.CANARY_EMAIL = ""
    processes.env = {name: value for name, value in processes.env.items() if not name.startswith("CANARY_")}
    # The site's settings are the worker's: the check looks at the ESP the senders use.
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test", "POSTMARK_API_URL": esp_server.url()}
    stub = esp_server.stub
    stub.failures_left, stub.failure_status = 10**6, 503
    PeriodicTask.objects.all().delete()
    beat_sends_due_emails()  # beat's send tick, as the migrations make it: every 10 s
    processes.start()
    processes.start(beat=True)
    for n in range(20):
        queue_delivery(Subscriber.objects.create(email=f"reader{n}@example.org"), "manage_link")

    state = wait_until(lambda: EspState.objects.filter(down_since__isnull=False).first(), timeout=30,
                       message="the senders to meet the outage")
    assert healthy(operator)  # a blip of a few seconds is not an outage
    red_at = state.down_since + dt.timedelta(seconds=settings.ESP_DOWN_ALERT_SECONDS, milliseconds=1)
    monkeypatch.setattr(timezone, "now", lambda: red_at)  # this process's clock only: the check reads it
    assert failing(operator)
    assert "the ESP (postmark) has failed since" in delivery_section(operator)

    monkeypatch.undo()
    stub.failures_left = 0  # back
    wait_until(lambda: healthy(operator) and Delivery.objects.filter(status="sent").count() == 20, timeout=120,
               message="the check to pass and every email to go within two minutes of the recovery")
    assert len(stub.messages) == 20 == len(set(stub.to()))


# 3. It fails when the worker is stopped, and when nothing starts probes at all.


@on_the_stack
def test_a_stopped_worker_makes_the_probe_late_and_a_canary_nobody_runs_goes_stale(processes, esp_server, operator):
    canary_task.apply()  # beat's tick ran; the worker that would match its event is stopped
    probe = CanaryProbe.objects.get()
    started = time.monotonic()
    assert healthy(operator)

    wait_until(lambda: failing(operator), timeout=BOUND + 10, message="the unmatched probe to fail /healthz")
    assert time.monotonic() - started > BOUND - 1
    section = delivery_section(operator)
    assert f"nothing arrived within {BOUND} s: no email was created: is matching running?" in section
    assert gauges(operator)["wqa_canary_healthy"] == 0

    assert [p.pk for p in finish_probes()] == [probe.pk]  # what beat's next tick does first
    probe.refresh_from_db()
    assert probe.outcome == "late" and probe.delivery_id is None
    assert not Question.objects.filter(external_id__startswith=CANARY_PREFIX).exists()
    assert failing(operator)

    processes.start()  # the worker is back
    canary_task.delay()
    second = wait_until(lambda: CanaryProbe.objects.exclude(pk=probe.pk).first(), timeout=20,
                        message="a new probe")
    wait_until(lambda: probe_email_sent(second), timeout=20, message="the new probe's email")
    assert [p.pk for p in finish_probes()] == [second.pk]
    second.refresh_from_db()
    assert second.outcome == "ok"
    assert healthy(operator)

    processes.stop_all()  # and then nothing runs the canary any more
    shift = STALE - dt.timedelta(seconds=30)
    CanaryProbe.objects.update(started_at=F("started_at") - shift, finished_at=F("finished_at") - shift)
    assert healthy(operator), "a probe started within two intervals and the bound still vouches"
    CanaryProbe.objects.update(started_at=F("started_at") - dt.timedelta(seconds=60))
    assert delivery_health(operator) == (503, {"status": "failing", "checks": {"delivery": "failing"}})
    section = delivery_section(operator)
    assert "no canary probe has started lately: is beat, or the worker, running?" in section
    assert gauges(operator)["wqa_canary_healthy"] == 0


def backdated_probe(seconds: float) -> CanaryProbe:
    """A probe as beat's tick starts it, `seconds` ago: its email cannot go out sooner than that after its start."""
    return start_probe(now=timezone.now() - dt.timedelta(seconds=seconds))


@pytest.mark.django_db(transaction=True)
def test_an_email_sent_only_after_the_bound_leaves_its_probe_late(canary_on, postmark, operator):
    probe = backdated_probe(BOUND + 5)  # matched and sent in this process, through the Postmark stub
    email = probe_email_sent(probe)
    assert email is not None and [m["To"] for m in postmark.messages] == [CANARY]
    assert email.sent_at - probe.started_at > dt.timedelta(seconds=BOUND)

    finish_probes()
    probe.refresh_from_db()
    assert probe.outcome == "late", (
        f"the email went out {probe.seconds} s after the probe started (bound {BOUND} s), yet the probe was "
        f"recorded {probe.outcome!r}: {probe.detail!r}")
    assert failing(operator), "its email went out after the bound"
    assert "No email in time" in delivery_section(operator)


@pytest.mark.django_db(transaction=True)
def test_waiting_for_delivered_needs_the_esps_webhook(canary_on, postmark, operator):
    canary_on.CANARY_WAIT_FOR_DELIVERED = True
    canary_on.ANYMAIL = canary_on.ANYMAIL | {"WEBHOOK_SECRET": "hook:s3cret"}

    unreported = backdated_probe(BOUND + 1)
    assert probe_email_sent(unreported).esp_status == "sent"
    assert failing(operator), "sent, but never reported delivered within the bound"
    assert [p.pk for p in finish_probes()] == [unreported.pk]
    unreported.refresh_from_db()
    assert unreported.outcome == "late"
    assert unreported.detail == f"nothing arrived within {BOUND} s: its email is sent, the ESP said sent"

    probe = start_probe()
    email = probe_email_sent(probe)
    assert finish_probes() == []  # sent, not yet delivered
    assert failing(operator)
    payload = {"RecordType": "Delivery", "MessageStream": "outbound", "MessageID": email.esp_message_id,
               "Recipient": CANARY, "DeliveredAt": "2026-11-27T10:00:00Z", "Details": "Test delivery"}
    assert post_webhook(operator, "/anymail/postmark/tracking/", payload).status_code == 200
    assert healthy(operator)
    assert [p.pk for p in finish_probes()] == [probe.pk]
    probe.refresh_from_db()
    assert (probe.outcome, probe.detail) == ("ok", "sent to the ESP (delivered)")
    assert [m["To"] for m in postmark.messages] == [CANARY, CANARY]


# 4. Without a canary, the queues' own lag.


@pytest.mark.django_db
def test_without_a_canary_the_delivery_check_reads_the_queues_lag(operator, settings):
    settings.CANARY_EMAIL = ""
    settings.DELIVERY_LAG_MAX_SECONDS = 60
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=now)
    question = Question.objects.create(external_id="q1", heading="Police numbers")

    assert delivery_health(operator) == (200, {"status": "ok", "checks": {"delivery": "ok"}})
    assert "delivery" not in operator.get("/healthz").json()["checks"]
    metrics = gauges(operator)
    assert metrics["wqa_delivery_healthy"] == 1 and "wqa_canary_healthy" not in metrics
    section = delivery_section(operator)
    assert "Working: no email is overdue and no event waits to be matched." in section
    assert "No canary is configured" in section

    # Due, but not for long; or tried and backing off, but queued only just now; or sent: none of these is lag.
    Delivery.objects.create(subscriber=ada, kind="immediate", next_attempt_at=now - dt.timedelta(seconds=30))
    Delivery.objects.create(subscriber=ada, kind="immediate", created_at=now - dt.timedelta(seconds=30), attempts=1,
                            next_attempt_at=now + dt.timedelta(minutes=10))
    Delivery.objects.create(subscriber=ada, kind="immediate", status="sent", next_attempt_at=now - dt.timedelta(days=1))
    QuestionEvent.objects.create(question=question, kind="tabled", key="tabled", created_at=now - dt.timedelta(hours=2),
                                 matched_at=now - dt.timedelta(hours=2))
    QuestionEvent.objects.create(question=question, kind="answered", key="answered",
                                 created_at=now - dt.timedelta(seconds=30))
    assert healthy(operator)

    overdue = Delivery.objects.create(subscriber=ada, kind="immediate",
                                      next_attempt_at=now - dt.timedelta(seconds=90))
    assert delivery_health(operator) == (503, {"status": "failing", "checks": {"delivery": "failing"}})
    section = delivery_section(operator)
    assert "FAILING: alerts may not be reaching inboxes." in section
    assert f"an email has been due since {overdue.next_attempt_at:%Y-%m-%d %H:%M} UTC" in section
    assert gauges(operator)["wqa_delivery_healthy"] == 0
    assert "delivery" not in operator.get("/healthz").json()["checks"]

    overdue.delete()
    assert healthy(operator)
    waiting = QuestionEvent.objects.create(question=question, kind="corrected", key="corrected:x",
                                           created_at=now - dt.timedelta(seconds=90))
    assert failing(operator)
    section = delivery_section(operator)
    assert f"a question event has waited to be matched since {waiting.created_at:%Y-%m-%d %H:%M} UTC" in section
    assert "an email has been due" not in section

    QuestionEvent.objects.filter(pk=waiting.pk).update(matched_at=now)
    assert healthy(operator)

    # An ESP failing an email for hours keeps pushing its next try into the future, so it is never long
    # "due": that it is still being retried, long after it was queued, is what says so.
    retried = Delivery.objects.create(subscriber=ada, kind="immediate", created_at=now - dt.timedelta(hours=5),
                                      attempts=6, next_attempt_at=now + dt.timedelta(minutes=10))
    assert failing(operator)
    assert f"an email queued at {retried.created_at:%Y-%m-%d %H:%M} UTC is still being retried" in (
        delivery_section(operator))


# 5. The canary's questions are its own.


def headings(response) -> list[str]:
    assert response.status_code == 200
    return [question.heading for question in response.context["page"]]


def feed_titles(response) -> list[str]:
    """The titles of the feed's items (RSS) or entries (Atom)."""
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    atom = "{http://www.w3.org/2005/Atom}"
    items = root.findall("./channel/item") or root.findall(f"{atom}entry")
    return [(item.find("title") if item.find("title") is not None else item.find(f"{atom}title")).text
            for item in items]


@on_the_stack
def test_the_canarys_question_is_shown_to_nobody_and_matched_for_nobody_else(processes, esp_server, client):
    today = timezone.localdate()
    reader = Subscriber.objects.create(email="reader@example.org", confirmed_at=timezone.now())
    search = Subscription.objects.create(subscriber=reader, query="canary", canonical_query=canonical(parse("canary")),
                                         confirmed_at=timezone.now())
    upsert([QuestionRecord(external_id="wharf-1", heading="Canary Wharf station step-free access",
                           question_text="To ask about step-free access at Canary Wharf.",
                           date_tabled=today - dt.timedelta(days=1))])
    processes.start()
    match_events_task.delay()
    canary_task.delay()

    probe = wait_until(lambda: CanaryProbe.objects.first(), timeout=20, message="a probe")
    wait_until(lambda: probe_email_sent(probe), timeout=20, message="the canary's email")
    wait_until(lambda: "reader@example.org" in esp_server.stub.to(), timeout=20, message="the reader's alert")
    canary = Question.objects.get(pk=probe.question_id)
    token = canary.external_id.removeprefix(CANARY_PREFIX)
    assert canary.heading == f"Canary check {token}" and canary.answer_text
    assert canary.date_tabled == today

    assert headings(client.get("/", {"q": "canary"})) == ["Canary Wharf station step-free access"]
    assert headings(client.get("/", {"q": token})) == []
    assert "Canary check" not in client.get("/", {"q": token}).content.decode()
    assert headings(client.get("/", {"answered": "answered"})) == []
    home = client.get("/")
    assert headings(home) == ["Canary Wharf station step-free access"]
    assert "Canary check" not in home.content.decode()
    for feed in ("/feeds/search.rss", "/feeds/search.atom"):
        assert feed_titles(client.get(feed, {"q": "canary"})) == ["Canary Wharf station step-free access"]
        assert feed_titles(client.get(feed, {"q": token})) == []

    # The reader's saved search matched the station, never the canary; the canary's follow matched only it.
    question_of = dict(QuestionEvent.objects.values_list("pk", "question__external_id"))
    assert {question_of[event] for _, event in pairs(search.matches.all())} == {"wharf-1"}
    matched_canary = {alert for alert, event in pairs() if question_of[event] == canary.external_id}
    assert set(Subscription.objects.filter(pk__in=matched_canary).values_list("subscriber__email", flat=True)) \
        == {CANARY}
    reader_mail = [m for m in esp_server.stub.messages if m["To"] == "reader@example.org"]
    assert len(reader_mail) == 1 and token not in str(reader_mail[0])
    assert to_canary(esp_server.stub) and all("Canary Wharf" not in str(m) for m in to_canary(esp_server.stub))

    canary_task.delay()  # the next tick finishes the probe
    wait_until(lambda: CanaryProbe.objects.filter(pk=probe.pk, outcome="ok", question=None).exists(), timeout=20,
               message="the probe to finish and remove its question")
    assert not Question.objects.filter(pk=canary.pk).exists()
    assert not QuestionEvent.objects.filter(question_id=canary.pk).exists()
    assert not Subscription.objects.filter(question_id=canary.pk).exists()
    assert client.get(f"/questions/{canary.external_id}/").status_code == 404
    assert Question.objects.filter(external_id="wharf-1").exists()


@pytest.mark.django_db(transaction=True)
def test_the_canarys_question_has_no_page_while_its_probe_runs(canary_on, client):
    probe = start_probe()
    canary = Question.objects.get(pk=probe.question_id)
    assert probe_email_sent(probe) is not None  # matched and sent in this process

    assert client.get(f"/questions/{canary.external_id}/").status_code == 404
    assert client.get(f"/questions/id/{canary.pk}/").status_code == 404
