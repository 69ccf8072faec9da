"""How fast the search page answers on a large archive in PostgreSQL.

Makes an archive of N written questions from the real sample of 20,000 (bench/corpus.py: real headings,
questions, answers, members, departments and ministers; from the 20,001st question on, answers mixed from
sentences of real answers of the same department; dates spread over 2014 to the sample's last day, and the years
in the text moved with them), loads it with COPY into a database of its own (one per size, reused when it
already holds them), then starts gunicorn on 127.0.0.1 and times real HTTP requests of the search page for
several kinds of query, cold and warm:

- cold: each request comes straight after PostgreSQL's shared buffers were filled with other pages
  (pg_prewarm of a ballast table a few times their size, in the bench's own database) and the lists the
  page keeps in its cache for ten minutes (departments, members) were forgotten, as when they expire, so
  what the request reads of the archive comes from the operating system's page cache where that holds it, and
  from disk where not. Unless asked to (--from-disk), the script does not empty the page cache, and it never
  restarts the server, so how many cold reads go to disk depends on the machine: one that gives its page cache back
  when idle (some virtual machines do) has most of the archive on disk again after a few quiet minutes,
  and the first run after a pause is the coldest. The script checks with pg_buffercache how many of the
  archive's pages were still in the buffers after each eviction and prints the most. With --from-disk
  (as root) it empties the page cache too before each cold request, so that cold requests read from disk.
- warm: the same request again and again, straight after itself (after one request that is not
  timed): the pages it needs are in PostgreSQL's buffers as far as they fit.

Every request opens its own database connection (CONN_MAX_AGE is 0), cold or warm.

It prints, per size and query: the matches, and p50 and p95 milliseconds cold and warm (with --runs above
one, the median of each run's percentiles, with the lowest and highest); then, from one in-process request
per query, how the time splits between the SQL statements and the rest (template, highlighting); with
--explain, the EXPLAIN ANALYZE of the slowest statement of each query over the goal, under the planner
settings it ran with; with --alternatives, the SQL time of other query shapes (a capped COUNT, a loose
index scan for the department list).

    .venv/bin/python bench/search.py [--sizes 100000 1000000] [--runs 3] [--repeat 15] [--cold-repeat 10]
        [--database-url postgres://postgres@127.0.0.1:5432/searchbench] [--explain] [--alternatives]

Each size gets the database <name>_<size> (with --as-named, one size gets <name> itself); it is dropped and
rebuilt when it does not hold exactly the questions this script generates for that size, and migrated when
it does (new indexes are built then). One client sends every request: the server is started with the
per-client allowance of slow searches lifted, and a search refused for its budget (422) counts with its time.
Evicting the buffers evicts other databases' pages too: the server is shared by all its databases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Bump when the generated data changes, so that databases built by an older version are rebuilt.
GENERATOR_VERSION = 2
CHUNK = 5_000
GOAL_MS = 300.0

QUERIES = [
    ("common word", "government", ""),
    ("rare word", "microplastics", ""),
    ("phrase", '"mental health"', ""),
    ("field", 'member:"clive lewis"', ""),
    ("boolean", "(prison OR probation) -covid", ""),
    ("wildcard", "polic*", ""),
    # Texts quote years near the date they were tabled, so this word is mostly in the oldest questions.
    ("dated word", "2011", ""),
    # An irregular plural: every form of "child".
    ("word forms", "children", ""),
    ("name, no field", "clive lewis", ""),
    ("quoted word", '"prisons"', ""),
    ("common, page 200", "government", "200"),
    ("no query", "", ""),
]

# ---------------------------------------------------------------------------------------------------
# Questions: made from the real sample by bench/corpus.py.

COLUMNS = [
    "external_id", "uin", "house", "heading", "question_text", "answer_html", "answer_text", "date_tabled",
    "date_for_answer", "date_answered", "date_holding_answer", "date_answer_corrected", "is_named_day",
    "is_withdrawn", "answer_is_holding", "grouped_uins", "attachments", "asking_member_id", "asking_member_name",
    "asking_member_party", "asking_member_constituency", "answering_body_id", "answering_body_name",
    "answering_member_id", "answering_member_name", "answering_member_role", "url", "source_id",
    "list_signature", "created_at", "updated_at",
]
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# What the search derives from a question's text and keeps beside it: the normalised words of each field, and
# (where the model has them) their base forms.
SEARCH_PREFIXES = ("norm_", "base_")


def copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    return str(value)


def search_columns() -> list[str]:
    """The model's columns for searching, filled as the service fills them (`refresh_search_text`)."""
    from questions.models import Question

    return [field.column for field in Question._meta.concrete_fields if field.column.startswith(SEARCH_PREFIXES)]


