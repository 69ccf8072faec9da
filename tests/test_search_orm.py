"""The search page's database filter selects exactly what the evaluator selects, and a search gathered year by
year lists the same rows newest first as the search itself (PostgreSQL in CI)."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from unittest.mock import patch

import pytest
from django.db import OperationalError, connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questions import searching
from questions.models import Question
from questions.search import QueryError, compile_matcher, document, parse, to_q
from tests.search.strategies import queries, records

pytestmark = pytest.mark.django_db

# Model columns of each field of the language, and their lengths where they are limited.
COLUMNS = {
    "heading": ("heading", None), "question": ("question_text", None), "answer": ("answer_text", None),
    "member": ("asking_member_name", 200), "party": ("asking_member_party", 200),
    "constituency": ("asking_member_constituency", 200), "department": ("answering_body_name", 200),
    "minister": ("answering_member_name", 200), "house": ("house", 20), "uin": ("uin", 50),
}


def fitted(record: dict) -> dict:
    return {field: (value or "")[: COLUMNS[field][1]] for field, value in record.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batch=st.lists(records(), min_size=1, max_size=8), texts=st.lists(queries(), min_size=1, max_size=6))
def test_the_orm_filter_and_the_evaluator_select_the_same_questions(batch, texts):
    Question.objects.all().delete()
    stored = []
    for number, record in enumerate(map(fitted, batch)):
        question = Question(external_id=f"p{number}", **{COLUMNS[f][0]: v for f, v in record.items()})
        question.refresh_search_text()
        stored.append((question, document(record)))
    Question.objects.bulk_create([q for q, _ in stored])
    for text in texts:
        try:
            node = parse(text)
        except QueryError:
            continue
        matcher = compile_matcher(node)
        expected = {q.external_id for q, doc in stored if matcher(doc)}
        assert set(Question.objects.filter(to_q(node)).values_list("external_id", flat=True)) == expected, text


# Days in five years, two in some of them, so that years hold several days and days several questions.
DAYS = [dt.date(2018, 3, 1), dt.date(2019, 6, 5), dt.date(2019, 11, 20), dt.date(2021, 1, 4), dt.date(2021, 1, 5),
        dt.date(2022, 12, 30)]


def running_out(walks_finish: bool):
    """`planner`, as if the page's walk ran out of time, and the walks within a year too unless `walks_finish`."""
    real = searching.planner
    first = [True]

    @contextmanager
    def planner(**settings):
        if "statement_timeout" in settings and (first[0] or not walks_finish):
            first[0] = False
            raise OperationalError("canceling statement due to statement timeout")
        with real(**settings):
            yield

    return planner


@pytest.mark.postgres
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(questions=st.lists(st.tuples(st.none() | st.sampled_from(DAYS), st.sampled_from(["alpha", "beta", "alpha beta",
                                                                                         "beta alpha", "gamma"])),
                          min_size=1, max_size=30),
       query=st.sampled_from(["alpha", "beta", "alpha OR beta", "alpha -beta", '"alpha beta"']), cap=st.integers(1, 6),
       walks_finish=st.booleans(), start=st.integers(0, 30), length=st.integers(1, 12), limit=st.integers(1, 31))
