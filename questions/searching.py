"""Searching the archive: the one place where a query and the page's filters become a queryset."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils.functional import cached_property

from questions.models import CANARY_PREFIX, Question
from questions.records import RecordError
from questions.search import Node, QueryError, parse, to_q

log = logging.getLogger(__name__)

# What the cache raises when it is down: Redis's errors (a socket error included), or the database
# cache's. Page code that meets one works without the cache.
CACHE_ERRORS = (redis.RedisError, DatabaseError, OSError)
DEPARTMENTS_KEY = "questions:departments"


@dataclass(frozen=True)
class Filters:
    house: str = ""
    department: str = ""
    answered: str = ""  # "", "answered" or "unanswered"
    tabled_from: dt.date | None = None
    tabled_to: dt.date | None = None

    def q(self) -> Q:
        q = ~Q(external_id__startswith=CANARY_PREFIX)
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
        return q


def matching(node: Node, filters: Filters = Filters()) -> QuerySet[Question]:
    """The questions a parsed query selects, newest first."""
    return Question.objects.filter(to_q(node), filters.q()).order_by("-date_tabled", "-id")


def search(query: str, filters: Filters = Filters()) -> QuerySet[Question]:
    """The questions a query selects; raises QueryError for a refused query."""
    return matching(parse(query), filters)


# A loose index scan: one index probe per department rather than a DISTINCT over every question.
DEPARTMENTS_SQL = """
WITH RECURSIVE d(name) AS (
  SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > ''
  UNION ALL
  SELECT (SELECT min(answering_body_name) FROM questions_question WHERE answering_body_name > d.name)
  FROM d WHERE d.name IS NOT NULL)
SELECT name FROM d WHERE name IS NOT NULL
"""


def _departments() -> list[str]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(DEPARTMENTS_SQL)
            return [row[0] for row in cursor.fetchall()]
    return list(
        Question.objects.exclude(answering_body_name="")
        .order_by("answering_body_name")
        .values_list("answering_body_name", flat=True)
        .distinct()
    )


def departments() -> list[str]:
    """The departments of the archive, for the filter; a new one shows within ten minutes. With the
    cache down, each page works them out again: slower, never broken."""
    try:
        found = cache.get(DEPARTMENTS_KEY)
    except CACHE_ERRORS as error:
        log.warning("cache unavailable, departments worked out afresh", extra={"error": str(error)})
        return _departments()
    if found is None:
        found = _departments()
        try:
            cache.set(DEPARTMENTS_KEY, found, 600)
        except CACHE_ERRORS as error:
            log.warning("cache unavailable, departments not kept", extra={"error": str(error)})
    return found


class CappedPaginator(Paginator):
    """Counting every match of a common word costs a scan of the archive; past the cap, we say "more than"."""

    cap = 1000

    @cached_property
    def count(self) -> int:
        # Without the ORDER BY, the database can stop at the cap instead of walking the newest-first index.
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap

    def page(self, number) -> Page:
        page = super().page(number)
        # The page's own slice of the queryset is replaced: how best to read it depends on the search.
        page.object_list = newest_first(self.object_list, max(page.start_index() - 1, 0), page.end_index())
        return page


# Newest first, the planner walks the date index and filters as it goes: quick when matches are spread
# over the years, a scan of the whole archive when they all lie in its oldest part. So the walk gets this
# long, and then the matches are collected first and sorted.
PAGE_WALK_MS = 60


def newest_first(rows: QuerySet[Question], start: int, stop: int) -> list[Question]:
    """`rows[start:stop]` of a search, newest first, without letting the date-index walk run away."""
    if connection.vendor != "postgresql":
        return list(rows[start:stop])
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {PAGE_WALK_MS}")
            found = list(rows[start:stop])
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
            return found
    except OperationalError:
        return collect_then_sort(rows, start, stop)


def collect_then_sort(rows: QuerySet[Question], start: int, stop: int) -> list[Question]:
    """`rows[start:stop]` of a search by gathering every match first, then sorting: steady, whatever the
    dates."""
    # Sorted on an expression of the date, which no index holds, the planner cannot walk an index for the
    # order: it finds the matches the cheapest way (the trigram indexes) and sorts those.
    tabled = Coalesce("date_tabled", "date_tabled")
    return list(rows.order_by(tabled.desc(), "-id")[start:stop])


def find_question(key: str) -> Question | None:
    """A question by its id (the API id, or the id it was imported with) or else its UIN."""
    shown = Question.objects.filter(Filters().q())
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