def generate_chunk(task: tuple[int, int, int, int, str]) -> bytes:
    """COPY text for questions start..start+count of an archive of `total` built from `seed` and the sample."""
    from questions.models import Question

    seed, start, count, total, sample = task
    archive = _archive(seed, sample)
    columns = search_columns()
    lines = []
    for index in range(start, start + count):
        record = archive.record(index, total)
        question = Question(**record)
        question.refresh_search_text()
        moment = dt.datetime.combine(record["date_tabled"], dt.time(9 + index % 8), tzinfo=dt.UTC)
        record.update(
            date_holding_answer=None, date_answer_corrected=None, answer_is_holding=False, grouped_uins="[]",
            attachments="[]", url="", source_id=None, list_signature="", created_at=moment.isoformat(),
            updated_at=moment.isoformat(),
        )
        values = [copy_value(record[column]) for column in COLUMNS]
        values.extend(copy_value(getattr(question, column)) for column in columns)
        lines.append("\t".join(values))
    return ("\n".join(lines) + "\n").encode()


_archives: dict[tuple[int, str], object] = {}


def _archive(seed: int, sample: str):
    from bench.corpus import Archive, load_sample

    if (seed, sample) not in _archives:
        _archives[seed, sample] = Archive(load_sample(Path(sample)), seed, prefix="")
    return _archives[seed, sample]


def sample_digest(sample: Path) -> str:
    return hashlib.sha256(sample.read_bytes()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------
# Databases.

def database_url(base: str, n: int, as_named: bool = False) -> str:
    if as_named:
        return base
    parts = urllib.parse.urlsplit(base)
    name = parts.path.lstrip("/") or "searchbench"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}_{n}"))


def admin_url(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def marker(n: int, seed: int, sample: Path) -> str:
    return f"searchbench v{GENERATOR_VERSION}: {n} questions, seed {seed}, sample {sample_digest(sample)}"


def is_loaded(url: str, n: int, seed: int, sample: Path) -> bool:
    import psycopg

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            return False
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT obj_description(to_regclass('questions_question'), 'pg_class')").fetchone()
        if not row or row[0] != marker(n, seed, sample):
            return False
        return conn.execute("SELECT count(*) FROM questions_question").fetchone()[0] == n


def recreate(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def run_manage(url: str, *args: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def load(url: str, n: int, seed: int, workers: int, sample: Path) -> dict[str, float]:
    """Fill a fresh database with n questions; the seconds each step took."""
    import psycopg

    timings = {}
    started = time.perf_counter()
    recreate(url)
    run_manage(url, "migrate", "--no-input")
    run_manage(url, "createcachetable")
    timings["migrate"] = time.perf_counter() - started
    # The workers are forked from this process: Django is set up once, here, for the model they fill.
    use_database(url)
    _archive(seed, str(sample))
    columns = search_columns()

    with multiprocessing.get_context("fork").Pool(workers) as pool, psycopg.connect(url) as conn:
        # Secondary indexes are built after the rows are in: much faster than keeping them up to date.
        indexes = conn.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'questions_question'::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
        ).fetchall()
        for index_name, _ in indexes:
            conn.execute(f'DROP INDEX "{index_name}"')
        conn.execute("TRUNCATE questions_question CASCADE")
        started = time.perf_counter()
        copied = ", ".join(COLUMNS + columns)
        tasks = [(seed, start, min(CHUNK, n - start), n, str(sample)) for start in range(0, n, CHUNK)]
        done = 0
        with conn.cursor().copy(f"COPY questions_question ({copied}) FROM STDIN WITH (FREEZE)") as copy:
            for data in pool.imap(generate_chunk, tasks):
                copy.write(data)
                done += CHUNK
                if done % 100_000 == 0:
                    print(f"  {min(done, n):,} questions generated and copied, "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        conn.commit()
        timings["generate+copy"] = time.perf_counter() - started

    started = time.perf_counter()

    def build(definition: str) -> None:
        with psycopg.connect(url, autocommit=True) as index_conn:
            index_conn.execute("SET maintenance_work_mem = '1GB'")
            index_conn.execute(definition)

    # The biggest first, so that the two connections finish at about the same time.
    order = sorted(indexes, key=lambda item: ("answer" not in item[0], "question" not in item[0]))
    with ThreadPoolExecutor(max(1, min(workers, 2))) as pool:
        list(pool.map(build, [definition for _, definition in order]))
    timings["indexes"] = time.perf_counter() - started

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) questions_question")
        conn.execute(f"COMMENT ON TABLE questions_question IS '{marker(n, seed, sample)}'")
    timings["vacuum+analyze"] = time.perf_counter() - started
    return timings


def search_sizes(url: str) -> list[tuple[str, float, int, float]]:
    """For each kind of search column (norm_, base_): the megabytes its values take in the table (as stored,
    compressed or not), and how many indexes read it and their megabytes."""
    import psycopg

    found = []
    with psycopg.connect(url) as conn:
        columns = [row[0] for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'questions_question'::regclass AND attnum > 0 "
            "AND NOT attisdropped").fetchall()]
        indexes = conn.execute(
            "SELECT pg_get_indexdef(indexrelid), pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'questions_question'::regclass").fetchall()
        for prefix in SEARCH_PREFIXES:
            mine = [column for column in columns if column.startswith(prefix)]
            if not mine:
                continue
            total = " + ".join(f"coalesce(sum(pg_column_size({column})), 0)" for column in mine)
            values = conn.execute(f"SELECT {total} FROM questions_question").fetchone()[0]
            reading = [size for definition, size in indexes if re.search(rf"\b{prefix}\w+", definition)]
            found.append((prefix, values / 2**20, len(reading), sum(reading) / 2**20))
    return found


def table_size(url: str) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT pg_size_pretty(pg_table_size('questions_question')), "
            "pg_size_pretty(pg_indexes_size('questions_question'))"
        ).fetchone()


