"""The delivery queue on the real stack: a Celery worker and beat, PostgreSQL, Redis, and an ESP stub on
its own port that goes down, refuses connections, comes back, or loses its sender to SIGKILL."""

from __future__ import annotations

import signal
import time

import pytest

from alerts.delivery import deliver_immediate
from alerts.models import Delivery
from tests.conftest import beat_sends_due_emails, esp_env, start, wait_until
from tests.factories import subscribers_with_one_match_each

pytestmark = [pytest.mark.worker, pytest.mark.postgres]


def test_a_sender_killed_three_times_mid_send_is_made_good_within_two_minutes(worker_env, esp_server):
    """At the default lease and beat schedule; the ESP takes 5 ms a message, half a second a chunk, so that
    kills land mid-send."""
    count = 1500
    subscribers_with_one_match_each(count)
    beat_sends_due_emails()
    stub = esp_server.stub
    stub.latency_per_message = 0.005
    env = esp_env(worker_env, esp_server)
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
