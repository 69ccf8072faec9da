"""How fast the percolator matches a batch of new questions against every saved search.

Generates N saved searches held by confirmed subscribers and a batch of M new questions, stores them in
PostgreSQL, builds the percolator from the database as a worker does, matches the batch with the index
warm, and compares with the plain way: one SQL query per distinct saved search, restricted to the
batch's question ids (the search page's filter, `to_q`). The SQL side is timed on a random sample of the
distinct searches and extrapolated to all of them; on that sample the two must select the same questions.
Builds, matches and the SQL sample each run --runs times (default 3): the table gives the medians, and
the line under each row the medians with their ranges.

Then it records matches as a worker does: each of --runs further batches of M new questions is matched and
its matches written in one transaction, into the table the earlier runs filled, as between polls. It reports
the (alert, event) matches written per batch, how long writing them took (matching included) and so matches
recorded per second (an alert's matches of a batch are one row), how
much the process's memory grew while writing (sampled every 5 ms: flat in the batch size if the matches
stream), and the table's size per match, its indexes included. `--sample 0` skips the SQL comparison.

    .venv/bin/python bench/match.py --searches 10000 100000 1000000 --questions 1000

Questions and searches come from the real sample of 20,000 written questions (bench/corpus.py; another copy
with --sample-file or $BENCH_QUESTIONS_SAMPLE). The archive the rarity is read from is 2,000 of them and the
batch the next M, each a real question with its own heading, text, answer, member and department. Saved
searches are drawn from the sample's words as subscribers write them: headings' subjects (the more questions a
subject has, the more people follow it), rarer words and two-word phrases of the texts, words that occur
together, members (with member: and without a field), ministers, departments, and a few OR, NOT, wildcards and
quoted words. Most match few questions and popular searches repeat.

It empties the alerts tables of the database it is given (default: the `bench` database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "bench-match-"


def setup(database_url: str) -> None:
    from bench import ensure_database

    ensure_database(database_url)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the questions and searches ---------------------------------------------------------


class Corpus:
    """Questions and saved searches from the real sample (see bench/corpus.py).

    Question `number` is the archive's question of that index: the first 20,000 are the sample's own questions,
    in a shuffled order. Searches are drawn with `rng`, so the same seed gives the same searches.
    """

    def __init__(self, tail_words: int = 0, rng: random.Random | None = None, sample: str | None = None) -> None:
        from bench.corpus import Archive, SearchDraws, load_sample, sample_path

        self.rng = rng or random.Random(1)
        records = load_sample(sample_path(sample))
        self.archive = Archive(records, self.rng.randrange(2**31), prefix=PREFIX)
        self.draws = SearchDraws(records, self.rng)
        self.total = len(records)

    def question(self, number: int) -> dict:
        return self.archive.record(number, max(self.total, number + 1))

    def search(self) -> str:
        return self.draws.draw()


# --- storing -----------------------------------------------------------------------------


def store_searches(corpus: Corpus, n: int) -> tuple[int, int]:
    """N subscriptions of confirmed subscribers, three or so each; (subscriptions, distinct searches)."""
    from django.db import connection
    from django.utils import timezone

    from questions.search import QueryError, canonical, parse

    canonical_of: dict[str, str] = {}
    rows = []
    subscriber = 0
    held: set[str] = set()
    while len(rows) < n:
        if len(rows) % 3 == 0:
            subscriber += 1
            held = set()
        text = corpus.search()
        found = canonical_of.get(text)
        if found is None:
            try:
                found = canonical_of[text] = canonical(parse(text))
            except QueryError:
                continue
        if found in held:
            continue
        held.add(found)
        roll = corpus.rng.random()
        frequency = "immediate" if roll < 0.6 else "daily" if roll < 0.9 else "weekly"
        alert_on = ("both", "both", "new", "answers")[corpus.rng.randrange(4)]
        rows.append((subscriber, text, found, frequency, alert_on))
    now = timezone.now() - dt.timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE alerts_match, alerts_delivery, alerts_subscription, alerts_subscriber "
                       "RESTART IDENTITY CASCADE")
        with cursor.cursor.copy("COPY alerts_subscriber (id, email, confirmed_at, suppressed_reason, token_version, "
                                "email_grouping, created_at) FROM STDIN") as copy:
            for number in range(1, subscriber + 1):
                copy.write_row((number, f"reader{number}@example.com", now, "", 1, "combined", now))
        with cursor.cursor.copy("COPY alerts_subscription (subscriber_id, query, canonical_query, label, frequency, "
                                "alert_on, paused, confirmed_at, created_at, updated_at) FROM STDIN") as copy:
            for subscriber_id, text, found, frequency, alert_on in rows:
                copy.write_row((subscriber_id, text, found, "", frequency, alert_on, False, now, now, now))
        cursor.execute("SELECT setval(pg_get_serial_sequence('alerts_subscriber', 'id'), %s)", [subscriber])
        cursor.execute("ANALYZE alerts_subscriber")
        cursor.execute("ANALYZE alerts_subscription")
    return len(rows), len({row[2] for row in rows})


def store_questions(records: list[dict]) -> list[int]:
    from questions.models import Question, QuestionEvent

    made = []
    for record in records:
        question = Question(**record)
        question.refresh_search_text()
        made.append(question)
    Question.objects.bulk_create(made, batch_size=1000)
    events = [QuestionEvent(question=q, kind="tabled", key="tabled") for q in made]
    events += [QuestionEvent(question=q, kind="answered", key="answered") for q in made if q.answer_text]
    QuestionEvent.objects.bulk_create(events, batch_size=1000)
    return [q.pk for q in made]


def prepare(n: int, m: int, seed: int, sample_file: str | None, batches: int = 1) -> tuple[int, int, list[dict]]:
    """Store the archive the rarity is read from and the saved searches; (subscriptions, distinct searches,
    the records of `batches` batches, to be stored after the builds)."""
    from questions.models import Question

    corpus = Corpus(rng=random.Random(seed), sample=sample_file)
    Question.objects.filter(external_id__startswith=PREFIX).delete()
    store_questions([corpus.question(number) for number in range(2000)])
    subscriptions, distinct = store_searches(corpus, n)
    return subscriptions, distinct, [corpus.question(number) for number in range(2000, 2000 + m * batches)]


# --- measuring ---------------------------------------------------------------------------


def run(n: int, m: int, sample: int, seed: int, runs: int = 3, sample_file: str | None = None) -> dict:
    from django.db import connection

    from alerts.percolator import Percolator
    from questions.models import Question
    from questions.search import parse, to_q
    from questions.search.percolate import Batch, iter_bits

    rng = random.Random(seed)
    # Made in a process of its own, so that the memory measured below is the percolator's and Django's, as in a
    # worker, and not the sample's and its vocabulary's.
    connection.close()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        subscriptions, distinct, records = pool.apply(prepare, (n, m, seed, sample_file, 1 + runs))
    batch, later = records[:m], [records[start:start + m] for start in range(m, len(records), m)]

    # Each build from nothing, as a worker's first run does; the memory is what the last one holds.
    builds, grown = [], []
    percolator = None
    for _ in range(runs):
        percolator = None
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        percolator = Percolator()
        percolator.refresh()
        builds.append(time.perf_counter() - started)
        gc.collect()
        after = rss_mb()
        grown.append(after - before)
    build = statistics.median(builds)

    batch_ids = store_questions(batch)
    questions = list(Question.objects.filter(id__in=batch_ids).order_by("id"))
    documents = [q.search_document() for q in questions]
    timings = []
    for _ in range(max(runs, 3)):
        started = time.perf_counter()
        found = percolator.match(documents)
        timings.append(time.perf_counter() - started)
    match_s = statistics.median(timings)
    index = percolator.index
    assert index is not None
    candidates = len(index.candidates(Batch(documents)))
    pairs = index.candidate_pairs(documents)
    matches = sum(mask.bit_count() * len(percolator.subscribers(query_id)) for query_id, mask in found.items())

    texts = index.texts()
    chosen = rng.sample(texts, min(sample, len(texts)))
    nodes = [parse(text, max_length=None) for text in chosen]
    position_of = {q.pk: position for position, q in enumerate(questions)}
    different = 0
    sql_runs = []
    for _ in range(runs):
        started = time.perf_counter()
        selected = [set(Question.objects.filter(to_q(node), id__in=batch_ids).values_list("id", flat=True))
                    for node in nodes]
        sql_runs.append(time.perf_counter() - started)
    sql_s = statistics.median(sql_runs)
    for text, ids in zip(chosen, selected, strict=True):
        query_id = index.query_id(text)
        mine = {questions[position].pk for position in iter_bits(found.get(query_id, 0))}
        if mine != ids or any(i not in position_of for i in ids):
            different += 1
    per_query = sql_s / max(len(chosen), 1)
    baseline = per_query * len(texts)
    written = [write(percolator, store_questions(records)) for records in later]
    return {
        "written": [w["matches"] for w in written], "rows_per_s": [w["rows_per_s"] for w in written],
        "write_s": [w["seconds"] for w in written], "write_peak_mb": [w["peak_mb"] for w in written],
        "bytes_per_match": [w["bytes_per_match"] for w in written],
        "searches": subscriptions, "distinct": len(percolator), "generated_distinct": distinct, "build_s": build,
        "build_runs": builds, "rss_delta_mb": statistics.median(grown), "rss_mb": after, "match_s": match_s,
        "match_runs": timings,
        "candidates": candidates, "candidates_per_q": pairs / m, "matches_per_q": matches / m,
        "matched_queries": len(found), "sql_sampled": len(chosen), "sql_sample_s": sql_s,
        "sql_per_query_ms": per_query * 1000, "sql_extrapolated_s": baseline, "ratio": baseline / match_s,
        "sql_extrapolated_runs": [run_s / max(len(chosen), 1) * len(texts) for run_s in sql_runs],
        "different": different, "median_match_s": statistics.median(timings),
    }


class PeakRss:
    """The most this process's resident memory grew above where it started, sampled every few ms."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = rss_mb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def grew_mb(self) -> float:
        return self.peak - self.base