# ---------------------------------------------------------------------------------------------------
# Timing the page.

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # One client sends every timed request, hundreds a minute: the allowance of slow searches per client
    # (questions.allowance) would refuse it after a few slow ones. The budget of each request stays.
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "DEBUG": "0",
           "SEARCH_ALLOWANCE_SECONDS": "1000000"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--timeout", "300", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/help/", timeout=5).read()
            return server, base
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("gunicorn did not start")


def page_path(query: str, page: str) -> str:
    params = {"q": query} if query else {}
    if page:
        params["page"] = page
    return "/?" + urllib.parse.urlencode(params) if params else "/"


COUNT_RE = re.compile(r"(\d+) questions? match")


def fetch(base: str, path: str) -> tuple[float, str]:
    """The milliseconds of one request and its page; a search the page refused (over its budget: 422) counts
    as a request of that time, with "refused" for its page."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(base + path, timeout=600) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code != 422:
            raise
        body = REFUSED
    return (time.perf_counter() - started) * 1000, body


REFUSED = "refused"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ballast(url: str) -> None:
    """A table of the bench's database a few times the size of shared buffers, read into them to evict
    every other page (see the module's docstring)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
        buffers = int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0])
        # Rows of 1,600 bytes stay uncompressed and in line: five to a page.
        rows = 5 * BALLAST_TIMES * buffers
        exists = conn.execute("SELECT to_regclass('bench_ballast') IS NOT NULL").fetchone()[0]
        if not exists or conn.execute("SELECT count(*) FROM bench_ballast").fetchone()[0] != rows:
            conn.execute("DROP TABLE IF EXISTS bench_ballast")
            conn.execute("CREATE TABLE bench_ballast AS SELECT g, repeat(md5(g::text), 50) AS pad "
                         "FROM generate_series(1, %s) g", [rows])
            conn.execute("VACUUM bench_ballast")
            # Written out now, not by a checkpoint in the middle of the timed requests.
            conn.execute("CHECKPOINT")


