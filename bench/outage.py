"""How long after an ESP outage ends every waiting alert is at the ESP, at the default settings, on the real
stack: a Celery worker (2 processes, as compose runs it) and beat on their database schedule, PostgreSQL,
Redis, and a local stub of Postmark's API that keeps connections alive and answers after a round trip.

Each run: the stub answers 503 for the first half of the outage and refuses connections for the second
half; meanwhile `--emails` immediate alerts fall due. Then the stub comes back, and the bench times how long
until the last email is accepted, and checks that each arrived once. It also counts the requests the stub
saw while it was down: an outage is one event, not one failure per email.

    .venv/bin/python bench/outage.py [--emails 2000] [--outage-minutes 10] [--runs 3]
                                     [--database-url postgres://...] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start(kind: str, env: dict, log: Path) -> subprocess.Popen:
    command = (["beat", "--loglevel=WARNING", "--max-interval=5"] if kind == "beat" else
               ["worker", "--loglevel=WARNING", "--concurrency=2", "--without-gossip", "--without-mingle"])
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *command], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def queue_emails(count: int) -> None:
    """`count` confirmed subscribers, each with an immediate alert and one match, and their emails queued."""
    from django.core.management import call_command
    from django.utils import timezone

    from alerts.delivery import deliver_immediate
    from alerts.models import Delivery, EspState, Match, Subscriber, Subscription
    from questions.models import QuestionEvent

    Match.objects.all().delete()
    Delivery.objects.all().delete()
    Subscriber.objects.all().delete()
    EspState.objects.all().delete()
    if not QuestionEvent.objects.exists():
        call_command("import_questions", str(ROOT / "questions/fixtures/seed_questions.json"), verbosity=0)
    event = QuestionEvent.objects.first()
    now = timezone.now()
    people = Subscriber.objects.bulk_create(Subscriber(email=f"reader{i}@example.org", confirmed_at=now)
                                            for i in range(count))
    alerts = Subscription.objects.bulk_create(Subscription(subscriber=p, query="police", canonical_query="police",
                                                           confirmed_at=now) for p in people)
    Match.objects.bulk_create(Match.of(a.pk, [event.pk]) for a in alerts)
    deliver_immediate()


def run_once(args, env: dict, server, stub) -> dict:
    from alerts.models import Delivery

    log = ROOT / "var" / "bench-outage.log"
    stub.messages.clear()
    stub.failures_left, stub.failure_status = 10**9, 503
    worker, beat = start("worker", env, log), start("beat", env, log)
    try:
        half = args.outage_minutes * 30
        before = stub.requests
        queue_emails(args.emails)  # the commit wakes the senders, which meet the outage
        time.sleep(half)
        server.stop()  # now refusing connections
        time.sleep(half)
        refused_requests = stub.requests - before
        stub.failures_left = 0
        server.start()
        back = time.monotonic()
        while len(stub.messages) < args.emails and time.monotonic() - back < 900:
            time.sleep(0.2)
        drained = time.monotonic() - back
        time.sleep(5)  # anything sent twice would arrive now
        sent = Delivery.objects.filter(status="sent").count()
        assert len(stub.messages) == len(set(stub.to())) == sent == args.emails, (len(stub.messages), sent)
        return {"seconds": drained, "requests": refused_requests}
    finally:
        stop(worker)
        stop(beat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--outage-minutes", type=float, default=10)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/outagebench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()

    from bench import ensure_database
    from tests.esp_stub import PostmarkStub, StubServer

    stub = PostmarkStub(latency=args.latency_ms / 1000)
    server = StubServer(stub).start()
    ensure_database(args.database_url)
    env = dict(os.environ, DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, LOG_LEVEL="WARNING",
               EMAIL_BACKEND="anymail.backends.postmark.EmailBackend", ANYMAIL_POSTMARK_SERVER_TOKEN="bench",
               ANYMAIL_POSTMARK_API_URL=server.url(), DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    subprocess.run([sys.executable, "-m", "celery", "-A", "config", "purge", "-f"], cwd=ROOT, env=env,
                   capture_output=True, check=False)
    runs = [run_once(args, env, server, stub) for _ in range(args.runs)]
    server.stop()

    seconds = [r["seconds"] for r in runs]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; a Celery "
          f"worker (2 processes) and beat at the default settings; ESP: a local Postmark stub with keep-alive, "
          f"{args.latency_ms:.0f} ms round trip, answering 503 then refusing connections")
    print(f"{args.emails} emails due during an outage of {args.outage_minutes:g} minutes; {args.runs} runs")
    print(f"{'from recovery to the last email, s':>36} {'requests during the outage':>28}")
    print(f"{statistics.median(seconds):>20.1f} ({min(seconds):.1f}-{max(seconds):.1f}) "
          f"{statistics.median([r['requests'] for r in runs]):>28.0f}")


if __name__ == "__main__":
    main()
