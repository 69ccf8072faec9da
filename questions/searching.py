"""Searching the archive: the one place where a query and the page's filters become a queryset.

A page of results is a count, capped at `CappedPaginator.cap` + 1 ("more than 1,000"), then the page's rows,
newest first. On SQLite both are a plain statement. On PostgreSQL a plain statement can be a scan of the whole
archive (a common word, or matches that all lie in its oldest years), so each is read by the first of these
roads that fits; a road cut off by its time-out falls to the one below it:

    count
      1. the search looks words up in the word indexes (`looks_up_words`), or the planner expects few matches,
         or dense ones (`counts_quickly`)
             -> one capped read of the matches' keys, cut off at COUNT_SCAN_MS  ... cut off: 2.
      2. otherwise -> `count_year_by_year`: the undated, then each year newest first through the
             year-and-trigram indexes, keeping the keys of every year it read whole

    page
      1. the count's one read found no more than the cap -> those keys, sorted here
      2. the count read a dated year whole -> `year_by_year`, reusing those keys
      3. the count found no more than the cap -> `collect_then_sort`: every match through the trigram
             indexes, sorted here
      4. otherwise -> walk the date index newest first, cut off at `walk_ms`  ... cut off: `year_by_year`,
             which reads each year's matches through the indexes (up to YEAR_MATCHES_READ, sorted here) or,
             for a year with more, walks that year's index (cut off: collects and sorts it)

Every road gives the same rows in the same order (tests/test_search_orm.py runs each against the plain
statement); a time-out only chooses which costs less, so a loaded database may take a lower road and answer
the same, a little later. A request's own budget (`questions.budget`) caps every statement whichever road it
is on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

import redis
from django.contrib.postgres.fields.array import ArrayContains
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce, Extract
from django.utils import timezone
from django.utils.functional import cached_property

from questions import budget
from questions.conditions import answered_late, named_day, overdue
from questions.models import PUBLIC, Question
from questions.records import RecordError
from questions.search import Node, QueryError, parse, to_q

log = logging.getLogger(__name__)

class CacheResting(Exception):
    """The cache failed lately in this process, which leaves it alone for a while (see `cache_guard`)."""


# What the cache raises when it is down: Redis's errors (a socket error included), or the database
# cache's, or that it is being left alone. Page code that meets one works without the cache.
CACHE_ERRORS = (redis.RedisError, DatabaseError, OSError, CacheResting)
# How long a process leaves the cache alone after it failed, and the clock that says so (tests move it).
CACHE_REST_SECONDS = 30
cache_clock = time.monotonic
_cache_rests_until = 0.0


@contextmanager
def cache_guard() -> Iterator[None]:
    """Around the search path's use of the cache: a hung Redis costs each call REDIS_TIMEOUT, and a search
    makes several, so after one fails this process raises CacheResting at once, without asking, for
    CACHE_REST_SECONDS; the page then does without the cache as it would with it down."""
    global _cache_rests_until
    if cache_clock() < _cache_rests_until:
        raise CacheResting
    try:
        yield
    except CACHE_ERRORS as error:
        if not isinstance(error, CacheResting):
            _cache_rests_until = cache_clock() + CACHE_REST_SECONDS
            log.warning("cache unavailable, left alone for a while", extra={"seconds": CACHE_REST_SECONDS,
                                                                              "error": str(error)[:200]})
        raise


DEPARTMENTS_KEY = "questions:departments"


@dataclass(frozen=True)
class Filters:
    house: str = ""
    department: str = ""
    answered: str = ""  # "", "answered" or "unanswered"
    tabled_from: dt.date | None = None
    tabled_to: dt.date | None = None
    named_day: bool = False
    timing: str = ""  # "", "overdue" (now) or "late" (answered after the due date); see questions.due
    due_from: dt.date | None = None
    due_to: dt.date | None = None

    def q(self) -> Q:
        q = PUBLIC
        if self.house:
            q &= Q(house=self.house)
        if self.department:
            q &= Q(answering_body_name=self.department)
        if self.answered == "answered":
            q &= ~Q(answer_text="")
        elif self.answered == "unanswered":
            q &= Q(answer_text="")
        if self.tabled_from:
            q &= Q(date_tabled__gte=self.tabled_from)
        if self.tabled_to:
            q &= Q(date_tabled__lte=self.tabled_to)
        if self.named_day:
            q &= named_day()
        if self.timing == "overdue":
            q &= overdue(timezone.localdate())
        elif self.timing == "late":
            q &= answered_late()
        if self.due_from:
            q &= Q(date_due__gte=self.due_from)
        if self.due_to:
            q &= Q(date_due__lte=self.due_to)
        return q


def matching(node: Node, filters: Filters = Filters()) -> QuerySet[Question]:
    """The questions a parsed query selects, newest first."""
    return Question.objects.filter(to_q(node, common_words()), filters.q()).order_by("-date_tabled", "-id")


# A word in more than this share of questions (20,000 of a million) is common: walking the questions newest
# first finds its matches quickly, and the planner may test every question it reads for it, where building a
# question's array of words costs several substring tests (questions.search.sql). Measured in bench/search.py.
COMMON_SHARE = 0.02
COMMON_WORDS_KEY = "questions:common-words"
# The planner's statistics of the word indexes (migration 0019): the 20,000 most frequent words of each, with
# the share of questions that have them.
COMMON_WORDS_SQL = """
SELECT DISTINCT s.word FROM pg_stats, unnest(most_common_elems::text::text[], most_common_elem_freqs) AS s(word, share)
WHERE schemaname = current_schema() AND tablename IN ('question_base_words', 'question_norm_words') AND s.share > %s
"""


def _common_words() -> frozenset[str]:
    with connection.cursor() as cursor:
        cursor.execute(COMMON_WORDS_SQL, [COMMON_SHARE])
        return frozenset(row[0] for row in cursor.fetchall())


def common_words() -> frozenset[str]:
    """The archive's common words, as PostgreSQL last counted them (ANALYZE), kept ten minutes; none elsewhere."""
    return kept(COMMON_WORDS_KEY, _common_words) if connection.vendor == "postgresql" else frozenset()


