"""How fast the percolator matches a batch of new questions against every saved search.

Generates N saved searches held by confirmed subscribers and a batch of M new questions, stores them in
PostgreSQL, builds the percolator from the database as a worker does, matches the batch with the index
warm, and compares with the plain way: one SQL query per distinct saved search, restricted to the
batch's question ids (the search page's filter, `to_q`). The SQL side is timed on a random sample of the
distinct searches and extrapolated to all of them; on that sample the two must select the same questions.
Builds, matches and the SQL sample each run --runs times (default 3): the table gives the medians, and
the line under each row the medians with their ranges.

    .venv/bin/python bench/match.py --searches 10000 100000 1000000 --questions 1000

The words come from the real questions in questions/fixtures: saved searches draw them Zipf-like (a few
subjects are followed by many people, most by few) as single words, phrases (pairs of adjacent words from
the real text), AND, OR, NOT, wildcards, member/department/house fields and their mixtures, so popular
searches repeat. The fixtures hold only ~500 distinct words, far fewer than a year of written questions,
where names of places, bodies, schemes and people make a long tail; that tail is made of pseudo-words
built from syllables of the real words (--tail-words), and both questions and searches draw from it
with the same Zipf ranking. Questions are the real questions' texts with their subject words replaced
by drawn ones, with generated members, constituencies and real department names.

It empties the alerts tables of the database it is given (default: the `bench` database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from bisect import bisect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "bench-match-"
DEPARTMENTS = [
    "Home Office", "Department for Education", "Department of Health and Social Care", "HM Treasury",
    "Ministry of Defence", "Ministry of Justice", "Department for Transport", "Foreign, Commonwealth and "
    "Development Office", "Department for Work and Pensions", "Department for Environment, Food and Rural "
    "Affairs", "Department for Energy Security and Net Zero", "Department for Business and Trade",
    "Department for Science, Innovation and Technology", "Cabinet Office", "Department for Culture, Media and "
    "Sport", "Ministry of Housing, Communities and Local Government", "Northern Ireland Office", "Scotland Office",
    "Wales Office", "Attorney General", "Leader of the House", "Women and Equalities",
]
PARTIES = ["Labour", "Conservative", "Liberal Democrat", "Scottish National Party", "Green Party", "Reform UK",
           "Plaid Cymru", "Independent", "Crossbench"]
FIRST = ["Clive", "Diana", "Jane", "Luke", "Sarah", "James", "Emily", "David", "Rachel", "Tom", "Anna", "Peter",
         "Helen", "Mark", "Lucy", "Simon", "Kate", "John", "Alison", "Richard", "Fiona", "Andrew", "Ruth", "Neil",
         "Claire", "Paul", "Joanna", "Stephen", "Wendy", "Chris"]
LAST = ["Lewis", "Johnson", "Hall", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas",
        "Roberts", "Walker", "Wright", "Thompson", "White", "Hughes", "Edwards", "Green", "Wood", "Harris",
        "Martin", "Jackson", "Clarke", "Turner", "Hill", "Moore", "Cooper", "Ward", "Morris", "King", "Watson",
        "Baker", "Harrison", "Morgan", "Patel", "Young", "Allen", "Mitchell", "James", "Anderson", "Phillips",
        "Lee", "Bell", "Parker", "Davies", "Shaw", "Khan", "Begum", "Ali", "Murphy", "Kelly", "Campbell",
        "Stewart", "Scott", "Reid", "Murray", "Graham", "Kennedy", "Owen"]
PLACES = ["North", "South", "East", "West", "Central", "and District", "Valley", "Vale", "Coast"]


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


# --- the words --------------------------------------------------------------------------


class Zipf:
    """Draws items with weight 1/rank**s."""

    def __init__(self, items: list, s: float, rng: random.Random) -> None:
        self.items = items
        self.rng = rng
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(len(items))))

    def draw(self):
        return self.items[bisect(self.cumulative, self.rng.random() * self.cumulative[-1])]


class Corpus:
    def __init__(self, tail_words: int, rng: random.Random) -> None:
        from collections import Counter

        from questions.search import words

        self.rng = rng
        seed = json.loads((ROOT / "questions/fixtures/seed_questions.json").read_text())
        detail = json.loads((ROOT / "questions/fixtures/question_detail.json").read_text())["value"]
        listed = json.loads((ROOT / "questions/fixtures/list_page_excerpt.json").read_text())["results"]
        self.templates = [(q["question"], q.get("answer") or "") for q in seed]
        self.templates.append((detail["questionText"], detail["answerText"] or ""))
        self.templates += [(r["value"]["questionText"] or "", "") for r in listed if r["value"]["questionText"]]
        counts = Counter()
        self.sentences: list[list[str]] = []
        for question, answer in self.templates:
            for text in (question, answer):
                found = words(text)
                counts.update(found)
                self.sentences.append(found)
        for q in seed:
            counts.update(words(q["heading"]))
        ranked = [word for word, _ in counts.most_common()]
        # The most common words are the language's glue ("the", "to", "secretary"): nobody saves them.
        self.common = set(ranked[:80])
        real = [word for word in ranked[80:] if len(word) >= 3 and not word.isdigit()]
        syllables = sorted({word[i:i + 3] for word in real for i in range(0, len(word) - 2, 2)})
        tail: set[str] = set()
        while len(tail) < tail_words:
            made = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3, 3, 4))))
            if made not in counts:
                tail.add(made)
        self.subjects = real + sorted(tail)
        rng.shuffle(self.subjects)
        self.subject = Zipf(self.subjects, 1.0, rng)
        self.bigrams = sorted({(a, b) for sentence in self.sentences for a, b in itertools.pairwise(sentence)
                               if not (a in self.common and b in self.common)})
        rng.shuffle(self.bigrams)
        self.bigram = Zipf(self.bigrams, 1.0, rng)
        self.members = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(650)]
        self.member = Zipf(self.members, 0.8, rng)
        self.department = Zipf(DEPARTMENTS, 0.8, rng)

    def replace_subjects(self, text: str, share: float) -> str:
        out = []
        for token in text.split():
            if token.isalpha() and token.lower() not in self.common and self.rng.random() < share:
                out.append(self.subject.draw())
            else:
                out.append(token)
        return " ".join(out)

    def question(self, number: int) -> dict:
        rng = self.rng
        question, answer = rng.choice(self.templates)
        heading = f"{self.subject.draw().title()}: {self.subject.draw().title()}"
        answered = bool(answer) and rng.random() < 0.6
        member = self.member.draw()
        return {
            "external_id": f"{PREFIX}{number}", "uin": str(100000 + number),
            "house": "Lords" if rng.random() < 0.2 else "Commons", "heading": heading,
            "question_text": self.replace_subjects(question, 0.3),
            "answer_text": self.replace_subjects(answer, 0.15) if answered else "",
            "asking_member_name": member, "asking_member_party": rng.choice(PARTIES),
            "asking_member_constituency": f"{self.subject.draw().title()} {rng.choice(PLACES)}",
            "answering_body_name": self.department.draw(),
            "answering_member_name": self.member.draw() if answered else "",
        }

    def search(self) -> str:
        rng = self.rng
        word = self.subject.draw
        roll = rng.random()
        if roll < 0.35:
            return word()
        if roll < 0.50:
            return '"{} {}"'.format(*self.bigram.draw())
        if roll < 0.63:
            return f"{word()} {word()}"
        if roll < 0.73:
            return " OR ".join(word() for _ in range(rng.choice((2, 2, 3))))
        if roll < 0.80:
            return f'member:"{self.member.draw()}"' + (f" {word()}" if rng.random() < 0.3 else "")
        if roll < 0.86:
            return f'department:"{self.department.draw()}" {word()}'
        if roll < 0.91:
            stem = word()
            return f"{stem[:max(3, len(stem) - 3)]}*"
        if roll < 0.95:
            return f"{word()} -{word()}"
        if roll < 0.98:
            return f'({word()} OR "{" ".join(self.bigram.draw())}") {word()}'
        return f"house:lords {word()}"


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


def store_questions(corpus: Corpus, first: int, count: int) -> list[int]:
    from questions.models import Question, QuestionEvent

    made = []
    for number in range(first, first + count):
        question = Question(**corpus.question(number))
        question.refresh_search_text()
        made.append(question)
    Question.objects.bulk_create(made, batch_size=1000)
    events = [QuestionEvent(question=q, kind="tabled", key="tabled") for q in made]
    events += [QuestionEvent(question=q, kind="answered", key="answered") for q in made if q.answer_text]
    QuestionEvent.objects.bulk_create(events, batch_size=1000)
    return [q.pk for q in made]


# --- measuring ---------------------------------------------------------------------------


def run(n: int, m: int, sample: int, tail_words: int, seed: int, runs: int = 3) -> dict:
    from django.db import connection

    from alerts.percolator import Percolator
    from questions.models import Question
    from questions.search import parse, to_q
    from questions.search.percolate import Batch, iter_bits

    rng = random.Random(seed)
    corpus = Corpus(tail_words, rng)
    Question.objects.filter(external_id__startswith=PREFIX).delete()
    store_questions(corpus, 0, 2000)  # the archive the rarity sample is read from
    subscriptions, distinct = store_searches(corpus, n)
    connection.close()

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

    batch_ids = store_questions(corpus, 2000, m)
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
    per_query = sql_s / len(chosen)
    baseline = per_query * len(texts)
    return {
        "searches": subscriptions, "distinct": len(percolator), "generated_distinct": distinct, "build_s": build,
        "build_runs": builds, "rss_delta_mb": statistics.median(grown), "rss_mb": after, "match_s": match_s,
        "match_runs": timings,
        "candidates": candidates, "candidates_per_q": pairs / m, "matches_per_q": matches / m,
        "matched_queries": len(found), "sql_sampled": len(chosen), "sql_sample_s": sql_s,
        "sql_per_query_ms": per_query * 1000, "sql_extrapolated_s": baseline, "ratio": baseline / match_s,
        "sql_extrapolated_runs": [run_s / len(chosen) * len(texts) for run_s in sql_runs],
        "different": different, "median_match_s": statistics.median(timings),
    }


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=2000, help="distinct searches run as SQL (default 2000)")
    parser.add_argument("--tail-words", type=int, default=30_000)
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
              f"{'cand./q':>8} {'match/q':>8} {'SQL ms/q':>8} {'SQL s (extrap.)':>15} {'ratio':>7} {'same':>9}")
    print(header)
    for n in args.searches:
        r = run(n, args.questions, args.sample, args.tail_words, args.seed, args.runs)
        print(f"{r['searches']:>9} {r['distinct']:>8} {r['build_s']:>7.1f} "
              f"{r['rss_delta_mb']:>5.0f}/{r['rss_mb']:<5.0f} {r['match_s']:>7.2f} {r['candidates']:>7} "
              f"{r['candidates_per_q']:>8.0f} {r['matches_per_q']:>8.0f} {r['sql_per_query_ms']:>8.2f} "
              f"{r['sql_extrapolated_s']:>15.0f} {r['ratio']:>6.0f}x "
              f"{r['sql_sampled'] - r['different']:>4}/{r['sql_sampled']:<4}", flush=True)
        print(f"{'':>9} median (range) of {len(r['build_runs'])}: build s {spread(r['build_runs'], 1)}; match s "
              f"{spread(r['match_runs'], 2)}; SQL s (extrap.) {spread(r['sql_extrapolated_runs'], 0)}", flush=True)
        if args.json:
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
