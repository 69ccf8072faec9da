"""The whole pipeline on the real stack: a question appears in the API, a real Celery worker polls,
matches and emails it through Anymail to a local ESP; and what survives a worker killed mid-way."""

from __future__ import annotations

import signal
import threading

import pytest

from alerts.models import Delivery, Match, Subscription
from questions.models import Question, QuestionEvent, Source
from tests.conftest import (
    backends_waiting_on_a_lock,
    digest_run_now,
    send,
    serve_postmark,
    start_worker,
    wait_until,
)
from tests.esp_stub import PostmarkStub
from tests.factories import pairs, real_record, subscribe

pytestmark = [pytest.mark.worker, pytest.mark.postgres]


def test_a_new_question_in_the_api_reaches_the_inbox(api_polled_before, esp, mail_env):
    subscribe(query="apprenticeships")
    subscribe(email="bo@example.org", query="palantir")
    subscribe(email="cy@example.org", query="apprenticeships", frequency="daily")
    api_polled_before.put(real_record(1000))
    worker = start_worker(mail_env)
    try:
        send("questions.poll_sources")
        wait_until(lambda: len(esp.messages) >= 1, timeout=90, message="the alert to reach the ESP")
        [message] = esp.messages
        assert message["To"] == "ada@example.org"
        # It came answered: the answer is the news.
        assert message["Subject"] == "New answer: Apprentices: Employment Agencies – ‘apprenticeships’"
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe"].startswith("<https://alerts.example.org/unsubscribe/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "Apprentices: Employment Agencies" in message["HtmlBody"]
        assert "https://alerts.example.org/alerts/manage/" in message["TextBody"]
        # Both events of the question (tabled, answered) matched once each, in one email.
        kinds = dict(QuestionEvent.objects.values_list("pk", "kind"))
        assert sorted(kinds[event] for _, event in pairs(
            Match.objects.filter(subscription__subscriber__email="ada@example.org"))) == ["answered", "tabled"]

        send("alerts.build_digest_run", digest_run_now("daily").pk)
        wait_until(lambda: len(esp.messages) == 2, timeout=60, message="the daily digest")
        assert esp.messages[1]["To"] == "cy@example.org"
        assert esp.messages[1]["Subject"].startswith("Daily digest")
        send("alerts.build_digest_run", digest_run_now("daily").pk)
        send("questions.poll_sources")
        send("alerts.match_events")
        wait_until(lambda: QuestionEvent.objects.filter(matched_at__isnull=True).count() == 0, timeout=30,
                   message="matching to settle")
    finally:
        worker.stop()
    assert len(esp.messages) == 2
    assert Question.objects.count() == 1 and QuestionEvent.objects.count() == 2


class HangingESP(PostmarkStub):
    """An ESP that holds each request until released; `record_first` says whether it has accepted the
    email before it answers (so a worker killed meanwhile had in fact sent it)."""

    def __init__(self, record_first: bool) -> None:
        super().__init__()
        self.record_first = record_first
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.held = True

    def __call__(self, request):
        if not self.held:
            return super().__call__(request)
        self.held = False
        if self.record_first:
            super().__call__(request)
        self.arrived.set()
        self.release.wait(30)
        from werkzeug.wrappers import Response

        return Response("{}", status=503)


@pytest.mark.parametrize("sent_before_crash", [False, True], ids=["before-the-esp-accepted", "after"])
def test_a_worker_killed_mid_send_sends_again_and_loses_nothing(api_polled_before, mail_env, httpserver,
                                                                sent_before_crash, esp_path):
    esp = HangingESP(record_first=sent_before_crash)
    serve_postmark(httpserver, esp_path, esp)
    subscribe(query="apprenticeships")
    api_polled_before.put(real_record(1000))
    worker = start_worker(mail_env)
    try:
        send("questions.poll_sources")
        assert esp.arrived.wait(90), "the email never reached the ESP"
        assert Delivery.objects.get().status == "pending"
        worker.kill(signal.SIGKILL)
        esp.release.set()
        worker = start_worker(mail_env)
        # What beat does every few seconds: the dead sender's lease has run out, so the email is due again.
        wait_until(lambda: (send("alerts.send_due"), Delivery.objects.get().status == "sent")[1], timeout=60,
                   interval=1, message="the email to be re-sent")
    finally:
        esp.release.set()
        worker.stop()
    assert [m["To"] for m in esp.messages] == ["ada@example.org"] * (2 if sent_before_crash else 1)
    assert Match.objects.filter(delivery__isnull=True).count() == 0


def test_a_worker_killed_mid_poll_lands_every_question_once(api_polled_before, mail_env):
    for api_id in (1000, 1001, 1002):
        api_polled_before.put(real_record(api_id))
    gate = threading.Event()
    arrived = threading.Event()

    def hold(api_id: int) -> None:
        if api_id == 1001 and not gate.is_set():
            arrived.set()
            gate.wait(30)

    api_polled_before.on_detail = hold
    worker = start_worker(mail_env)
    try:
        send("questions.poll_sources")
        assert arrived.wait(60)
        worker.kill(signal.SIGKILL)
        gate.set()
        assert Question.objects.count() == 0  # the poll stores its batch in one transaction, or nothing
        Source.objects.filter(name="Stub API").update(last_polled_at=None)
        worker = start_worker(mail_env)
        send("questions.poll_sources")
        wait_until(lambda: Question.objects.count() == 3, timeout=60, message="the questions to land")
        send("questions.poll_sources")
        send("alerts.match_events")
        wait_until(lambda: QuestionEvent.objects.filter(matched_at__isnull=True).count() == 0, timeout=30,
                   message="matching to settle")
    finally:
        gate.set()
        worker.stop()
    assert Question.objects.count() == 3
    assert QuestionEvent.objects.filter(kind="tabled").count() == 3


def test_a_worker_killed_mid_match_run_records_every_match_once(api_polled_before, esp, mail_env):
    from django.db import connection, transaction

    subscribe(query="apprenticeships")
    subscribe(email="bo@example.org", query="department:education")
    api_polled_before.put(real_record(1000))
    worker = start_worker(mail_env)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Writing matches now waits for this lock: the worker's run stops part way, events claimed.
            cursor.execute("LOCK TABLE alerts_match IN EXCLUSIVE MODE")

            send("questions.poll_sources")
            wait_until(lambda: backends_waiting_on_a_lock(cursor), timeout=90,
                       message="the match run to wait on the lock")
            worker.kill(signal.SIGKILL)
        assert Match.objects.count() == 0
        assert QuestionEvent.objects.filter(matched_at__isnull=True).count() == 2  # the claim died with it
        worker = start_worker(mail_env)
        send("alerts.match_events")
        wait_until(lambda: not QuestionEvent.objects.filter(matched_at__isnull=True).exists(), timeout=60,
                   message="the events to be matched")
        send("alerts.match_events")
        wait_until(lambda: len(esp.messages) == 2, timeout=60, message="both alerts")
    finally:
        worker.stop()
    # Two subscriptions x (tabled, answered), each once.
    assert pairs() == sorted((alert, event) for alert in Subscription.objects.values_list("pk", flat=True)
                             for event in QuestionEvent.objects.values_list("pk", flat=True))
    assert QuestionEvent.objects.count() == 2
    assert sorted(m["To"] for m in esp.messages) == ["ada@example.org", "bo@example.org"]
