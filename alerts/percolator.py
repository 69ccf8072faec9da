"""The percolator: every active saved search held in memory, so that a batch of new questions finds its matches.

The index itself, which knows nothing of the database, is `questions.search.percolate`. Here is what keeps
it in step with the saved searches (who receives alerts is `Subscription.objects.receiving()`; follows of one
question are matched by question, in `alerts.matching`), and what matching needs to know of each saved search:
which events it wants, whose it is, and how often it is sent.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import psycopg
from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, QuerySet, Sum

from alerts.models import Subscription
from questions.models import Question, QuestionEvent
from questions.search import DOCUMENT_KEYS, QueryError
from questions.search.percolate import Document, QueryIndex, Rarity, collector_paused, shard_of

log = logging.getLogger(__name__)

_IMMEDIATE = Subscription.Frequency.IMMEDIATE.value
_KIND_BITS = {kind: 1 << index for index, kind in enumerate(QuestionEvent.Kind.values)}


def kind_bit(event_kind: str) -> int:
    return _KIND_BITS[event_kind]


def _wanted_kinds(alert_on: str) -> int:
    """The event kinds a subscription with this `alert_on` wants, as bits: as `Subscription.wants` says."""
    probe = Subscription(alert_on=alert_on)
    return sum(bit for kind, bit in _KIND_BITS.items() if probe.wants(kind))


class Entry(NamedTuple):
    """What matching needs of one active subscription."""

    subscription_id: int
    wants: int  # bits of the event kinds it wants, see `kind_bit`
    subscriber_id: int
    immediate: bool


class SubscriptionRow(NamedTuple):
    id: int
    canonical_query: str
    alert_on: str
    frequency: str
    subscriber_id: int


@dataclass
class RefreshReport:
    loaded: int = 0
    removed: int = 0
    refused: int = 0
    full: bool = False
    checked_ids: bool = False


_ROW_FIELDS = ("id", "canonical_query", "alert_on", "frequency", "subscriber_id")
# Rows saved within this long before the newest one seen are read again: a transaction that saved a
# subscription earlier but committed later is then still seen.
WATERMARK_OVERLAP = dt.timedelta(minutes=15)
RARITY_SAMPLE = 2000
LOAD_CHUNK = 20_000
STREAM_CHUNK = 1000


class Percolator:
    """The active saved searches of one shard (all of them by default) and who subscribed to each.

    `refresh()` brings it up to date with the database: the first time by loading everything, then by
    reading the subscriptions saved since the newest one it has seen, and checking count and id sums of
    the active subscriptions against its own to notice deletions and changes made through the
    subscriber (confirmed, suppressed), which do not touch the subscription rows.
    """

    def __init__(self, shard: int | None = None, shards: int = 1, rarity: Rarity | None = None) -> None:
        if shards < 1 or (shard is not None and not 0 <= shard < shards):
            raise ValueError(f"shard {shard} of {shards} does not exist")
        self.shard = shard
        self.shards = shards
        self.index = QueryIndex(rarity) if rarity is not None else None
        self._hold_nothing()
        self.watermark: dt.datetime | None = None
        self._wants = {alert_on: _wanted_kinds(alert_on) for alert_on in Subscription.AlertOn.values}

    def __len__(self) -> int:
        """The number of distinct saved searches held."""
        return 0 if self.index is None else len(self.index)

    @property
    def subscriptions(self) -> int:
        return len(self._query_of)

    def held(self) -> dict[int, str]:
        """Subscription id -> saved search, for each subscription held."""
        index = self._index()
        return {subscription_id: index.text(query_id) for subscription_id, query_id in self._query_of.items()}

    def owns(self, canonical_query: str) -> bool:
        return self.shard is None or shard_of(canonical_query, self.shards) == self.shard

    def _index(self) -> QueryIndex:
        if self.index is None:
            self.index = QueryIndex(Rarity(recent_documents(RARITY_SAMPLE)))
        return self.index

    # --- changes, without the database ---------------------------------------------------

    def put(self, row: SubscriptionRow) -> bool:
        """Hold `row` as an active subscription, replacing what was held for its id. False when its query
        does not parse (it is then not held)."""
        self.remove(row.id)
        return self._hold([row]) == (1, 0)

    def _hold(self, rows: Iterable[SubscriptionRow | tuple[int, str, str, str, int]]) -> tuple[int, int]:
        """Hold each of `rows`, none of them held yet: (held, refused because the query does not parse)."""
        # This runs once per active saved search when the percolator starts, so the loop keeps to local names.
        index = self._index()
        add = index.add
        query_of, by_query, elsewhere, wants = self._query_of, self._by_query, self._elsewhere, self._wants
        owns = None if self.shard is None else self.owns
        held = refused = count = total = squares = 0
        for subscription_id, text, alert_on, frequency, subscriber_id in rows:
            count += 1
            total += subscription_id
            squares += subscription_id * subscription_id
            if owns is not None and not owns(text):
                elsewhere.add(subscription_id)
                held += 1
                continue
            try:
                query_id = add(text)
            except QueryError as exc:
                log.warning("saved search refused", extra={"subscription": subscription_id, "query": text,
                                                           "reason": exc.message})
                elsewhere.add(subscription_id)
                refused += 1
                continue
            query_of[subscription_id] = query_id
            entry = Entry(subscription_id, wants.get(alert_on, 0), subscriber_id, frequency == _IMMEDIATE)
            subscribers = by_query.get(query_id)
            if subscribers is None:
                by_query[query_id] = {subscription_id: entry}
            else:
                subscribers[subscription_id] = entry
            held += 1
        self._count += count
        self._sum += total
        self._squares += squares
        return held, refused

    def remove(self, subscription_id: int) -> bool:
        """Stop holding a subscription; False when it was not held."""
        query_id = self._query_of.pop(subscription_id, None)
        if query_id is None:
            if subscription_id not in self._elsewhere:
                return False
            self._elsewhere.discard(subscription_id)
        else:
            assert self.index is not None
            subscribers = self._by_query[query_id]
            del subscribers[subscription_id]
            if not subscribers:
                del self._by_query[query_id]
            self.index.discard(self.index.text(query_id))
        self._count -= 1
        self._sum -= subscription_id
        self._squares -= subscription_id * subscription_id
        return True

    def subscribers(self, query_id: int) -> Collection[Entry]:
        return self._by_query.get(query_id, {}).values()

    def match(self, documents: Sequence[Document]) -> dict[int, int]:
        """Query id -> bitmask over `documents` of the questions it matches (see `subscribers`)."""
        return {} if self.index is None else self.index.match_ids(documents)

    # --- the database ------------------------------------------------------------------

    def refresh(self) -> RefreshReport:
        """Catch up with the subscriptions in the database."""
        report = RefreshReport(full=self.watermark is None)
        if self.watermark is None:
            self._load_all(report)
        else:
            self._catch_up(report)
        aggregate = Subscription.objects.receiving().searches().aggregate(
            count=Count("id"), sum=Sum("id"), squares=Sum(F("id") * F("id"))
        )
        if (aggregate["count"], aggregate["sum"] or 0, aggregate["squares"] or 0) != (
            self._count, self._sum, self._squares
        ):
            self._check_ids(report)
        return report

    def _load_all(self, report: RefreshReport) -> None:
        self._index()
        # Taken first: whatever is saved during the load is newer, and is read again by the next refresh.
        newest = Subscription.objects.aggregate(newest=Max("updated_at"))["newest"]
        try:
            with collector_paused():
                self._load(Subscription.objects.receiving().searches().values_list(*_ROW_FIELDS).order_by(),
                           report)
        except BaseException:
            # Half a load is let go: the next refresh loads everything again, and must not hold anything twice.
            self._forget()
            raise
        self.watermark = newest or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

    def _forget(self) -> None:
        assert self.index is not None
        self.index = QueryIndex(self.index.rarity)
        self._hold_nothing()

    def _hold_nothing(self) -> None:
        self._query_of: dict[int, int] = {}  # subscription id -> query id
        self._by_query: dict[int, dict[int, Entry]] = {}  # query id -> subscription id -> entry
        # Active subscriptions not held, kept so that the count and sums cover every active one: those of
        # other shards, and those whose saved search no longer parses (after a change to the language).
        self._elsewhere: set[int] = set()
        self._count = self._sum = self._squares = 0

    def _load(self, rows: QuerySet, report: RefreshReport) -> None:
        """Hold each of `rows`, a `values_list` of `_ROW_FIELDS` of subscriptions not held yet."""
        with streamed(rows) as stream:
            held, refused = self._hold(stream)
        report.loaded += held
        report.refused += refused

    def _catch_up(self, report: RefreshReport) -> None:
        assert self.watermark is not None
        changed = (
            Subscription.objects.searches().filter(updated_at__gt=self.watermark - WATERMARK_OVERLAP)
            .annotate(receiving=Exists(Subscription.objects.receiving().searches().filter(pk=OuterRef("pk"))))
            .values_list(*_ROW_FIELDS, "updated_at", "receiving")
            .order_by()
        )
        for *fields, updated_at, receiving in changed:
            row = SubscriptionRow(*fields)
            if receiving:
                if self._held(row):
                    continue
                if self.put(row):
                    report.loaded += 1
                else:
                    report.refused += 1
            elif self.remove(row.id):
                report.removed += 1
            if updated_at > self.watermark:
                self.watermark = updated_at

    def _held(self, row: SubscriptionRow) -> bool:
        """Whether `row` is held exactly as it is (rows in the overlap are usually unchanged)."""
        query_id = self._query_of.get(row.id)
        if query_id is None or self.index is None:
            return False
        entry = self._by_query[query_id][row.id]
        return (
            self.index.text(query_id) == row.canonical_query
            and entry.wants == self._wants.get(row.alert_on, 0)
            and entry.subscriber_id == row.subscriber_id
            and entry.immediate == (row.frequency == Subscription.Frequency.IMMEDIATE)
        )

    def _check_ids(self, report: RefreshReport) -> None:
        report.checked_ids = True
        with streamed(Subscription.objects.receiving().searches().values_list("id").order_by()) as stream:
            active = {pk for pk, in stream}
        held = self._query_of.keys() | self._elsewhere
        for subscription_id in held - active:
            self.remove(subscription_id)
            report.removed += 1
        added = sorted(active - held)
        for start in range(0, len(added), 5000):
            rows = Subscription.objects.receiving().searches().filter(id__in=added[start : start + 5000])
            self._load(rows.values_list(*_ROW_FIELDS).order_by(), report)


@contextmanager
def streamed(rows: QuerySet) -> Iterator[Iterator[tuple]]:
    """The tuples of a `values_list` as they arrive, a chunk at a time, never all in memory: this reads every
    saved search.

    On PostgreSQL the server streams them, sending the next chunk while this process works through the last;
    a server-side cursor would make it wait for each chunk in turn, about a second in all at a million saved
    searches. Leaving the block ends the stream, read to its end or not, so the connection is free again.
    """
    if connection.vendor != "postgresql" or not psycopg.capabilities.has_stream_chunked():
        yield rows.iterator(chunk_size=LOAD_CHUNK)
        return
    sql, params = rows.query.sql_with_params()
    # Errors come as Django's, as from any query: tasks retry a lost connection on DatabaseError.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        stream = cursor.cursor.stream(sql, params, size=STREAM_CHUNK)
        try:
            yield stream
        finally:
            stream.close()


def recent_documents(limit: int) -> list[dict[str, str]]:
    """The search documents of the newest questions, to estimate how common each word is."""
    # Read as stored: a word's share only picks which of a search's words files it, never whether it matches,
    # so base forms a poller of the release before left stale cost nothing here, and working them out again
    # would add half a second to every build.
    rows = Question.objects.order_by("-id").values_list(*Question.SEARCH_COLUMNS)[:limit]
    return [dict(zip(DOCUMENT_KEYS, row, strict=True)) for row in rows]