def write(percolator, question_ids: list[int]) -> dict:
    """Match a batch of new questions and record the matches as a worker's run does, in one transaction; the
    table keeps what earlier runs wrote, as it does between polls."""
    from django.db import connection, transaction

    from alerts.matching import record_matches
    from questions.models import QuestionEvent

    events = list(QuestionEvent.objects.filter(question_id__in=question_ids).select_related("question")
                  .order_by("id"))
    gc.collect()
    with PeakRss() as peak:
        started = time.perf_counter()
        with transaction.atomic():
            recorded = record_matches(events, percolator)
        seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        # A row holds an alert's matches of one batch: the size is per (alert, event) match they hold.
        cursor.execute("SELECT pg_total_relation_size('alerts_match'), (SELECT sum(size) FROM alerts_match)")
        size, matches = cursor.fetchone()
    return {"matches": recorded.matches, "seconds": seconds, "rows_per_s": recorded.matches / seconds,
            "peak_mb": peak.grew_mb, "bytes_per_match": size / max(matches or 0, 1)}


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=2000, help="distinct searches run as SQL (default 2000)")
    parser.add_argument("--tail-words", type=int, default=0,
                        help="ignored: the words now come from the real sample (kept so that older commands run)")
    parser.add_argument("--sample-file", help="the real questions, JSON lines, gzipped (default: the project's "
                                              "fixture, or $BENCH_QUESTIONS_SAMPLE)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--runs", type=int, default=3, help="builds (and at least as many matches) per size")
    parser.add_argument("--json", action="store_true", help="also print each row as JSON")
    args = parser.parse_args()
    setup(args.database_url)
    from django.db import connection

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"database: {connection.vendor} {connection.pg_version if connection.vendor == 'postgresql' else ''}; "
          f"{args.questions} questions per batch, SQL baseline on {args.sample} sampled distinct searches; "
          f"figures are medians of {args.runs} runs")
    header = (f"{'searches':>9} {'distinct':>8} {'build s':>7} {'RSS MB':>11} {'match s':>7} {'cand.':>7} "
              f"{'cand./q':>8} {'match/q':>8} {'SQL ms/q':>8} {'SQL s (extrap.)':>15} {'ratio':>7} {'same':>9} "
              f"{'written':>9} {'write s':>7} {'match/s':>9} {'+MB':>5} {'B/match':>7}")
    print(header)
    for n in args.searches:
        r = run(n, args.questions, args.sample, args.seed, args.runs, args.sample_file)
        print(f"{r['searches']:>9} {r['distinct']:>8} {r['build_s']:>7.1f} "
              f"{r['rss_delta_mb']:>5.0f}/{r['rss_mb']:<5.0f} {r['match_s']:>7.2f} {r['candidates']:>7} "
              f"{r['candidates_per_q']:>8.0f} {r['matches_per_q']:>8.0f} {r['sql_per_query_ms']:>8.2f} "
              f"{r['sql_extrapolated_s']:>15.0f} {r['ratio']:>6.0f}x "
              f"{r['sql_sampled'] - r['different']:>4}/{r['sql_sampled']:<4} "
              f"{statistics.median(r['written']):>9.0f} {statistics.median(r['write_s']):>7.2f} "
              f"{statistics.median(r['rows_per_s']):>9.0f} {statistics.median(r['write_peak_mb']):>5.0f} "
              f"{statistics.median(r['bytes_per_match']):>7.0f}", flush=True)
        print(f"{'':>9} median (range) of {len(r['build_runs'])}: build s {spread(r['build_runs'], 1)}; match s "
              f"{spread(r['match_runs'], 2)}; SQL s (extrap.) {spread(r['sql_extrapolated_runs'], 0)}; "
              f"matches/s written {spread(r['rows_per_s'], 0)}; peak +MB {spread(r['write_peak_mb'], 0)}; "
              f"bytes per match {spread(r['bytes_per_match'], 0)}", flush=True)
        if args.json:
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
