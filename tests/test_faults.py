"""Faults on the real stack: Redis going away, a database connection cut mid-transaction, an ESP that
throttles or hangs. Each test is bounded in time and puts back what it broke."""

from __future__ import annotations

import time

import pytest
from celery import Celery
from django.db import connection
from django.utils import timezone

from alerts.delivery import deliver_immediate, send_due
from alerts.models import Delivery, EspState, Match, Subscription
from questions.models import Question, QuestionEvent
from tests.conftest import backends_waiting_on_a_lock, send, serve_postmark, start_worker, wait_until
from tests.esp_stub import PostmarkStub
from tests.factories import match_everything, pairs, real_record, subscribe


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [429, 503])
def test_an_esp_that_throttles_is_retried_until_it_accepts(postmark, status, archive):
    stub = postmark
    stub.failures_left, stub.failure_status = 2, status
    subscribe()
    match_everything()

    deliver_immediate()  # the ESP as a whole is failing: every sender holds back until its probe is due
    assert EspState.objects.get().down_since and send_due() == {}
    for _ in range(2):
        EspState.objects.update(next_probe_at=timezone.now())  # the probe's wait, passed
        send_due()

    assert len(stub.messages) == 1 and Delivery.objects.get().attempts == 3
    assert EspState.objects.get().down_since is None


@pytest.mark.django_db(transaction=True)
def test_an_esp_that_hangs_times_out_and_is_tried_again_later(postmark, settings, archive):
    def hang(request):
        time.sleep(2)
        from werkzeug.wrappers import Response

        return Response("{}", status=200)

    postmark.handler = hang
    settings.ANYMAIL = settings.ANYMAIL | {"REQUESTS_TIMEOUT": 0.5}
    settings.DELIVERY_BACKOFF_SECONDS = 30
    subscribe()
    match_everything()

    deliver_immediate()
    send_due()  # not yet due again

    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.leased_until is None
    assert "timed out" in delivery.error.lower() or "timeout" in delivery.error.lower()
    # A time-out is the ESP failing as a whole: the email is due again as soon as a probe gets through,
    # which waits ESP_PROBE_SECONDS, not the email's own back-off.
    state = EspState.objects.get()
    assert delivery.next_attempt_at <= timezone.now() and state.down_since
    assert 0 < (state.next_probe_at - timezone.now()).total_seconds() <= settings.ESP_PROBE_SECONDS
    assert Match.objects.filter(delivery=delivery).events() == 10


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.redis
def test_redis_going_away_during_polling_and_sending_loses_nothing(api_polled_before, mail_env, httpserver,
                                                                   private_redis, esp_path):
    redis_url, stop_redis, start_redis = private_redis
    mail_env["REDIS_URL"] = redis_url
    broker = Celery("test", broker=redis_url, set_as_current=False)
    esp = PostmarkStub()
    serve_postmark(httpserver, esp_path, esp)
    subscribe(query="apprenticeships")
    api_polled_before.put(real_record(1000))
    gate_open = []

    def hold(api_id: int) -> None:
        while not gate_open:
            time.sleep(0.05)

    api_polled_before.on_detail = hold
    worker = start_worker(mail_env)
    try:
        broker.send_task("questions.poll_sources")
        wait_until(lambda: any("/questions/1000" in p for p in api_polled_before.requests), timeout=60,
                   message="the poll to reach the detail")
        stop_redis()
        gate_open.append(True)
        # The poll finishes and stores its questions with the broker gone.
        wait_until(lambda: Question.objects.filter(external_id="1000").exists(), timeout=60,
                   message="the question to land")
        start_redis()
        # Beat's periodic match picks up what the lost follow-up task would have done.
        wait_until(lambda: (broker.send_task("alerts.match_events"), len(esp.messages))[1] >= 1, timeout=90,
                   interval=3,
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
        api_polled_before, mail_env, httpserver, esp_path):
    from django.db import transaction

    esp = PostmarkStub()
    serve_postmark(httpserver, esp_path, esp)
    subscribe(query="apprenticeships")
    api_polled_before.put(real_record(1000))
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
    # Each of the question's two events matched once: the rolled-back run left nothing behind.
    [alert] = Subscription.objects.all()
    events = sorted(QuestionEvent.objects.values_list("pk", flat=True))
    assert pairs() == [(alert.pk, event) for event in events] and len(events) == 2
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    assert [m["To"] for m in esp.messages] == ["ada@example.org"]
