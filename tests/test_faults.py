"""Faults on the real stack: Redis going away, a database connection cut mid-transaction, an ESP that
throttles or hangs. Each test is bounded in time and puts back what it broke."""

from __future__ import annotations

import subprocess
import time

import pytest
from django.db import connection

from alerts.delivery import deliver_immediate
from alerts.models import Delivery, Match
from questions.models import Question, QuestionEvent
from tests.conftest import backends_waiting_on_a_lock, wait_until
from tests.esp_stub import PostmarkStub
from tests.test_delivery import archive, match_everything, subscribe  # noqa: F401 - fixture
from tests.test_parliament_api import real_record
from tests.test_pipeline import api, mail_env, send, start_worker  # noqa: F401 - fixtures
from tests.test_pipeline import subscribe as subscribe_to_apprenticeships

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
               "--appendonly", "no"]


def redis_up() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True,
                          timeout=5).stdout.strip() == "PONG"


@pytest.fixture
def redis_control():
    """Stops the real Redis on request, and always starts it again."""
    def stop():
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True, timeout=10)
        wait_until(lambda: not redis_up(), timeout=10, message="Redis to stop")

    def start():
        if not redis_up():
            subprocess.run(REDIS_START, check=True, timeout=10)
        wait_until(redis_up, timeout=10, message="Redis to start")

    yield stop, start
    start()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [429, 503])
def test_an_esp_that_throttles_is_retried_until_it_accepts(postmark, status, archive):  # noqa: F811
    stub = postmark
    stub.failures_left, stub.failure_status = 2, status
    subscribe()
    match_everything()

    deliver_immediate()

    assert len(stub.messages) == 1 and Delivery.objects.get().attempts == 3


@pytest.mark.django_db(transaction=True)
def test_an_esp_that_hangs_times_out_and_fails_visibly(postmark, settings, archive):  # noqa: F811
    def hang(request):
        time.sleep(2)
        from werkzeug.wrappers import Response

        return Response("{}", status=200)

    postmark.handler = hang
    settings.ANYMAIL = settings.ANYMAIL | {"REQUESTS_TIMEOUT": 0.5}
    settings.DELIVERY_MAX_ATTEMPTS = 2
    subscribe()
    match_everything()

    deliver_immediate()

    delivery = Delivery.objects.get()
    assert delivery.status == "failed" and delivery.attempts == 2
    assert "timed out" in delivery.error.lower() or "timeout" in delivery.error.lower()
    assert Match.objects.filter(delivery=delivery).exists()  # kept with the failed email, for a resend


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.redis
def test_redis_going_away_during_polling_and_sending_loses_nothing(api, mail_env, httpserver,  # noqa: F811
                                                                   redis_control, esp_path):
    stop_redis, start_redis = redis_control
    esp = PostmarkStub()
    httpserver.expect_request(esp_path + "email").respond_with_handler(esp)
    subscribe_to_apprenticeships()
    api.put(real_record(1000))
    gate_open = []

    def hold(api_id: int) -> None:
        while not gate_open:
            time.sleep(0.05)

    api.on_detail = hold
    worker = start_worker(mail_env)
    try:
        send("questions.poll_sources")
        wait_until(lambda: any("/questions/1000" in p for p in api.requests), timeout=60,
                   message="the poll to reach the detail")
        stop_redis()
        gate_open.append(True)
        # The poll finishes and stores its questions with the broker gone.
        wait_until(lambda: Question.objects.filter(external_id="1000").exists(), timeout=60,
                   message="the question to land")
        start_redis()
        # Beat's periodic match picks up what the lost follow-up task would have done.
        wait_until(lambda: (send("alerts.match_events"), len(esp.messages))[1] >= 1, timeout=90, interval=3,
                   message="the alert to be sent after Redis came back")
    finally:
        gate_open.append(True)
        start_redis()
        worker.stop()
    assert [m["To"] for m in esp.messages] == ["ada@example.org"]
    assert QuestionEvent.objects.filter(matched_at__isnull=True).count() == 0


@pytest.mark.worker
@pytest.mark.postgres
def test_a_database_connection_cut_mid_transaction_rolls_back_and_the_retry_completes(
        api, mail_env, httpserver, esp_path):  # noqa: F811
    from django.db import transaction

    esp = PostmarkStub()
    httpserver.expect_request(esp_path + "email").respond_with_handler(esp)
    subscribe_to_apprenticeships()
    api.put(real_record(1000))
    worker = start_worker(mail_env)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # The match run's transaction, having claimed its events, waits here to write its matches.
            cursor.execute("LOCK TABLE alerts_match IN EXCLUSIVE MODE")

            send("questions.poll_sources")
            [pid] = wait_until(lambda: backends_waiting_on_a_lock(cursor), timeout=90,
                               message="the match run to wait on the lock")
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        # Its transaction rolled back: nothing written, the events free again; the task retries by itself.
        wait_until(lambda: len(esp.messages) == 1, timeout=90, message="the retried run's alert")
    finally:
        worker.stop()
    assert Match.objects.count() == 2 and not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    assert [m["To"] for m in esp.messages] == ["ada@example.org"]