def test_a_search_gathered_year_by_year_gives_the_rows_of_the_search_newest_first(questions, query, cap, walks_finish,
                                                                                   start, length, limit):
    Question.objects.all().delete()
    stored = [Question(external_id=f"y{number}", question_text=text, date_tabled=day)
              for number, (day, text) in enumerate(questions)]
    for question in stored:
        question.refresh_search_text()
    Question.objects.bulk_create(stored)
    rows = searching.matching(parse(query))
    expected = list(rows[start:start + length].values_list("pk", flat=True))

    counted = searching.count_year_by_year(rows, limit)
    assert counted.found == min(rows.count(), limit)
    for year, keys in counted.whole_years.items():
        in_year = rows.filter(date_tabled__year=year) if year else rows.filter(date_tabled=None)
        assert keys == list(in_year.values_list("date_tabled", "pk"))

    with patch.object(searching, "YEAR_MATCHES_READ", cap), patch.object(searching, "planner",
                                                                          running_out(walks_finish)):
        assert [q.pk for q in searching.newest_first(rows, start, start + length)] == expected
        # The years the count read whole are not read again, and the page is the same.
        assert [q.pk for q in searching.newest_first(rows, start, start + length, counted.whole_years)] == expected
        # Nor is any match when the count read them all: the page is their keys, in whatever order they came, sorted.
        every = list(rows.order_by("?").values_list("date_tabled", "pk"))
        assert [q.pk for q in searching.newest_first(rows, start, start + length, all_keys=every)] == expected


@pytest.mark.postgres
def test_a_year_of_a_search_is_picked_out_by_the_year_and_trigram_indexes():
    # The year must be spelt as the indexes spell it, or PostgreSQL reads every row of the archive instead.
    rows = searching.matching(parse("alpha OR member:lewis")).alias(tabled_year=searching.tabled_year())
    sql, params = rows.filter(tabled_year=2020).order_by().values_list("id").query.sql_with_params()

    with searching.planner(**searching.BITMAP_SCANS), connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert re.search(r"Bitmap Index Scan on question_(norm|base)_\w+_year_trgm\s.*\n\s*Index Cond: "
                     r"\(EXTRACT\(year FROM date_tabled\) = '2020'::numeric", plan), plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.postgres
def test_bitmap_scans_read_ahead_only_where_postgresql_can():
    def asked_afresh() -> dict:
        connection.search_read_ahead = None
        return searching.read_ahead()

    try:
        assert asked_afresh() == {"effective_io_concurrency": searching.READ_AHEAD_PAGES}
        with connection.cursor() as cursor:
            # As on a platform without posix_fadvise, where 0 is the only value PostgreSQL takes.
            cursor.execute("SET LOCAL effective_io_concurrency = 0")
        assert asked_afresh() == {}
    finally:
        connection.search_read_ahead = None


