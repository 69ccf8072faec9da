"""How fast the delivery queue sends alert emails through Anymail to an ESP that answers like a real one.

Generates subscribers (each with one immediate alert and 1 to 20 matches), creates their deliveries,
then runs the service's own sender (`alerts.delivery.send_due`) in several processes at once, as
workers do, against a local stub of Postmark's API that keeps connections alive and waits a given
round trip before each answer. Each round trip is run several times; prints the median and spread.

    .venv/bin/python bench/deliver.py [--subscribers 10000] [--processes 2] [--latency-ms 0 20] [--runs 3]
                                      [--database-url postgres://...]

PostgreSQL is the default (the processes share it); the database's alert tables are emptied first.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database_url: str, api_url: str | None = None) -> None:
    from bench import ensure_database

    ensure_database(database_url)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["EMAIL_BACKEND"] = "anymail.backends.postmark.EmailBackend"
    os.environ["ANYMAIL_POSTMARK_SERVER_TOKEN"] = "bench"
    if api_url:
        os.environ["ANYMAIL_POSTMARK_API_URL"] = api_url
    import django

    django.setup()


def populate(subscribers: int, seed: int = 1) -> int:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from alerts.models import Match, Subscriber, Subscription
    from questions.models import Question, QuestionEvent

    call_command("migrate", verbosity=0)
    rng = random.Random(seed)
    with connection.cursor() as cursor:
        for table in ("alerts_match", "alerts_delivery", "alerts_subscription", "alerts_subscriber"):
            cursor.execute(f"DELETE FROM {table}")
    Question.objects.filter(external_id__startswith="bench-").delete()
    call_command("import_questions", str(ROOT / "questions/fixtures/seed_questions.json"), stdout=io.StringIO())
    base = list(Question.objects.filter(external_id__startswith="seed-"))
    copies = []
    for i in range(500):
        q = base[i % len(base)]
        copy = Question(**{f.attname: getattr(q, f.attname) for f in Question._meta.get_fields()
                           if f.concrete and f.name != "id"})
        copy.external_id = f"bench-{i}"
        copies.append(copy)
    Question.objects.bulk_create(copies)
    events = QuestionEvent.objects.bulk_create(QuestionEvent(question=q, kind="answered", key="answered")
                                               for q in copies)
    now = timezone.now()
    people = Subscriber.objects.bulk_create(
        Subscriber(email=f"reader{i}@example.org", confirmed_at=now) for i in range(subscribers))
    alerts = Subscription.objects.bulk_create(
        Subscription(subscriber=p, query="palantir OR police", canonical_query="palantir OR police",
                     confirmed_at=now) for p in people)
    matches = [Match(subscription=s, event=e) for s in alerts for e in rng.sample(events, rng.randint(1, 20))]
    Match.objects.bulk_create(matches, batch_size=5000)
    return len(matches)


def fresh_deliveries() -> tuple[int, float]:
    """Every match undelivered again, and one new pending delivery per subscriber; (count, seconds)."""
    from unittest import mock

    from django.db import connection

    from alerts.delivery import deliver_immediate
    from alerts.models import Delivery, Match

    Match.objects.update(delivery=None)
    Delivery.objects.all().delete()
    if connection.vendor == "postgresql":
        # The tables were emptied and refilled: give the planner true figures, as a live database has.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE alerts_match, alerts_delivery")
    started = time.perf_counter()
    with mock.patch("alerts.delivery.kick"):  # the processes below are the senders
        ids = deliver_immediate()
    return len(ids), time.perf_counter() - started


def sender(args: tuple[str, str]) -> tuple[int, float]:
    """One worker process running the sender until nothing is due: (emails sent, CPU seconds)."""
    database_url, api_url = args
    setup(database_url, api_url)
    from alerts.delivery import send_due

    before = resource.getrusage(resource.RUSAGE_SELF)
    sent = send_due().get("sent", 0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return sent, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_once(args, api_url: str, stub) -> dict:
    from django.db import connection

    emails, create_seconds = fresh_deliveries()
    connection.close()
    stub.messages.clear()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        results = pool.map(sender, [(args.database_url, api_url)] * args.processes)
    seconds = time.perf_counter() - started
    sent = sum(count for count, _ in results)
    assert sent == emails == len(stub.messages) == len(set(stub.to())), (sent, emails, len(stub.messages))
    return {"emails": emails, "create": create_seconds, "seconds": seconds, "rate": emails / seconds,
            "cpu_ms": 1000 * sum(cpu for _, cpu in results) / emails}


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/deliverbench")
    args = parser.parse_args()

    from tests.esp_stub import PostmarkStub, StubServer

    stub = PostmarkStub()
    server = StubServer(stub).start()
    setup(args.database_url, server.url())
    from django.conf import settings
    from django.db import connection

    matches = populate(args.subscribers)
    rows = []
    for latency in args.latency_ms:
        stub.latency = latency / 1000
        runs = [run_once(args, server.url(), stub) for _ in range(args.runs)]
        rows.append((latency, runs))
    server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor}; ESP: a local Postmark stub with keep-alive, answering after the round "
          f"trip; sender: alerts.delivery.send_due in {args.processes} processes, chunks of "
          f"{settings.DELIVERY_CHUNK_SIZE}")
    print(f"{args.subscribers} subscribers, {matches} matches; median (min-max) of {args.runs} runs")
    print(f"{'round trip ms':>13} {'emails':>7} {'create s':>16} {'send s':>16} {'emails/s':>18} "
          f"{'CPU ms/email':>16}")
    for latency, runs in rows:
        print(f"{latency:>13.0f} {runs[0]['emails']:>7} {spread([r['create'] for r in runs], 2):>16} "
              f"{spread([r['seconds'] for r in runs], 2):>16} {spread([r['rate'] for r in runs]):>18} "
              f"{spread([r['cpu_ms'] for r in runs], 2):>16}")


if __name__ == "__main__":
    main()