# How many times the size of shared buffers the ballast is: a page used often has a usage count of up to 5,
# and the clock sweep has to pass it that many times before it is evicted.
BALLAST_TIMES = 6
ARCHIVE_PAGES = """
SELECT count(*) FROM pg_buffercache b JOIN pg_class c ON b.relfilenode = pg_relation_filenode(c.oid)
WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (c.oid = 'questions_question'::regclass
       OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'questions_question'::regclass)
       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'questions_question'::regclass))
"""


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def evict(url: str, from_disk: bool = False) -> int:
    """Fill PostgreSQL's shared buffers with the ballast, forget the lists the search page keeps, and with
    `from_disk` empty the operating system's page cache too; how many pages of the archive were left in
    PostgreSQL's buffers."""
    import psycopg

    forget_page_lists(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_prewarm('bench_ballast', 'buffer')")
        left = conn.execute(ARCHIVE_PAGES).fetchone()[0]
    if from_disk:
        os.sync()
        DROP_CACHES.write_text("1\n")
    return left


def forget_page_lists(url: str) -> None:
    """Empty what the search page keeps in its cache for ten minutes: a request that finds them expired works
    them out again, and the cold requests are that request."""
    use_database(url)
    from django.core.cache import cache

    from questions.searching import DEPARTMENTS_KEY
    from questions.views import MEMBERS_KEY

    cache.delete_many([DEPARTMENTS_KEY, MEMBERS_KEY])


def measure(base: str, url: str, repeat: int, cold_repeat: int, from_disk: bool) -> tuple[list[dict], int]:
    """Each query's cold and warm milliseconds; and the most pages of the archive left in PostgreSQL's buffers
    after an eviction."""
    results, left = [], 0
    for kind, query, page in QUERIES:
        path = page_path(query, page)
        results.append({"kind": kind, "query": query + (f" (page {page})" if page else ""), "path": path,
                        "matches": None, "cold": [], "warm": [], "refused": 0})
    # Cold first, round by round: an eviction before every request.
    for _ in range(cold_repeat):
        for result in results:
            left = max(left, evict(url, from_disk))
            ms, body = fetch(base, result["path"])
            result["cold"].append(ms)
            result["refused"] += body == REFUSED
            found = COUNT_RE.search(body)
            if found:
                result["matches"] = int(found.group(1))
    for result in results:
        fetch(base, result["path"])
        for _ in range(repeat):
            ms, body = fetch(base, result["path"])
            result["warm"].append(ms)
            result["refused"] += body == REFUSED
    return results, left


SET_LOCAL = re.compile(r"SET LOCAL (\w+) (?:= (\w+)|TO DEFAULT)")


def breakdown(url: str, path: str) -> tuple[float, list[tuple[float, str, dict[str, str]]]]:
    """The median of three in-process requests: its total milliseconds, and each SQL statement's milliseconds
    with the planner settings it ran under (what the search set with SET LOCAL)."""
    from django.db import connection
    from django.test import Client
    from psycopg.pq import TransactionStatus

    runs: list[tuple[float, list[tuple[float, str, dict[str, str]]]]] = []
    planner: dict[str, str] = {}

    def timer(execute, sql, params, many, context):
        if connection.connection.info.transaction_status == TransactionStatus.IDLE:
            # This statement starts a transaction: the SET LOCALs of the last one ended with it.
            planner.clear()
        for name, value in SET_LOCAL.findall(sql):
            if value:
                planner[name] = value
            else:
                planner.pop(name, None)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            runs[-1][1].append((elapsed, connection.ops.compose_sql(sql, params) if params else sql,
                                dict(planner)))

    use_database(url)
    client = Client()
    client.get(path)
    for _ in range(3):
        runs.append((0.0, []))
        started = time.perf_counter()
        with connection.execute_wrapper(timer):
            client.get(path)
        runs[-1] = ((time.perf_counter() - started) * 1000, runs[-1][1])
    return sorted(runs, key=lambda run: run[0])[1]


_django_ready = False


def use_database(url: str) -> None:
    """Point this process's Django at `url` (set up on first use)."""
    global _django_ready
    if not _django_ready:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()
        _django_ready = True
    from django.db import connection

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    if connection.settings_dict["NAME"] != name:
        connection.close()
        connection.settings_dict["NAME"] = name


def statement_kind(sql: str) -> str:
    # A capped count reads the matches' keys, unordered (the page is then sorted from them).
    if "COUNT(*)" in sql or ("LIMIT" in sql and "ORDER BY" not in sql):
        return "count"
    # The department and member lists: a loose index scan, or a DISTINCT on SQLite.
    if "WITH RECURSIVE" in sql or ("DISTINCT" in sql and "answering_body_name" in sql):
        return "departments"
    if "LIMIT" in sql:
        return "page"
    return "other"


def explain(url: str, sql: str, planner: dict[str, str]) -> str:
    """EXPLAIN ANALYZE of a statement under the planner settings it ran with; not its time limit, so that a
    statement that was cut short shows its whole plan."""
    import psycopg

    with psycopg.connect(url) as conn:
        for name, value in planner.items():
            if name != "statement_timeout":
                conn.execute(f"SET LOCAL {name} = {value}")
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
    settings = "".join(f"SET LOCAL {name} = {value}; " for name, value in planner.items())
    return settings + "\n" + "\n".join(row[0] for row in rows)


COUNT_CAP = 1000
LOOSE_DEPARTMENTS = """
WITH RECURSIVE d(name) AS (
    SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > ''
    UNION ALL
    SELECT (SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > d.name)
    FROM d WHERE d.name IS NOT NULL
)
SELECT name FROM d WHERE name IS NOT NULL
"""


def alternatives(url: str) -> list[tuple[str, float, float, float]]:
    """For each query: milliseconds of the full COUNT, of a COUNT capped at COUNT_CAP + 1 rows, and of page 1."""
    from django.db import connection

    from questions.models import Question
    from questions.searching import search

    use_database(url)

    def median_ms(sql: str, params) -> float:
        times = []
        with connection.cursor() as cursor:
            for _ in range(3):
                started = time.perf_counter()
                cursor.execute(sql, params)
                cursor.fetchall()
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    found = []
    for kind, query, page in QUERIES:
        if page:
            continue
        queryset = search(query) if query else Question.objects.order_by("-date_tabled", "-id")
        ids, params = queryset.order_by().values("id").query.sql_with_params()
        page_sql, page_params = queryset[:20].query.sql_with_params()
        found.append((kind, median_ms(f"SELECT count(*) FROM ({ids}) s", params),
                      median_ms(f"SELECT count(*) FROM ({ids} LIMIT {COUNT_CAP + 1}) s", params),
                      median_ms(page_sql, page_params)))
    distinct = "SELECT DISTINCT answering_body_name FROM questions_question WHERE answering_body_name <> '' ORDER BY 1"
    found.append(("departments", median_ms(distinct, ()), median_ms(LOOSE_DEPARTMENTS, ()), 0.0))
    return found


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/searchbench",
                        help="PostgreSQL server and base name; size N uses the database <name>_<N>")
    parser.add_argument("--as-named", action="store_true",
                        help="use the database of --database-url under its own name, not <name>_<N> (one size "
                             "only): for a server where you may use one database")
    parser.add_argument("--repeat", type=int, default=15,
                        help="warm requests per query, each straight after the same request")
    parser.add_argument("--cold-repeat", type=int, default=10,
                        help="cold requests per query, each straight after PostgreSQL's buffers were evicted")
    parser.add_argument("--runs", type=int, default=3,
                        help="times the cold and warm requests are made; the table gives the median of each "
                             "run's percentiles")
    parser.add_argument("--from-disk", action="store_true",
                        help="cold requests also follow emptying the operating system's page cache, so that they "
                             f"read from disk (needs write access to {DROP_CACHES}, which only root has)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-file", help="the real questions the archive is made from, JSON lines, gzipped "
                                              "(default: the project's fixture, or $BENCH_QUESTIONS_SAMPLE)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating questions")
    parser.add_argument("--alternatives", action="store_true",
                        help=f"also time other query shapes: a COUNT capped at {COUNT_CAP} and a loose index scan "
                             "for the department list")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of the slowest statement of each query over the goal")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.as_named and len(args.sizes) != 1:
        parser.error("--as-named takes one size")
    if args.from_disk and not os.access(DROP_CACHES, os.W_OK):
        parser.error(f"--from-disk needs write access to {DROP_CACHES} (root)")

    import psycopg

    from bench.corpus import sample_path

    sample = sample_path(args.sample_file)
    print(machine())
    with psycopg.connect(admin_url(args.database_url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")}
    print(f"PostgreSQL {version}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))

    rows, splits, plans, shapes = [], [], [], []
    for n in args.sizes:
        url = database_url(args.database_url, n, args.as_named)
        if is_loaded(url, n, args.seed, sample):
            print(f"{n:,} questions: reusing {url}", flush=True)
            started = time.perf_counter()
            run_manage(url, "migrate", "--no-input")
            print(f"  migrated in {time.perf_counter() - started:.0f} s", flush=True)
        else:
            print(f"{n:,} questions: loading into {url}", flush=True)
            timings = load(url, n, args.seed, args.workers, sample)
            total = sum(timings.values())
            print(f"  loaded in {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
                  + f"), {n / timings['generate+copy']:,.0f} questions/s generated and copied", flush=True)
        heap, indexes = table_size(url)
        print(f"  questions_question: table {heap}, indexes {indexes}", flush=True)
        for prefix, columns_mb, count, indexes_mb in search_sizes(url):
            print(f"  {prefix}<field> columns: {columns_mb:,.0f} MB of values in the table; "
                  f"{count} indexes on them, {indexes_mb:,.0f} MB", flush=True)

        ballast(url)
        server, base = start_server(url)
        load_before = os.getloadavg()
        try:
            measured = [measure(base, url, args.repeat, args.cold_repeat, args.from_disk) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait(timeout=30)
        load_after = os.getloadavg()
        print(f"  load average (1, 5, 15 min) before the timed requests {load_before[0]:.2f} {load_before[1]:.2f} "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
              f"at most {max(left for _, left in measured)} pages of the archive left in shared buffers after an "
              "eviction", flush=True)
        for position, result in enumerate(measured[0][0]):
            runs = [results[position] for results, _ in measured]
            rows.append((n, result["kind"], result["query"], result["matches"],
                         *([percentile(run[temperature], p) for run in runs]
                           for temperature in ("cold", "warm") for p in (50, 95)),
                         sum(run["refused"] for run in runs)))
            total_ms, statements = breakdown(url, result["path"])
            by_kind: dict[str, float] = {}
            for elapsed, sql, _ in statements:
                kind = statement_kind(sql)
                by_kind[kind] = by_kind.get(kind, 0.0) + elapsed
            sql_ms = sum(elapsed for elapsed, _, _ in statements)
            splits.append((n, result["kind"], total_ms, by_kind.get("count", 0.0), by_kind.get("page", 0.0),
                           by_kind.get("departments", 0.0), by_kind.get("other", 0.0), total_ms - sql_ms))
            if args.explain and max(statistics.median(rows[-1][5]), statistics.median(rows[-1][7])) > GOAL_MS \
                    and statements:
                slowest = max(statements, key=lambda item: item[0])
                plans.append((n, result["kind"], slowest[1], explain(url, slowest[1], slowest[2])))
        if args.alternatives:
            shapes.extend((n, *shape) for shape in alternatives(url))

    print()
    print(f"p50 and p95 of each run; with more than one run, their median (lowest–highest) over {args.runs} runs; "
          + ("cold: from disk (PostgreSQL's buffers and the page cache emptied)" if args.from_disk
             else "cold: PostgreSQL's buffers emptied, the page cache left as it was"))
    print(f"{'':>9}  {'':<17} {'':<36} {'':>8} {'cold':>33} {'warm':>33}")
    print(f"{'size':>9}  {'query kind':<17} {'query':<36} {'matches':>8} {'p50 ms':>16} {'p95 ms':>16} "
          f"{'p50 ms':>16} {'p95 ms':>16}")
    for n, kind, query, matches, *figures, refused in rows:
        over = sum(cold > GOAL_MS or warm > GOAL_MS for cold, warm in zip(figures[1], figures[3], strict=True))
        flag = f"  over goal in {over} of {len(figures[1])} runs" if over else ""
        if refused:
            flag += f"  {refused} refused (over the request's budget)"
        print(f"{n:>9,}  {kind:<17} {query:<36} {matches if matches is not None else '-':>8} "
              + " ".join(f"{spread(values):>16}" for values in figures) + flag)
    print()
    print("The median of three in-process requests per query, milliseconds: the whole request, its SQL by "
          "statement, the rest")
    print(f"{'size':>9}  {'query kind':<17} {'request':>8} {'count':>8} {'page':>8} {'depts':>8} {'other':>8} "
          f"{'not SQL':>8}")
    for n, kind, total_ms, count, page, departments, other, rest in splits:
        print(f"{n:>9,}  {kind:<17} {total_ms:>8.0f} {count:>8.0f} {page:>8.0f} {departments:>8.0f} "
              f"{other:>8.0f} {rest:>8.0f}")
    if shapes:
        print()
        print("Other query shapes, SQL alone, median of three, milliseconds (departments: DISTINCT, then a loose "
              "index scan)")
        print(f"{'size':>9}  {'query kind':<17} {'COUNT':>8} {f'COUNT<={COUNT_CAP}':>11} {'page 1':>8}")
        for n, kind, full, capped, first in shapes:
            print(f"{n:>9,}  {kind:<17} {full:>8.0f} {capped:>11.1f} {first:>8.0f}")
    for n, kind, sql, plan in plans:
        print(f"\n--- {n:,} questions, {kind}: {sql}\n{plan}")


if __name__ == "__main__":
    main()
