"""How fast the delivery queue sends alert emails through Anymail to an ESP that answers like a real one.

Generates subscribers (each with one immediate alert and 1 to 20 matches), creates their deliveries,
then runs the service's own sender (`alerts.delivery.send_due`) in several processes at once, as
workers do, against a local stub of the ESP's API that keeps connections alive, answers requests on
different connections at the same time, and waits a given round trip before each answer. The ESP is
Postmark (a chunk in one call to its batch endpoint) or Mailgun (one message per call, over the pool
of DELIVERY_ESP_CONNECTIONS kept-alive connections per sender; `--connections` runs each pool size
given). Each round trip is run several times; prints the median and spread.

    .venv/bin/python bench/deliver.py [--esp postmark mailgun] [--subscribers 10000] [--processes 2]
                                      [--latency-ms 0 20] [--connections 8] [--runs 3] [--database-url ...]

With `--transport-only`, no database: messages of the size of an alert email, made beforehand, handed
to the transport (`alerts.esp.open_transport`) alone, a chunk at a time as the sender hands them, in one
process: what the transport can carry, and how that grows with the pool's size.

    .venv/bin/python bench/deliver.py --transport-only [--esp postmark mailgun] [--messages 2000]
                                      [--latency-ms 0 20] [--connections 1 2 4 8 16 32] [--runs 3]

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


ESPS = ("postmark", "mailgun")
MAILGUN_DOMAIN = "mg.example.org"


def setup(database_url: str) -> None:
    from bench import ensure_database

    ensure_database(database_url)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def use_esp(esp: str, api_url: str, connections: int | None = None) -> None:
    """Send through Anymail's backend for `esp` to the stub at `api_url` (in this process and the
    processes it forks from now on)."""
    from django.conf import settings

    timeout = settings.ANYMAIL.get("REQUESTS_TIMEOUT", (10.0, 20.0))
    if esp == "postmark":
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "bench", "POSTMARK_API_URL": api_url,
                            "REQUESTS_TIMEOUT": timeout}
    else:
        settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
        settings.ANYMAIL = {"MAILGUN_API_KEY": "bench", "MAILGUN_API_URL": api_url.rstrip("/") + "/v3",
                            "MAILGUN_SENDER_DOMAIN": MAILGUN_DOMAIN, "REQUESTS_TIMEOUT": timeout}
    if connections:
        settings.DELIVERY_ESP_CONNECTIONS = connections


def stub_for(esp: str):
    from tests.esp_stub import MailgunStub, PostmarkStub

    return PostmarkStub() if esp == "postmark" else MailgunStub(domain=MAILGUN_DOMAIN, api_key="bench")


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
    matches = [Match.of(s.pk, [e.pk for e in rng.sample(events, rng.randint(1, 20))]) for s in alerts]
    Match.objects.bulk_create(matches, batch_size=5000)
    return sum(m.size for m in matches)


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


def sender(database_url: str) -> tuple[int, float]:
    """One worker process running the sender until nothing is due: (emails sent, CPU seconds)."""
    setup(database_url)
    from alerts.delivery import send_due

    before = resource.getrusage(resource.RUSAGE_SELF)
    sent = send_due().get("sent", 0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return sent, cpu_seconds(before, after)


def cpu_seconds(before, after) -> float:
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_once(args, stub) -> dict:
    from django.db import connection

    emails, create_seconds = fresh_deliveries()
    connection.close()
    stub.messages.clear()
    started, stub_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    # Forked after `use_esp`, so the senders send to this ESP with this pool.
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        results = pool.map(sender, [args.database_url] * args.processes)
    seconds = time.perf_counter() - started
    sent = sum(count for count, _ in results)
    assert sent == emails == len(stub.messages) == len(set(stub.to())), (sent, emails, len(stub.messages))
    return {"emails": emails, "create": create_seconds, "seconds": seconds, "rate": emails / seconds,
            "cpu_ms": 1000 * sum(cpu for _, cpu in results) / emails,
            "stub_cpu_ms": 1000 * cpu_seconds(stub_before, resource.getrusage(resource.RUSAGE_SELF)) / emails}


def bench_message(i: int, text_bytes: int, html_bytes: int):
    """A message shaped like an alert email: text and HTML parts of the given sizes, and the unsubscribe
    headers every alert carries."""
    from django.core.mail import EmailMultiAlternatives

    line = "Question on police use of Palantir software, answered by the Home Office. "
    text = (line * (text_bytes // len(line) + 1))[:text_bytes]
    html = ("<p>" + line + "</p>\n") * (html_bytes // (len(line) + 8) + 1)
    message = EmailMultiAlternatives(
        "3 new answers for \u201cpalantir OR police\u201d", text, "Written question alerts <alerts@localhost>",
        [f"reader{i}@example.org"],
        headers={"List-Unsubscribe": f"<https://alerts.example.org/u/{i:032d}/>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    message.attach_alternative(html[:html_bytes], "text/html")
    return message


def transport_once(args: tuple[int, int, int]) -> tuple[int, float, float]:
    """In a process of its own (the stub's GIL is not its): send `count` messages through the transport,
    a chunk at a time; (sent, seconds, CPU seconds)."""
    count, text_bytes, html_bytes = args
    from django.conf import settings

    from alerts import esp

    messages = [bench_message(i, text_bytes, html_bytes) for i in range(count)]
    size = settings.DELIVERY_CHUNK_SIZE
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with esp.open_transport() as transport:
        outcomes = [o for start in range(0, count, size)
                    for o in transport.send(messages[start:start + size], lambda: True)]
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    assert [o.status for o in outcomes] == [esp.SENT] * count, {o.error for o in outcomes if o.error}
    return count, seconds, cpu_seconds(before, after)


def transport_only(args) -> None:
    from django.conf import settings

    from tests.esp_stub import StubServer

    rows = []
    for esp in args.esp:
        stub = stub_for(esp)
        server = StubServer(stub).start()
        for latency in args.latency_ms:
            stub.latency = latency / 1000
            for connections in args.connections if esp != "postmark" else [None]:
                use_esp(esp, server.url(), connections)
                runs = []
                for _ in range(args.runs):
                    stub.messages.clear()
                    with multiprocessing.get_context("fork").Pool(1) as pool:
                        [(sent, seconds, cpu)] = pool.map(transport_once,
                                                          [(args.messages, args.text_bytes, args.html_bytes)])
                    assert sent == len(stub.messages) == len(set(stub.to())), (sent, len(stub.messages))
                    runs.append({"rate": sent / seconds, "cpu_ms": 1000 * cpu / sent})
                rows.append((esp, latency, connections, runs))
        server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"the transport alone (alerts.esp.open_transport), no database, in one process, "
          f"{args.messages} messages of {args.text_bytes} + {args.html_bytes} bytes (text + HTML) in chunks of "
          f"{settings.DELIVERY_CHUNK_SIZE}; ESP: a local stub with keep-alive, answering after the round trip; "
          f"median (min-max) of {args.runs} runs")
    print(f"{'ESP':>9} {'round trip ms':>13} {'connections':>11} {'messages/s':>20} {'CPU ms/message':>16}")
    for esp, latency, connections, runs in rows:
        print(f"{esp:>9} {latency:>13.0f} {connections or '1 (batch)':>11} {spread([r['rate'] for r in runs]):>20} "
              f"{spread([r['cpu_ms'] for r in runs], 2):>16}")


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--esp", nargs="+", choices=ESPS, default=["postmark"])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20])
    parser.add_argument("--connections", type=int, nargs="+", default=None,
                        help="pool sizes for an ESP that takes one message per call (default: the setting's)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/deliverbench")
    parser.add_argument("--transport-only", action="store_true")
    parser.add_argument("--messages", type=int, default=2000, help="with --transport-only")
    parser.add_argument("--text-bytes", type=int, default=12600, help="with --transport-only")
    parser.add_argument("--html-bytes", type=int, default=24000, help="with --transport-only")
    args = parser.parse_args()

    setup(args.database_url)
    from django.conf import settings
    from django.db import connection

    if args.transport_only:
        args.connections = args.connections or [1, 2, 4, 8, 16, 32]
        transport_only(args)
        return

    from tests.esp_stub import StubServer

    matches = populate(args.subscribers)
    rows = []
    for esp in args.esp:
        stub = stub_for(esp)
        server = StubServer(stub).start()
        for connections in (args.connections or [settings.DELIVERY_ESP_CONNECTIONS]) if esp != "postmark" else [None]:
            use_esp(esp, server.url(), connections)
            for latency in args.latency_ms:
                stub.latency = latency / 1000
                runs = [run_once(args, stub) for _ in range(args.runs)]
                rows.append((esp, connections, latency, runs))
        server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor}; ESP: a local stub with keep-alive, answering after the round trip; "
          f"sender: alerts.delivery.send_due in {args.processes} processes, chunks of "
          f"{settings.DELIVERY_CHUNK_SIZE}")
    print(f"{args.subscribers} subscribers, {matches} matches; median (min-max) of {args.runs} runs; "
          f"connections: the pool of each sender, for an ESP taking one message per call")
    print(f"{'ESP':>9} {'connections':>11} {'round trip ms':>13} {'emails':>7} {'create s':>16} {'send s':>16} "
          f"{'emails/s':>18} {'CPU ms/email':>16} {'stub CPU ms/email':>18}")
    for esp, connections, latency, runs in rows:
        print(f"{esp:>9} {connections or '1 (batch)':>11} {latency:>13.0f} {runs[0]['emails']:>7} "
              f"{spread([r['create'] for r in runs], 2):>16} {spread([r['seconds'] for r in runs], 2):>16} "
              f"{spread([r['rate'] for r in runs]):>18} {spread([r['cpu_ms'] for r in runs], 2):>16} "
              f"{spread([r['stub_cpu_ms'] for r in runs], 2):>18}")


if __name__ == "__main__":
    main()
