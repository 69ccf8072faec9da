"""How long a daily digest for many subscribers takes, from the start of its run to the last email accepted
by an ESP that answers like a real one.

Imports real written questions from the sample, then makes subscribers, each with a daily alert and 1 to 8
matches among them. PostgreSQL's statistics are taken while the tables are empty and autovacuum is off for
them, so the planner knows nothing of their size: as after launch, or after a purge, when the first large
digest runs. Each run then records the digest run as beat's "Start digest runs" does
(`alerts.digests.start_due_runs`), and builder processes make its emails (`alerts.delivery.build_run`,
rendering every email as its row is made, as workers do, several at once), while sender processes
run the service's own sender (`alerts.delivery.send_due`) against a local stub of Postmark's API that keeps
connections alive and waits a given round trip before each answer. Prints the median and spread of the runs.

    .venv/bin/python bench/digest.py [--subscribers 100000] [--builders 2] [--senders 2] [--latency-ms 20] [--runs 3]
                                     [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deliver import setup, use_esp  # noqa: E402

TABLES = ("alerts_match", "alerts_delivery", "alerts_subscription", "alerts_subscriber", "alerts_digestrun")


def populate(subscribers: int, questions: int, seed: int = 1) -> int:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from alerts.models import Match, Subscriber, Subscription
    from questions.models import Question, QuestionEvent

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        for table in TABLES:
            # Statistics of empty tables, and none taken again: the planner is left to guess.
            cursor.execute(f"ANALYZE {table}")
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    if Question.objects.count() < questions:
        sample = ROOT / "questions/fixtures/written_questions_sample.jsonl.gz"
        with gzip.open(sample, "rt") as lines, tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as part:
            part.writelines(itertools.islice(lines, questions))
        call_command("import_questions", part.name, stdout=io.StringIO())
        os.unlink(part.name)
    rng = random.Random(seed)
    events = list(QuestionEvent.objects.values_list("pk", flat=True)[:questions])
    now = timezone.now()
    people = Subscriber.objects.bulk_create(
        (Subscriber(email=f"reader{i}@example.org", confirmed_at=now) for i in range(subscribers)), batch_size=5000)
    alerts = Subscription.objects.bulk_create(
        (Subscription(subscriber=p, query="police", canonical_query="police", frequency="daily", confirmed_at=now)
         for p in people), batch_size=5000)
    matches = [Match.of(s.pk, rng.sample(events, rng.randint(1, 8)), created_at=now) for s in alerts]
    Match.objects.bulk_create(matches, batch_size=10_000)
    return sum(m.size for m in matches)


def sender(args: tuple[str, object]) -> int:
    """A worker process (forked with the ESP set) sending whatever is due until the run is made and nothing is
    left."""
    database_url, built = args
    setup(database_url)
    from alerts.delivery import send_due

    sent = 0
    while True:
        done = built.is_set()  # read first: a run made after an empty send still has emails to send
        counts = send_due()
        sent += counts.get("sent", 0)
        if done and not counts:
            return sent
        if not counts:
            time.sleep(0.05)


def builder(args: tuple[str, list[int]]) -> None:
    """A worker process making the runs' emails, sharing each run with the other builders."""
    database_url, run_ids = args
    setup(database_url)
    from unittest import mock

    from alerts.delivery import build_run
    from alerts.models import DigestRun

    with mock.patch("alerts.delivery.kick"):  # the sender processes are already polling
        for run in DigestRun.objects.filter(pk__in=run_ids).order_by("period_end"):
            build_run(run)


def run_once(args, stub) -> dict:
    from django.db import connection
    from django.utils import timezone

    from alerts import digests
    from alerts.models import Delivery, DigestRun, Match

    Match.objects.update(delivery=None)
    Delivery.objects.all().delete()
    DigestRun.objects.all().delete()
    connection.close()
    stub.messages.clear()
    context = multiprocessing.get_context("fork")
    built = context.Manager().Event()
    with context.Pool(args.senders) as pool:
        results = pool.map_async(sender, [(args.database_url, built)] * args.senders)
        started = time.perf_counter()
        runs = digests.start_due_runs(timezone.now() + digests.dt.timedelta(days=1), build=lambda run: None)
        connection.close()
        with context.Pool(args.builders) as builders:
            builders.map(builder, [(args.database_url, [run.pk for run in runs])] * args.builders)
        built_seconds = time.perf_counter() - started
        built.set()
        sent = sum(results.get())
    seconds = time.perf_counter() - started
    emails = sum(run.emails for run in DigestRun.objects.filter(pk__in=[r.pk for r in runs]))
    assert sent == emails == len(stub.messages) == len(set(stub.to())) == args.subscribers, (
        sent, emails, len(stub.messages))
    return {"emails": emails, "built": built_seconds, "seconds": seconds, "rate": emails / seconds}


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=2_000)
    parser.add_argument("--builders", type=int, default=2)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/digestbench")
    args = parser.parse_args()

    from tests.esp_stub import PostmarkStub, StubServer

    stub = PostmarkStub(latency=args.latency_ms / 1000)
    server = StubServer(stub).start()
    setup(args.database_url)
    use_esp("postmark", server.url())
    from django.conf import settings

    matches = populate(args.subscribers, args.questions)
    runs = [run_once(args, stub) for _ in range(args.runs)]
    server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"PostgreSQL with statistics of empty tables; ESP: a local Postmark stub with keep-alive, answering "
          f"after {args.latency_ms:.0f} ms; run made by {args.builders} processes at once, sent by "
          f"alerts.delivery.send_due in {args.senders} processes, chunks of {settings.DELIVERY_CHUNK_SIZE}")
    print(f"a daily digest: {args.subscribers} subscribers, {matches} matches over {args.questions} real questions; "
          f"median (min-max) of {args.runs} runs")
    print(f"{'emails':>7} {'run made s':>18} {'last email s':>18} {'emails/s':>18}")
    print(f"{runs[0]['emails']:>7} {spread([r['built'] for r in runs], 1):>18} "
          f"{spread([r['seconds'] for r in runs], 1):>18} {spread([r['rate'] for r in runs]):>18}")


if __name__ == "__main__":
    main()
