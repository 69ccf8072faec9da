"""How fast questions are ingested from the Written Questions API, network excluded, and how polls of
hostile sources end.

Serves N generated questions (the real detail record's shape, varied) from a local stub of the API,
runs the real poller against it, and prints a table: the time spent fetching (HTTP on loopback and
parsing) and the time spent storing, and questions per second for each. A second table polls, three
times each, sources that misbehave: an API whose every tenth record holds text that cannot be stored
(a lone surrogate), a feed that sends one byte every half second, an API that ignores `skip` and
claims a billion results, and one that has a new page for ever; each poll must end within its budget.

    .venv/bin/python bench/ingest.py [--sizes 1000 10000] [--database-url postgres://...]

By default it uses a fresh SQLite file in a temporary folder; pass --database-url for PostgreSQL
(the database is emptied of questions first).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database_url: str | None) -> None:
    if database_url:
        from bench import ensure_database

        ensure_database(database_url)
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import logging

    import django

    django.setup()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def generate(n: int, day: dt.date) -> list[dict]:
    import json

    base = json.loads((ROOT / "questions/fixtures/question_detail.json").read_text())["value"]
    topics = ["schools", "prisons", "police", "hospitals", "railways", "housing", "energy", "farming", "defence"]
    records = []
    for i in range(n):
        value = copy.deepcopy(base)
        topic = topics[i % len(topics)]
        value.update(
            id=2_000_000 + i, uin=str(10_000 + i), dateTabled=f"{day}T00:00:00", dateAnswered=f"{day}T00:00:00",
            heading=f"{topic.title()}: Question {i}",
            questionText=f"To ask the Secretary of State, what steps are being taken on {topic} in area {i}.",
            askingMember={"id": 4000 + i % 650, "name": f"Member {i % 650}", "party": "Labour",
                          "memberFrom": f"Constituency {i % 650}"},
            answeringMember={"id": 3985, "name": "Luke Hall"},
        )
        records.append(value)
    return records


def run(n: int, latency_ms: float = 0) -> dict[str, float]:
    import threading

    from werkzeug.serving import WSGIRequestHandler, make_server

    from questions.ingest import upsert
    from questions.models import Question, QuestionEvent, Source
    from questions.sources import parliament
    from questions.sources.http import PoliteClient
    from tests.parliament_stub import ParliamentStub, wsgi_app

    Question.objects.all().delete()
    QuestionEvent.objects.all().delete()
    stub = ParliamentStub()
    today = dt.date.today()
    for value in generate(n, today):
        stub.put(value)
    app = wsgi_app(stub)

    def slow(environ, start_response):
        # The round trip to the real API, added to every answer.
        time.sleep(latency_ms / 1000)
        return app(environ, start_response)

    class KeepAlive(WSGIRequestHandler):
        # As the real API does: connections stay open between requests.
        protocol_version = "HTTP/1.1"

    server = make_server("127.0.0.1", 0, slow, threaded=True, request_handler=KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = Source.objects.create(name=f"bench-{n}-{time.time()}", kind="api",
                                   url=f"http://127.0.0.1:{server.server_port}", cursor=today)
    from django.test.utils import override_settings

    with override_settings(PARLIAMENT_API_OVERLAP_DAYS=0, PARLIAMENT_API_PAGE_SIZE=100):
        client = PoliteClient(requests_per_second=100_000)
        started = time.perf_counter()
        batch = parliament.fetch(source, client, today)
        fetched = time.perf_counter()
        result = upsert(batch.records, source)
        stored = time.perf_counter()
        again = parliament.fetch(source, PoliteClient(requests_per_second=100_000), today)
        repoll = time.perf_counter()
    server.shutdown()
    assert result.created == n and not again.records, (batch.error, result, len(again.records))
    source.delete()
    return {
        "n": n, "requests": batch.requests, "fetch_s": fetched - started, "store_s": stored - fetched,
        "repoll_s": repoll - stored,
    }


def hostile(kind: str, response_seconds: float) -> dict[str, float]:
    """One poll of a misbehaving source through the real poller: seconds, records landed, and error."""
    import json
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    from questions.models import Question, Source
    from questions.polling import poll_source
    from questions.sources.http import PoliteClient
    from tests.parliament_stub import LIST_PATH, ParliamentStub, wsgi_app
    from tests.slow_server import DrippingServer

    Question.objects.all().delete()
    today = dt.date.today()
    drip = server = None
    if kind == "dripping feed":
        drip = DrippingServer()
        source = Source.objects.create(name=f"bench-{time.time()}", kind="feed", url=drip.url())
    else:
        stub = ParliamentStub()
        for i, value in enumerate(generate(1000, today)):
            if kind == "poison records" and i % 10 == 0:
                value["heading"] = "Otters \ud800 two"
            stub.put(value)
        served = iter(range(1, 10**9))

        def app(environ, start_response):
            from werkzeug.wrappers import Request

            request = Request(environ)
            if kind == "poison records" or request.path != LIST_PATH:
                return wsgi_app(stub)(environ, start_response)
            value = generate(1, today)[0] | {"id": 3_000_000 + next(served)}
            first = {"totalResults": 10**9, "results": [{"value": generate(1, today)[0]}]}
            page = first if kind == "API repeating its page" else {"totalResults": 10**9, "results": [{"value": value}]}
            return Response(json.dumps(page), content_type="application/json")(environ, start_response)

        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        source = Source.objects.create(name=f"bench-{time.time()}", kind="api", cursor=today,
                                       url=f"http://127.0.0.1:{server.server_port}")
    from django.test.utils import override_settings

    with override_settings(PARLIAMENT_API_OVERLAP_DAYS=0, SOURCE_RESPONSE_SECONDS=response_seconds):
        started = time.perf_counter()
        report = poll_source(source, PoliteClient(requests_per_second=100_000, max_retries=0))
        seconds = time.perf_counter() - started
    for running in (drip, server):
        if running:
            running.shutdown() if running is server else running.stop()
    landed = report.landed.created if report.landed else 0
    source.delete()
    return {"seconds": seconds, "landed": landed, "error": report.error, "problems": report.problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20],
                        help="round trip the stub API adds to each answer")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    setup(args.database_url)
    import statistics

    from django.db import connection

    def spread(values: list[float], digits: int = 0) -> str:
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor}; a keep-alive stub API; median of {args.runs} runs (min-max)")
    print(f"{'questions':>9} {'RTT ms':>6} {'requests':>8} {'stored q/s':>18} {'end-to-end q/s':>18} "
          f"{'re-poll s':>18}")
    for n in args.sizes:
        for latency in args.latency_ms:
            runs = [run(n, latency) for _ in range(args.runs)]
            print(f"{n:>9} {latency:>6.0f} {runs[0]['requests']:>8} "
                  f"{spread([n / r['store_s'] for r in runs]):>18} "
                  f"{spread([n / (r['fetch_s'] + r['store_s']) for r in runs]):>18} "
                  f"{spread([r['repoll_s'] for r in runs], 2):>18}", flush=True)

    from django.conf import settings

    response_seconds = 5.0
    print(f"\nhostile sources, three polls each: median (min-max); budgets {response_seconds:.0f} s a response, "
          f"{settings.SOURCE_POLL_SECONDS:.0f} s a poll, {settings.PARLIAMENT_API_MAX_PAGES} pages")
    print(f"{'source':>24} {'poll s':>18} {'landed':>7} {'good records/s':>15}  how it ended")
    for kind in ("poison records", "dripping feed", "API repeating its page", "API with endless pages"):
        runs = [hostile(kind, response_seconds) for _ in range(3)]
        seconds = [r["seconds"] for r in runs]
        rate = statistics.median(r["landed"] / r["seconds"] for r in runs)
        print(f"{kind:>24} {statistics.median(seconds):>6.2f} ({min(seconds):.2f}-{max(seconds):.2f}) "
              f"{runs[0]['landed']:>7} {rate:>15.0f}  {(runs[0]['error'] or 'completed')[-60:]}; "
              f"{runs[0]['problems']} problem(s) on the source")


if __name__ == "__main__":
    main()
