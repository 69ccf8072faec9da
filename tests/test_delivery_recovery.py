"""The delivery queue on the real stack: a Celery worker and beat, PostgreSQL, Redis, and an ESP stub on
its own port that goes down, refuses connections, comes back, or loses its sender to SIGKILL."""

from __future__ import annotations

import signal
import time

import pytest
from django.utils import timezone

from alerts.delivery import deliver_immediate
from alerts.models import Delivery, Match, Subscriber, Subscription
from config import schedule
from questions.models import Question, QuestionEvent
from tests.conftest import FIXTURES, Worker, purge_queues, wait_until
from tests.esp_stub import PostmarkStub, StubServer

pytestmark = [pytest.mark.worker, pytest.mark.postgres]


def subscribers_with_one_match_each(count: int) -> None:
    """`count` confirmed subscribers, each with an immediate alert that matched one question."""
    from django.core.management import call_command

    call_command("import_questions", str(FIXTURES / "seed_questions.json"), verbosity=0)
    event = QuestionEvent.objects.filter(question__in=Question.objects.all()).first()
    now = timezone.now()
    people = Subscriber.objects.bulk_create(Subscriber(email=f"reader{i}@example.org", confirmed_at=now)
                                            for i in range(count))
    alerts = Subscription.objects.bulk_create(
        Subscription(subscriber=p, query="police", canonical_query="police", confirmed_at=now) for p in people)
    Match.objects.bulk_create(Match(subscription=a, event=event) for a in alerts)


def beat_sends_due_emails(every_seconds: int | None = None) -> None:
    """Beat's send tick as declared (tests that empty the database remove its rows)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    schedule.sync(only=["Send due emails"])
    if every_seconds:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period="seconds")
        PeriodicTask.objects.filter(task="alerts.send_due").update(interval=interval)


@pytest.fixture
def esp():
    server = StubServer(PostmarkStub()).start()
    yield server
    server.stop()


def start(env, *arguments, beat=False) -> Worker:
    if not beat:
        purge_queues()
    worker = Worker(env, *arguments, beat=beat)
    worker.start()
    return worker


def esp_env(worker_env, esp, **settings) -> dict:
    return worker_env | {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
                         "ANYMAIL_POSTMARK_SERVER_TOKEN": "test", "ANYMAIL_POSTMARK_API_URL": esp.url(),
                         "ANYMAIL_REQUESTS_TIMEOUT": "5", **settings}


def test_a_sender_killed_three_times_mid_send_is_made_good_within_two_minutes(worker_env, esp):
    """At the default lease and beat schedule; the ESP takes 5 ms a message, half a second a chunk, so that
    kills land mid-send."""
    count = 1500
    subscribers_with_one_match_each(count)
    beat_sends_due_emails()
    stub = esp.stub
    stub.latency_per_message = 0.005
    env = esp_env(worker_env, esp)
    beat = start(env, beat=True)
    worker = start(env, "--concurrency=2")
    try:
        deliver_immediate()
        for kill in range(3):
            seen = len(stub.messages)
            wait_until(lambda seen=seen: len(stub.messages) > seen, timeout=60, message=f"sending before kill {kill}")
            worker.kill(signal.SIGKILL)
            worker = start(env, "--concurrency=2")
        back = time.monotonic()
        # Sent and recorded: what a killed sender held is taken again once its lease has run out.
        wait_until(lambda: not Delivery.objects.exclude(status="sent").exists(), timeout=120,
                   message="every email sent and recorded within two minutes of the last restart")
        recovered = time.monotonic() - back
    finally:
        beat.stop()
        worker.stop()
    assert set(stub.to()) == {f"reader{i}@example.org" for i in range(count)}
    duplicates = len(stub.messages) - count
    print(f"\n{count} emails, 3 kills: all delivered {recovered:.0f} s after the last restart, "
          f"{duplicates} sent twice")
    # At most the chunks in flight at the ESP when each kill landed: two processes of DELIVERY_CHUNK_SIZE.
    assert duplicates <= 3 * 2 * 100
