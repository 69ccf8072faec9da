"""End to end: how long from a question appearing in the API to its immediate alerts reaching the ESP.

Stores N saved searches (as bench/match.py makes them) plus one watcher whose alert only the new
question matches, starts a real Celery worker on PostgreSQL and Redis, a local stub of the Written
Questions API and one of Postmark's email API, then puts a new question into the API stub and asks
for a poll. Prints when the question landed, when its events were matched, and when the first and
the last of its immediate alerts (the watcher's among them) were handed to the ESP.

    .venv/bin/python bench/pipeline.py [--searches 100000] [--database-url ...] [--redis-url ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=100_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/pipelinebench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args()

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
    from questions.models import Question, QuestionEvent, Source

    corpus = Corpus(tail_words=30_000, rng=random.Random(7))
    started = time.perf_counter()
    subscriptions, distinct = store_searches(corpus, args.searches)
    now = timezone.now()
    watcher = Subscriber.objects.create(email="watcher@example.org", confirmed_at=now)
    Subscription.objects.create(subscriber=watcher, query=WATCH_WORD, canonical_query=WATCH_WORD, confirmed_at=now)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE questions_question, questions_source RESTART IDENTITY CASCADE")
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
        api.put(new_question(corpus, 1, "Warm-up"))
        app.send_task("questions.poll_sources", args=["API stub"])
        wait(lambda: any(m["To"] == "watcher@example.org" for m in esp.messages), 600, "the warm-up alert")
        warmed = time.perf_counter()
        print(f"worker warm (index built, first alert sent) in {warmed - warm_started:.1f} s")
        while True:  # let the warm-up's other emails drain
            before = len(esp.messages)
            time.sleep(1)
            if len(esp.messages) == before:
                break
        sent_before = len(esp.messages)

        api.put(new_question(corpus, 2, "Measured"))
        t0 = time.perf_counter()
        app.send_task("questions.poll_sources", args=["API stub"])
        landed = wait(lambda: Question.objects.filter(external_id="2000002").exists(), 120, "the question")
        matched = wait(lambda: not QuestionEvent.objects.filter(question__external_id="2000002",
                                                                matched_at__isnull=True).exists(), 120, "matching")
        watcher_sent = wait(lambda: any(m["To"] == "watcher@example.org" for m in esp.messages[sent_before:]),
                            120, "the watcher's alert")
        while True:
            before = len(esp.messages)
            time.sleep(0.5)
            if len(esp.messages) == before:
                break
        last = time.perf_counter() - 0.5
        emails = len(esp.messages) - sent_before
    finally:
        worker.terminate()
        worker.wait(30)
        api_server.shutdown()
        esp_server.stop()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "worker: 2 processes; API polled at the default 5 requests/s")
    print(f"{'saved searches':>14} {'landed s':>8} {'matched s':>9} {'watcher emailed s':>17} "
          f"{'all emailed s':>13} {'emails':>6}")
    print(f"{subscriptions + 1:>14,} {landed - t0:>8.2f} {matched - t0:>9.2f} {watcher_sent - t0:>17.2f} "
          f"{last - t0:>13.2f} {emails:>6}")


def new_question(corpus, number: int, label: str) -> dict:
    from django.utils import timezone

    fields = corpus.question(number)
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
