"""How fast alert emails are composed and handed to an ESP through Anymail.

Generates subscribers (each with one immediate alert and 1 to 20 matches), then creates their
deliveries and sends them through Anymail's real Postmark backend to a local HTTP stub of Postmark's
API, in chunks as the workers do, with one or more processes. Prints a table.

    .venv/bin/python bench/deliver.py [--subscribers 10000] [--processes 2] [--database-url postgres://...]

PostgreSQL is the default (the processes share it); the database's alert tables are emptied first.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database_url: str, api_url: str | None = None) -> None:
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

    from alerts.models import Delivery, Match, Subscriber, Subscription
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
        copy = Question(**{f.attname: getattr(q, f.attname) for f in Question._meta.fields if f.name != "id"})
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
    assert not Delivery.objects.exists()
    if connection.vendor == "postgresql":
        # The tables were emptied and refilled: give the planner true figures, as a live database has.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return len(matches)


def send_share(args: tuple[str, str, list[list[int]]]) -> int:
    database_url, api_url, chunks = args
    setup(database_url, api_url)
    from alerts.delivery import send_chunk

    return sum(sum(1 for s in send_chunk(chunk).values() if s == "sent") for chunk in chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/deliverbench")
    args = parser.parse_args()

    from tests.esp_stub import PostmarkStub, serve

    stub = PostmarkStub()
    server = serve(stub)
    api_url = f"http://127.0.0.1:{server.server_port}/"
    import logging

    setup(args.database_url, api_url)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from unittest import mock

    from django.db import connection

    from alerts.delivery import create_alert_deliveries

    started = time.perf_counter()
    match_count = populate(args.subscribers)
    populated = time.perf_counter()
    with mock.patch("alerts.delivery.enqueue_chunks"):
        ids = create_alert_deliveries("immediate")
    created = time.perf_counter()
    connection.close()
    chunks = [ids[i:i + args.chunk] for i in range(0, len(ids), args.chunk)]
    shares = [(args.database_url, api_url, chunks[p::args.processes]) for p in range(args.processes)]
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        sent = sum(pool.map(send_share, shares))
    finished = time.perf_counter()
    server.shutdown()
    assert sent == len(ids) == args.subscribers == len(stub.messages), (sent, len(ids), len(stub.messages))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor}; ESP: Anymail's Postmark backend to a local stub")
    print(f"{'subscribers':>11} {'matches':>8} {'processes':>9} {'create s':>8} {'send s':>7} {'emails/s':>8}")
    print(f"{args.subscribers:>11} {match_count:>8} {args.processes:>9} {created - populated:>8.2f} "
          f"{finished - created:>7.2f} {len(ids) / (finished - created):>8.0f}")
    print(f"(setting up the data took {populated - started:.1f} s)")


if __name__ == "__main__":
    main()
