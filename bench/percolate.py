"""`manage.py percolate` against `manage.py search --queries` over SQLite, each timed as a whole process.

A new user's comparison: a file of saved searches and a file of questions, answered once by the
percolator (no database) and once by one SQL query per search over the same questions loaded into a
fresh SQLite database. Both outputs must be byte-identical. Each command runs --runs times (median and
range reported); the SQL side is slow, so --sql-runs may be lower.

    .venv/bin/python bench/percolate.py --searches 100000 --questions 1000

The searches and questions are made as bench/match.py makes them, from the real sample of written questions
(real questions; searches drawn from their words, phrases, members and departments), so popular searches
repeat as they do among real subscribers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


def write_files(folder: Path, searches: int, questions: int, seed: int, sample_file: str | None = None,
                ) -> tuple[Path, Path]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from bench.match import Corpus

    corpus = Corpus(rng=random.Random(seed), sample=sample_file)
    question_file, query_file = folder / "questions.jsonl", folder / "queries.jsonl"
    with question_file.open("w") as out:
        for number in range(questions):
            q = corpus.question(number)
            out.write(json.dumps({
                "id": q["external_id"], "uin": q["uin"], "house": q["house"], "heading": q["heading"],
                "question": q["question_text"], "answer": q["answer_text"], "member": q["asking_member_name"],
                "party": q["asking_member_party"], "constituency": q["asking_member_constituency"],
                "department": q["answering_body_name"], "minister": q["answering_member_name"],
            }) + "\n")
    with query_file.open("w") as out:
        for number in range(searches):
            out.write(json.dumps({"id": number, "query": corpus.search()}) + "\n")
    return question_file, query_file


def timed(command: list[str], env: dict, output: Path) -> float:
    started = time.perf_counter()
    with output.open("wb") as out:
        subprocess.run(command, env=env, stdout=out, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    return time.perf_counter() - started


def summary(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} ({min(seconds):.2f}–{max(seconds):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sql-runs", type=int, default=3)
    parser.add_argument("--tail-words", type=int, default=0,
                        help="ignored: the words now come from the real sample (kept so that older commands run)")
    parser.add_argument("--sample-file", help="the real questions, JSON lines, gzipped (default: the project's "
                                              "fixture, or $BENCH_QUESTIONS_SAMPLE)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        question_file, query_file = write_files(folder, args.searches, args.questions, args.seed,
                                                 args.sample_file)
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}", "LOG_FORMAT": "plain",
               "LOG_LEVEL": "WARNING"}
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], env=env, check=True, cwd=ROOT)
        subprocess.run([PYTHON, "manage.py", "import_questions", str(question_file)], env=env, check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        percolate = [PYTHON, "manage.py", "percolate", "--queries", str(query_file), "--questions",
                     str(question_file)]
        search = [PYTHON, "manage.py", "search", "--queries", str(query_file)]
        percolate_s = [timed(percolate, env, folder / "percolate.out") for _ in range(args.runs)]
        sql_s = [timed(search, env, folder / "search.out") for _ in range(args.sql_runs)]
        same = (folder / "percolate.out").read_bytes() == (folder / "search.out").read_bytes()
        lines = (folder / "percolate.out").read_text().splitlines()
        matched = sum(len(json.loads(line).get("matches", [])) for line in lines)
        distinct = len({json.loads(line)["query"] for line in query_file.read_text().splitlines()})

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.searches:,} searches ({distinct:,} distinct texts) x {args.questions:,} questions, "
          f"{matched:,} matches; whole processes, median of {args.runs} (SQL: {args.sql_runs}) with the range")
    print(f"{'command':<40} {'seconds':>24}")
    print(f"{'manage.py percolate (no database)':<40} {summary(percolate_s):>24}")
    print(f"{'manage.py search --queries (SQLite)':<40} {summary(sql_s):>24}")
    print(f"{'ratio (median)':<40} {statistics.median(sql_s) / statistics.median(percolate_s):>23.0f}x")
    print(f"{'outputs byte-identical':<40} {str(same):>24}")


if __name__ == "__main__":
    main()
