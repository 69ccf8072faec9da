"""How fast questions are ingested from the Written Questions API, network excluded.

Serves N generated questions (the real detail record's shape, varied) from a local stub of the API,
runs the real poller against it, and prints a table: the time spent fetching (HTTP on loopback and
parsing) and the time spent storing, and questions per second for each.

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


def run(n: int) -> dict[str, float]:
    import threading

    from werkzeug.serving import make_server

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
    server = make_server("127.0.0.1", 0, wsgi_app(stub), threaded=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--database-url")
    args = parser.parse_args()
    setup(args.database_url)
    from django.db import connection

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor}")
    print(f"{'questions':>9} {'requests':>8} {'fetch s':>8} {'store s':>8} {'stored q/s':>10} "
          f"{'end-to-end q/s':>14} {'re-poll s':>9}")
    for n in args.sizes:
        r = run(n)
        print(f"{n:>9} {r['requests']:>8} {r['fetch_s']:>8.2f} {r['store_s']:>8.2f} {n / r['store_s']:>10.0f} "
              f"{n / (r['fetch_s'] + r['store_s']):>14.0f} {r['repoll_s']:>9.2f}")


if __name__ == "__main__":
    main()