def trigram_indexes() -> dict[str, bool]:
    """Each trigram index of the questions, and whether it is valid."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname LIKE 'question_norm_%%trgm'")
        return dict(cursor.fetchall())


def insert_question(conn, uin: str) -> None:
    """The INSERT the ORM makes, on a psycopg connection of the test's own, of the columns the table has at
    the migration under test (later migrations add others)."""
    from django.db.models.sql import InsertQuery

    columns = {name for name, in conn.execute("SELECT column_name FROM information_schema.columns "
                                              "WHERE table_name = 'questions_question'")}
    query = InsertQuery(Question)
    query.insert_values([f for f in Question._meta.concrete_fields if not f.primary_key and f.column in columns],
                        [Question(external_id=f"live-{uin}", uin=uin)])
    sql, params = query.get_compiler(using="default").as_sql()[0]
    conn.execute(sql, params)


BUILD_WAITING = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                 "wait_event_type = 'Lock' AND query LIKE '%%INDEX%%question_norm_%%'")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_year_indexes_are_built_while_questions_go_on_being_written():
    import threading

    import psycopg
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    from tests.conftest import database_url_for_tests, wait_until

    before, after = [("questions", "0006_pruned_problems")], [("questions", "0007_year_trigram_indexes")]
    url = database_url_for_tests()

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert trigram_indexes() and not any(name.endswith("_year_trgm") for name in trigram_indexes())
    with connection.cursor() as cursor:
        # What a build stopped half way leaves: an index marked invalid, which must not be taken as built.
        cursor.execute("CREATE INDEX question_norm_heading_year_trgm ON questions_question "
                       "USING gin ((EXTRACT(YEAR FROM date_tabled)), norm_heading gin_trgm_ops)")
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
                       "'question_norm_heading_year_trgm'::regclass")
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            MigrationExecutor(connections["default"]).migrate(after)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's own thread
            failed.append(exc)
        finally:
            connections.close_all()

    builder = threading.Thread(target=migrate)
    try:
        with psycopg.connect(url) as writing, psycopg.connect(url, autocommit=True) as poller:
            # A question being written when the migration starts: a build that locks writers out queues
            # behind it, and every write after it then queues too.
            insert_question(writing, "1")
            builder.start()
            with psycopg.connect(url, autocommit=True) as watching:
                wait_until(lambda: watching.execute(BUILD_WAITING).fetchone()[0], timeout=30,
                           message="the build waiting")
            poller.execute("SET lock_timeout = '3s'")
            insert_question(poller, "2")
            writing.commit()
            builder.join(timeout=60)
        assert not builder.is_alive() and not failed, failed
        built = trigram_indexes()
        assert all(built.values()), built
        assert {name for name in built if name.endswith("_year_trgm")} == {
            f"question_norm_{field}_year_trgm" for field in COLUMNS}
        assert not {name for name in built if not name.endswith("_year_trgm")}
        assert Question.objects.filter(uin__in=["1", "2"]).count() == 2
    finally:
        # Never migrate back under a build still running.
        if builder.ident is not None:
            builder.join(timeout=120)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.postgres
def test_a_question_dated_far_back_by_a_broken_source_adds_one_year_to_look_through_not_two_thousand():
    from django.test.utils import CaptureQueriesContext

    dates = [dt.date(1, 1, 1), dt.date(2024, 5, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)]
    stored = [Question(external_id=f"far{number}", question_text="alpha", date_tabled=day)
              for number, day in enumerate(dates)]
    for question in stored:
        question.refresh_search_text()
    Question.objects.bulk_create(stored)
    rows = searching.matching(parse("alpha"))

    assert searching.archive_years() == [2025, 2024, 1]
    with CaptureQueriesContext(connection) as queries:
        counted = searching.count_year_by_year(rows.order_by(), 10)
        page = searching.year_by_year(rows, 0, 10)

    assert counted.found == 4 and set(counted.whole_years) == {None, 2025, 2024, 1}
    assert [q.date_tabled for q in page] == sorted(dates, reverse=True)
    # A handful of statements for each of the three years (with the savepoints of the test's transaction); the
    # 2,025 years from 1 to 2025 would take thousands.
    assert len(queries.captured_queries) < 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_year_index_build_stops_with_the_migrate_that_was_stopped_and_the_next_one_builds_it():
    import os
    import subprocess
    import sys

    import psycopg
    from django.db.migrations.executor import MigrationExecutor

    from tests.conftest import ROOT, database_url_for_tests, wait_until

    url = database_url_for_tests()
    MigrationExecutor(connection).migrate([("questions", "0006_pruned_problems")])
    try:
        with psycopg.connect(url) as writing, psycopg.connect(url, autocommit=True) as watching:
            # A write in progress holds the build back, as a long one would on a busy archive.
            insert_question(writing, "1")
            migrate = subprocess.Popen(
                [sys.executable, "manage.py", "migrate", "questions", "0007_year_trigram_indexes"],
                cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: watching.execute(BUILD_WAITING).fetchone()[0], timeout=60,
                           message="the build waiting")
            finally:
                migrate.kill()
                migrate.wait()
            # The build stops with it, before the write ends, rather than going on with no one to report to.
            wait_until(lambda: not watching.execute(BUILD_WAITING).fetchone()[0], timeout=10,
                       message="the build stopping")
            assert trigram_indexes()["question_norm_heading_year_trgm"] is False
            writing.rollback()
        executor = MigrationExecutor(connection)
        executor.migrate([("questions", "0007_year_trigram_indexes")])
        built = trigram_indexes()
        assert {name for name in built if name.endswith("_year_trgm")} == {
            f"question_norm_{field}_year_trgm" for field in COLUMNS}
        assert all(built.values()), built
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