def search(query: str, filters: Filters = Filters()) -> QuerySet[Question]:
    """The questions a query selects; raises QueryError for a refused query."""
    return matching(parse(query), filters)


# A loose index scan: one index probe per distinct name rather than a DISTINCT over every question (over a
# second at a million). The department's and the asking member's names are indexed (migration 0016 for the
# members').
LOOSE_SCAN_SQL = """
WITH RECURSIVE d(name) AS (
  SELECT min({column}) FROM questions_question WHERE {column} > ''
  UNION ALL
  SELECT (SELECT min({column}) FROM questions_question WHERE {column} > d.name)
  FROM d WHERE d.name IS NOT NULL)
SELECT name FROM d WHERE name IS NOT NULL
"""
MEMBER_NAMES_SQL = LOOSE_SCAN_SQL.format(column="asking_member_name")


def _distinct(column: str) -> list[str]:
    """The distinct non-empty values of a name column of the archive, in order."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(LOOSE_SCAN_SQL.format(column=column))
            return [row[0] for row in cursor.fetchall()]
    return list(Question.objects.exclude(**{column: ""}).order_by(column).values_list(column, flat=True).distinct())


def _departments() -> list[str]:
    return _distinct("answering_body_name")


def member_names() -> list[str]:
    """The names of the members who asked questions, in order."""
    return _distinct("asking_member_name")


T = TypeVar("T")


def kept(key: str, work_out: Callable[[], T], seconds: int = 600) -> T:
    """What `work_out` gives, kept in the cache under `key` for `seconds`. With the cache down, each page works
    it out again: slower, never broken."""
    try:
        with cache_guard():
            found = cache.get(key)
    except CACHE_ERRORS as error:
        log.warning("cache unavailable, worked out afresh", extra={"key": key, "error": str(error)})
        return work_out()
    if found is None:
        found = work_out()
        try:
            with cache_guard():
                cache.set(key, found, seconds)
        except CACHE_ERRORS as error:
            log.warning("cache unavailable, not kept", extra={"key": key, "error": str(error)})
    return found


def departments() -> list[str]:
    """The departments of the archive, for the filter; a new one shows within ten minutes."""
    return kept(DEPARTMENTS_KEY, _departments)


Key = tuple[dt.date | None, int]


class CappedPaginator(Paginator):
    """Counting every match of a common word costs a scan of the archive; past the cap, we say "more than"."""

    cap = 1000
    # What a count made year by year read of each year it read whole: the page need not read it again.
    whole_years: Mapping[int | None, list[Key]] = MappingProxyType({})
    # The keys of every match, when a plain count read them all (no more than the cap).
    all_keys: list[Key] | None = None

    @cached_property
    def count(self) -> int:
        # Without the ORDER BY, the database can stop at the cap instead of walking the newest-first index.
        rows = self.object_list.order_by()
        if connection.vendor != "postgresql":
            return rows[: self.cap + 1].count()
        if looks_up_words(rows) or counts_quickly(rows, self.cap + 1):
            try:
                # The keys rather than a COUNT: reading them costs the same, and with no more than the cap the page
                # is sorted from them instead of reading every match again.
                with planner(statement_timeout=COUNT_SCAN_MS, **read_ahead()):
                    keys = list(rows.values_list("date_tabled", "id")[: self.cap + 1])
            except OperationalError:
                pass
            else:
                if len(keys) <= self.cap:
                    self.all_keys = keys
                return len(keys)
        counted = count_year_by_year(rows, self.cap + 1)
        self.whole_years = counted.whole_years
        return counted.found

    @property
    def capped(self) -> bool:
        return self.count > self.cap

    def page(self, number) -> Page:
        page = super().page(number)
        # The page's own slice of the queryset is replaced: how best to read it depends on the search.
        page.object_list = newest_first(self.object_list, max(page.start_index() - 1, 0), page.end_index(),
                                        self.whole_years, all_counted=not self.capped, all_keys=self.all_keys)
        return page


# Newest first, the planner walks the date index and filters as it goes: quick when matches are spread
# over the years, a scan of the whole archive when they all lie in its oldest part. So the walk gets
# PAGE_WALK_MS, and PAGE_WALK_MS_PER_1000 more for each thousand rows down to the page's end (it reads more
# rows to get further); then the matches are looked for year by year, newest first.
PAGE_WALK_MS = 50
PAGE_WALK_MS_PER_1000 = 40
# Up to this many of a year's matches are read through the year-and-trigram indexes (in no order) and sorted
# here. A year with more has enough of them that walking it newest first finds a page's worth quickly.
YEAR_MATCHES_READ = 1000
# To stop at the cap, the planner often reads the archive in the order it is stored (oldest first, as it came
# in) and tests every question it reads against every pattern: slow when matches are few there, or the search
# has many words. Past this, they are counted year by year, newest first, through the year-and-trigram indexes.
COUNT_SCAN_MS = 60
# That plain count is quick when the matches are few (it reads them all through the trigram indexes) or dense
# (reading in storage order finds the cap within this many rows). In between it reads thousands of rows that
# do not match, or long posting lists whole, and is cut off after COUNT_SCAN_MS: time lost, so such a search is
# counted year by year from the start.
DENSE_SCAN_ROWS = 5000


def walk_ms(stop: int) -> int:
    return PAGE_WALK_MS + PAGE_WALK_MS_PER_1000 * stop // 1000


# Planner settings: only bitmap scans, so that the year-and-trigram indexes pick out a year's matches before
# any row is read, and a LIMIT stops the reading; or only index scans, to walk an index in its order.
BITMAP_SCANS = {"enable_seqscan": "off", "enable_indexscan": "off", "enable_indexonlyscan": "off"}
INDEX_SCANS = {"enable_seqscan": "off", "enable_bitmapscan": "off"}
# How many pages ahead a bitmap scan asks the operating system for: a year not read lately comes from disk,
# and its rows lie scattered over it.
READ_AHEAD_PAGES = 64


def read_ahead() -> dict[str, object]:
    """The setting that lets a bitmap scan read ahead, where PostgreSQL can: without posix_fadvise it cannot,
    and refuses any other value than 0 (which is its default there, and 1 elsewhere)."""
    known = getattr(connection, "search_read_ahead", None)
    if known is None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW effective_io_concurrency")
            known = {} if cursor.fetchone()[0] == "0" else {"effective_io_concurrency": READ_AHEAD_PAGES}
        connection.search_read_ahead = known
    return known


def tabled_year() -> Extract:
    """The year a question was tabled, spelt as the year-and-trigram indexes spell it (migration 0007): a
    `date_tabled__year` lookup becomes a date range, which those indexes cannot serve."""
    return Extract("date_tabled", "year")


@contextmanager
def planner(**settings: object) -> Iterator[None]:
    """A transaction in which PostgreSQL plans with these settings. Inside a bigger transaction, where this is a
    savepoint that SET LOCAL would outlive, they are put back before it ends. Within a request's budget, no
    statement may run past it, whatever time-out it asks for."""
    nested = connection.in_atomic_block
    left = budget.remaining_ms()
    if left is not None:
        settings["statement_timeout"] = min(int(settings.get("statement_timeout", left)), left)
    with transaction.atomic(), connection.cursor() as cursor, budget.own_timeout():
        cursor.execute("; ".join(f"SET LOCAL {name} = {value}" for name, value in settings.items()))
        yield
        if nested:
            cursor.execute("; ".join(f"SET LOCAL {name} TO DEFAULT" for name in settings))


def newest_first(rows: QuerySet[Question], start: int, stop: int,
                 whole_years: Mapping[int | None, list[Key]] | None = None, all_counted: bool = False,
                 all_keys: list[Key] | None = None) -> list[Question]:
    """`rows[start:stop]` of a search, newest first, without letting the date-index walk run away. `whole_years`
    are the keys of every match of some years (None: undated), newest first, as the count read them;
    `all_counted` says the count read every match, finding no more than its cap; `all_keys`, in any order, are
    the keys of every match where the count kept them."""
    if connection.vendor != "postgresql":
        return list(rows[start:stop])
    if all_keys is not None:
        # A rare word's matches were read by the count: reading them again through its trigram indexes would cost
        # as much once more, where sorting their keys costs nothing.
        return questions_of(rows, newest(all_keys)[start:stop])
    if any(year is not None for year in whole_years or ()):
        # The count read a year whole, having found fewer matches there than it was looking for: so few that
        # the walk, which reads every question of such a year on its way down, would be slow.
        return year_by_year(rows, start, stop, whole_years)
    if all_counted:
        # No more matches in the whole archive than the cap, and the count has just read them: sorting them costs
        # little, where the walk could pass thousands of questions between two of them.
        with planner(**BITMAP_SCANS, **read_ahead()):
            return collect_then_sort(rows, start, stop)
    try:
        with planner(statement_timeout=walk_ms(stop)):
            return list(rows[start:stop])
    except OperationalError:
        return year_by_year(rows, start, stop)


def year_by_year(rows: QuerySet[Question], start: int, stop: int,
                 whole_years: Mapping[int | None, list[Key]] | None = None) -> list[Question]:
    """`rows[start:stop]` of a search, gathered a year at a time from the newest down to the one that ends the
    page, each year read through indexes that narrow to it unless `whole_years` has it already."""
    whole_years = whole_years or {}
    # Descending, PostgreSQL puts questions without a date first.
    keys = list(whole_years[None]) if None in whole_years else undated(rows, stop)
    for year in archive_years():
        if len(keys) >= stop:
            break
        keys += whole_years[year] if year in whole_years else newest_of_year(rows, year, stop - len(keys))
    return questions_of(rows, keys[start:stop])


def newest(keys: Iterable[Key]) -> list[Key]:
    """Keys in the search's order: newest first, as PostgreSQL sorts a descending date (questions without one
    first), then the highest id."""
    return sorted(keys, key=lambda key: (key[0] is None, key[0] or dt.date.min, key[1]), reverse=True)


def questions_of(rows: QuerySet[Question], keys: list[Key]) -> list[Question]:
    """The questions of `rows` that `keys` name, in their order."""
    ids = [pk for _, pk in keys]
    found = rows.order_by().in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


# The years that have questions, newest first: one probe of the date index per year, so that a question from a
# source that got its date wrong (year 1, say) adds one year to look through, not two thousand.
ARCHIVE_YEARS_SQL = """
WITH RECURSIVE y(year) AS (
  SELECT EXTRACT(YEAR FROM max(date_tabled))::int FROM questions_question
  UNION ALL
  SELECT (SELECT EXTRACT(YEAR FROM max(date_tabled))::int FROM questions_question
          WHERE date_tabled < make_date(y.year, 1, 1))
  FROM y WHERE y.year IS NOT NULL)
