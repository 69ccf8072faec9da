"""End to end: how long from a question appearing in the API to its immediate alerts reaching the ESP.

Stores N saved searches (as bench/match.py makes them) plus one watcher whose alert only the new
questions match, starts a real Celery worker on PostgreSQL and Redis, a local stub of the Written
Questions API and one of Postmark's email API, and warms the worker up with a first question (its
first match run builds the index of saved searches). Then come --runs measured runs on that same
worker. One run puts a new question into the API stub (a new id, the same text every run, so that
each run has the same alerts to send), asks for a poll, and times from that request when the
question landed, when its events were matched, when the watcher's alert reached the ESP and when
the last of its immediate alerts did (no new email for half a second); the next run starts once
the ESP has been quiet for a second. Prints each run, then each column as the median with the range.

    .venv/bin/python bench/pipeline.py [--searches 100000] [--runs 3] [--database-url ...] [--redis-url ...]

It empties the alerts and questions tables of the database it is given and flushes the Redis database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WATCH_WORD = "zeppelinology"


def wait(condition, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def settle(count, quiet: float, timeout: float, what: str, since: float | None = None) -> float:
    """When `count()` last grew (`since`, if it does not grow again), once it has not grown for `quiet` seconds."""
    last_seen, changed = count(), since or time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now, seen = time.perf_counter(), count()
        if seen != last_seen:
            last_seen, changed = seen, now
        elif now - changed >= quiet:
            return changed
    raise SystemExit(f"timed out waiting for {what}")


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="measured runs after the warm-up, on the same worker")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/pipelinebench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from tests.esp_stub import PostmarkStub, StubServer
    from tests.parliament_stub import ParliamentStub, wsgi_app

    esp = PostmarkStub()
    esp_server = StubServer(esp).start()
    api = ParliamentStub()
    from werkzeug.serving import make_server

    api_server = make_server("127.0.0.1", 0, wsgi_app(api), threaded=True)
    import threading

    threading.Thread(target=api_server.serve_forever, daemon=True).start()
    env = {
        "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend", "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench",
        "ANYMAIL_POSTMARK_API_URL": esp_server.url(),
        "SITE_URL": "https://alerts.example.org",
    }
    os.environ.update(env)
    from bench.match import Corpus, setup, store_searches

    setup(args.database_url)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from django.db import connection
    from django.utils import timezone

    from alerts.models import Subscriber, Subscription
    from config.celery import app
    from questions.models import Source

    # First: the cascade reaches the alerts tables too (follows refer to questions).
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE questions_question, questions_source RESTART IDENTITY CASCADE")
    corpus = Corpus(tail_words=30_000, rng=random.Random(7))
    started = time.perf_counter()
    subscriptions, distinct = store_searches(corpus, args.searches)
    now = timezone.now()
    watcher = Subscriber.objects.create(email="watcher@example.org", confirmed_at=now)
    Subscription.objects.create(subscriber=watcher, query=WATCH_WORD, canonical_query=WATCH_WORD, confirmed_at=now)
    Source.objects.create(name="API stub", kind="api", url=f"http://127.0.0.1:{api_server.server_port}",
                          cursor=timezone.localdate(), last_success_at=timezone.now())
    print(f"stored {subscriptions:,} saved searches ({distinct:,} distinct) in {time.perf_counter() - started:.1f} s")

    app.conf.broker_url = args.redis_url
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=2", "-Q", "celery,poll",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Warm up: the worker builds its index of saved searches on its first match run.
        warm_started = time.perf_counter()
        app.send_task("alerts.match_events")
        app.send_task("alerts.match_events")
        time.sleep(1)
        api.put(new_question(corpus.question(1), 1, "Warm-up"))
        app.send_task("questions.poll_sources", args=["API stub"])
        wait(lambda: any(m["To"] == "watcher@example.org" for m in esp.messages), 600, "the warm-up alert")
        warmed = time.perf_counter()
        print(f"worker warm (index built, first alert sent) in {warmed - warm_started:.1f} s")
        settle(lambda: len(esp.messages), 1.0, 600, "the warm-up's other emails")

        measured = corpus.question(2)
        runs = []
        for run in range(1, args.runs + 1):
            runs.append(measure(api, esp, app, new_question(measured, 1 + run, "Measured")))
            r = runs[-1]
            print(f"run {run}: landed {r['landed']:.2f} s, matched {r['matched']:.2f} s, watcher emailed "
                  f"{r['watcher']:.2f} s, all emailed {r['last']:.2f} s, {r['emails']} emails", flush=True)
            settle(lambda: len(esp.messages), 1.0, 120, "the ESP to be quiet between runs")
    finally:
        worker.terminate()
        worker.wait(30)
        api_server.shutdown()
        esp_server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "worker: 2 processes; API polled at the default 5 requests/s")
    print(f"median (min–max) of {len(runs)} runs, seconds from asking for the poll")
    print(f"{'saved searches':>14} {'landed s':>18} {'matched s':>18} {'watcher emailed s':>18} "
          f"{'all emailed s':>18} {'emails':>18}")
    print(f"{subscriptions + 1:>14,} {spread([r['landed'] for r in runs]):>18} "
          f"{spread([r['matched'] for r in runs]):>18} {spread([r['watcher'] for r in runs]):>18} "
          f"{spread([r['last'] for r in runs]):>18} {spread([r['emails'] for r in runs], 0):>18}")


def measure(api, esp, app, question: dict) -> dict:
    """One run: the question put in the API stub and a poll; seconds from asking for the poll."""
    from questions.models import Question, QuestionEvent

    external_id = str(question["id"])
    sent_before = len(esp.messages)
    api.put(question)
    t0 = time.perf_counter()
    app.send_task("questions.poll_sources", args=["API stub"])
    landed = wait(lambda: Question.objects.filter(external_id=external_id).exists(), 120, "the question")
    matched = wait(lambda: not QuestionEvent.objects.filter(question__external_id=external_id,
                                                            matched_at__isnull=True).exists(), 120, "matching")
    watcher = wait(lambda: any(m["To"] == "watcher@example.org" for m in esp.messages[sent_before:]),
                   120, "the watcher's alert")
    last = settle(lambda: len(esp.messages), 0.5, 600, "the last alert", since=watcher)
    return {"landed": landed - t0, "matched": matched - t0, "watcher": watcher - t0, "last": last - t0,
            "emails": len(esp.messages) - sent_before}


def new_question(fields: dict, number: int, label: str) -> dict:
    from django.utils import timezone

    today = timezone.localdate()
    return {
        "id": 2_000_000 + number, "uin": str(90_000 + number), "house": "Commons",
        "heading": f"{fields['heading']}: {WATCH_WORD} {label}", "questionText": fields["question_text"],
        "answerText": None, "dateTabled": f"{today - dt.timedelta(days=0)}T00:00:00", "dateAnswered": None,
        "askingMemberId": 4253, "askingMember": {"name": "Clive Lewis", "party": "Labour",
                                                 "memberFrom": "Norwich South"},
        "answeringBodyId": 1, "answeringBodyName": fields.get("answering_body_name", "Home Office"),
        "isWithdrawn": False, "attachments": [], "groupedQuestions": [],
    }


if __name__ == "__main__":
    main()