SELECT year FROM y WHERE year IS NOT NULL
"""


def archive_years() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(ARCHIVE_YEARS_SQL)
        return [row[0] for row in cursor.fetchall()]


def undated(rows: QuerySet[Question], count: int) -> list[Key]:
    """The (None, id) of the first `count` of `rows` without a date, as the search lists them."""
    with planner(**INDEX_SCANS):
        return list(rows.filter(date_tabled__isnull=True).order_by("-id").values_list("date_tabled", "id")[:count])


def newest_of_year(rows: QuerySet[Question], year: int, count: int) -> list[Key]:
    """The (date, id) of the newest `count` of `rows` tabled in `year`, newest first."""
    in_year = rows.alias(tabled_year=tabled_year()).filter(tabled_year=year).order_by()
    in_year = in_year.values_list("date_tabled", "id")
    with planner(**BITMAP_SCANS, **read_ahead()):
        found = list(in_year[: YEAR_MATCHES_READ + 1])
    if len(found) <= YEAR_MATCHES_READ:
        return sorted(found, reverse=True)[:count]
    walk = rows.filter(date_tabled__year=year).order_by("-date_tabled", "-id").values_list("date_tabled", "id")
    try:
        with planner(statement_timeout=walk_ms(count), **INDEX_SCANS):
            return list(walk[:count])
    except OperationalError:
        # Plenty of matches in the year, but the walk was slow: few of them near its end, or its rows came
        # from disk.
        with planner(**BITMAP_SCANS, **read_ahead()):
            return collect_then_sort(in_year, 0, count)


def estimated_rows(rows: QuerySet) -> float:
    """How many rows PostgreSQL expects `rows` to give: planned, not run."""
    return json.loads(rows.explain(format="json"))[0]["Plan"]["Plan Rows"]


def counts_quickly(rows: QuerySet[Question], limit: int) -> bool:
    """Whether PostgreSQL expects the matches of `rows` to be few or dense enough for a plain capped count."""
    try:
        # Planning a search of many words has its cost too: past the count's own time, count year by year.
        with planner(statement_timeout=COUNT_SCAN_MS):
            matches = estimated_rows(rows)
            total = estimated_rows(Question.objects.all())
    except OperationalError:
        return False
    return matches <= limit or limit * total <= DENSE_SCAN_ROWS * matches


def looks_up_words(rows: QuerySet[Question]) -> bool:
    """Whether every match has a word the search looks up in the word indexes (questions.search.sql), which it
    does only for words that are not common: their posting lists are short, so one capped read of the matches
    is quick even where the planner, which cannot know how few questions share two names, expects more matches
    than the cap. A word looked up beside others in an OR narrows nothing by itself."""
    def narrows(node) -> bool:
        if isinstance(node, ArrayContains):
            return True
        return (getattr(node, "connector", None) == "AND" and not node.negated
                and any(narrows(child) for child in node.children))

    return narrows(rows.query.where)


class Counted(NamedTuple):
    found: int
    # The (date, id) of every match of each year that had fewer than were still to count (None: undated),
    # newest first.
    whole_years: dict[int | None, list[Key]]


def count_year_by_year(rows: QuerySet[Question], limit: int) -> Counted:
    """How many of `rows` there are, counting no further than `limit`. The keys of the matches are read rather
    than counted: reading them costs the same, and the page may need them."""
    whole: dict[int | None, list[Key]] = {}
    keys = undated(rows, limit)
    if len(keys) < limit:
        whole[None] = keys
    found = len(keys)
    in_year = rows.alias(tabled_year=tabled_year()).order_by().values_list("date_tabled", "id")
    for year in archive_years():
        if found >= limit:
            break
        with planner(**BITMAP_SCANS, **read_ahead()):
            keys = list(in_year.filter(tabled_year=year)[: limit - found])
        if len(keys) < limit - found:
            whole[year] = sorted(keys, reverse=True)
        found += len(keys)
    return Counted(found, whole)


def collect_then_sort(rows: QuerySet, start: int, stop: int) -> list:
    """`rows[start:stop]` of a search by gathering every match first, then sorting: steady, whatever the
    dates."""
    # Sorted on an expression of the date, which no index holds, the planner cannot walk an index for the
    # order: it finds the matches the cheapest way (the trigram indexes) and sorts those.
    tabled = Coalesce("date_tabled", "date_tabled")
    return list(rows.order_by(tabled.desc(), "-id")[start:stop])


def find_question(key: str) -> Question | None:
    """A question by its id (the API id, or the id it was imported with) or else its UIN."""
    shown = Question.objects.public()
    return shown.filter(external_id=key).first() or shown.filter(uin=key).order_by("-date_tabled").first()


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line; a line that is not JSON gives a RecordError."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except ValueError as exc:
                    yield number, RecordError(f"line {number} is not valid JSON: {exc}")


def read_queries(path: Path) -> Iterator[tuple[Any, Node | None, str]]:
    """Each line of a queries file ({"id": ..., "query": ...}): its id, and its parsed query or why it was
    refused. The database and the file-based commands read queries only through this, so they cannot
    differ in what they accept. Each distinct text is parsed once: popular searches repeat."""
    parsed: dict[str, tuple[Node | None, str]] = {}
    for number, item in read_jsonl(path):
        if isinstance(item, RecordError) or not isinstance(item, dict) or not isinstance(item.get("query"), str):
            reason = str(item) if isinstance(item, RecordError) else f'line {number} has no "query" text'
            yield item.get("id") if isinstance(item, dict) else None, None, reason
            continue
        query = item["query"]
        found = parsed.get(query)
        if found is None:
            try:
                found = parsed[query] = parse(query), ""
            except QueryError as exc:
                found = parsed[query] = None, exc.message
        yield item.get("id"), *found


def answer_queries(path: Path, select: Callable[[Node], Iterable[str]]) -> Iterator[dict[str, Any]]:
    """One answer per line of a queries file: its matches (the ids `select` gives for the parsed query,
    sorted), or why it was refused."""
    for query_id, node, error in read_queries(path):
        yield {"id": query_id, "error": error} if node is None else {"id": query_id, "matches": sorted(select(node))}
