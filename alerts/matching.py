"""Matching new question events against every saved search, each (saved search, event) once.

`match_events` claims a batch of unmatched events with `SELECT ... FOR UPDATE SKIP LOCKED`, runs their
questions through the percolator, streams the `Match` rows in (one per alert) as they are found and marks
the events matched in one transaction: a second worker skips the locked events and takes the next ones, and
a crashed or retried run rolls back and leaves its events for the next.

With the saved searches split into shards, each shard matches the same events (`match_events(shard=k,
event_ids=...)`, which writes matches but marks nothing) and `mark_matched` marks them once every shard
has succeeded; `alerts.tasks` runs that as a Celery chord. A shard notes the events it has recorded
(`MatchedShard`) with its matches, so that running it again records nothing twice.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from alerts import metrics
from alerts.models import FOLLOWED_KINDS, FOLLOWERS_ONLY, Match, MatchedShard, Subscription
from alerts.percolator import Percolator, kind_bit
from questions.models import QuestionEvent
from questions.search.percolate import iter_bits

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
INSERT_CHUNK = 5000
# Matches per write of COPY's text: enough to keep PostgreSQL busy, few enough to hold.
COPY_CHUNK = 20_000

# One percolator per shard for the life of the process, refreshed before each run rather than rebuilt.
# Runs in threads of one process take turns with it: it is not safe to change while it matches.
_percolators: dict[tuple[int | None, int], Percolator] = {}
_percolators_lock = threading.RLock()


def match_shards() -> int:
    return max(1, int(getattr(settings, "MATCH_SHARDS", 1)))


def percolator_for(shard: int | None = None, shards: int = 1) -> Percolator:
    """This process's percolator for the shard, brought up to date with the saved searches."""
    key = (shard, shards if shard is not None else 1)
    percolator = _percolators.get(key)
    if percolator is None:
        percolator = _percolators[key] = Percolator(shard, key[1])
    percolator.refresh()
    return percolator


def forget_percolators() -> None:
    """Drop this process's percolators, so the next run loads every saved search afresh."""
    with _percolators_lock:
        _percolators.clear()


@dataclass
class MatchResult:
    events: int = 0
    matches: int = 0
    # Subscribers with new matches on an immediate subscription: the ones to email now.
    immediate_subscriber_ids: list[int] = field(default_factory=list)
    # Whether the batch was full, so more events may be waiting.
    more: bool = False

    def as_dict(self) -> dict:
        return {"events": self.events, "matches": self.matches,
                "immediate_subscriber_ids": self.immediate_subscriber_ids, "more": self.more}


def _unmatched():
    return QuestionEvent.objects.filter(matched_at__isnull=True).order_by("id")


def claim_events(batch_size: int = BATCH_SIZE) -> list[int]:
    """The ids of the oldest unmatched events, for the shards of a sharded run to share."""
    return list(_unmatched().values_list("id", flat=True)[:batch_size])


def mark_matched(event_ids: Sequence[int]) -> int:
    """Mark the events matched; those already marked keep their time."""
    with transaction.atomic():
        MatchedShard.objects.filter(event_id__in=event_ids).delete()
        return QuestionEvent.objects.filter(id__in=event_ids, matched_at__isnull=True).update(
            matched_at=timezone.now())


def finish_shards(keep: int | None = None) -> list[int]:
    """Match here the events a sharded run left half matched (its chord never finished, and runs are no
    longer sharded, or sharded `keep` ways, whose own runs are left to their chords): each shard that has
    not recorded them does, one after another, and they are marked. Matching them anew as a whole would
    record again what the other shards had. The immediate subscribers of what is recorded."""
    # Notes of events marked or deleted since are of no use.
    MatchedShard.objects.exclude(event_id__in=_unmatched().values("id")).delete()
    immediate: set[int] = set()
    for shards in MatchedShard.objects.exclude(shards=keep).order_by().values_list("shards", flat=True).distinct():
        event_ids = sorted(set(MatchedShard.objects.filter(shards=shards).values_list("event_id", flat=True)))
        log.warning("finishing events a sharded run left", extra={"events": len(event_ids), "shards": shards})
        for shard in range(shards):
            # Built for this once, not kept: it is one share of an index this process already holds whole.
            percolator = Percolator(shard, shards)
            percolator.refresh()
            immediate.update(match_events(shard=shard, shards=shards, event_ids=event_ids,
                                          percolator=percolator).immediate_subscriber_ids)
        mark_matched(event_ids)
    return sorted(immediate)


def match_events(
    batch_size: int = BATCH_SIZE,
    shard: int | None = None,
    shards: int = 1,
    event_ids: Sequence[int] | None = None,
    percolator: Percolator | None = None,
) -> MatchResult:
    """Match a batch of unmatched events against the saved searches and record the matches.

    With `shard` None, every saved search is matched and the events are marked matched in the same
    transaction. With `shard` k of `shards`, only that shard's saved searches are matched and the events
    are left unmatched, for `mark_matched` once every shard is done. `event_ids` fixes the events (those
    of them still unmatched); otherwise the oldest `batch_size` unmatched events nobody else holds are
    claimed. A `percolator` given is used as it is; by default this process's one is refreshed and used.
    """
    if percolator is None:
        with _percolators_lock:
            finished = finish_shards() if shard is None and MatchedShard.objects.exists() else []
            result = match_events(batch_size, shard, shards, event_ids, percolator_for(shard, shards))
        result.immediate_subscriber_ids = sorted({*result.immediate_subscriber_ids, *finished})
        return result
    with metrics.MATCH_SECONDS.time():
        result = _match(batch_size, shard, shards, event_ids, percolator)
    metrics.MATCHES.inc(result.matches)
    return result


def _match(batch_size: int, shard: int | None, shards: int, event_ids: Sequence[int] | None,
           percolator: Percolator) -> MatchResult:
    with transaction.atomic():
        events = _unmatched().select_related("question")
        if event_ids is not None:
            events = events.filter(id__in=event_ids)
        if shard is None:
            # Shards of one run share their events, so only a whole run holds them.
            events = events.select_for_update(skip_locked=True, of=("self",))
        else:
            # Events this shard has recorded already, in a run retried or sent out anew.
            events = events.exclude(id__in=MatchedShard.objects.filter(shard=shard, shards=shards)
                                    .values("event_id"))
        events = list(events[:batch_size] if event_ids is None else events)
        result = MatchResult(events=len(events), more=event_ids is None and len(events) >= batch_size)
        if not events:
            return result
        if shard is not None:
            # First: the same shard run twice at once waits here for the other, then fails and is retried.
            MatchedShard.objects.bulk_create(MatchedShard(event_id=event.id, shard=shard, shards=shards)
                                             for event in events)
        # Followers are matched by their question, once per run: by the first shard of a sharded one.
        recorded = record_matches(events, percolator, followers=not shard)
        if shard is None:
            QuestionEvent.objects.filter(id__in=[event.id for event in events]).update(matched_at=timezone.now())
    result.matches = recorded.matches
    result.immediate_subscriber_ids = sorted(recorded.immediate_subscriber_ids)
    log.info("events matched", extra={"events": result.events, "matches": result.matches, "shard": shard})
    return result


class Events(NamedTuple):
    """Event ids, ascending, each once: what one alert matched in a run, and what many alerts share."""

    ids: list[int]
    # As COPY writes them (see _copy_matches): made once for every alert that shares them.
    text: str

    @classmethod
    def of(cls, ids: Iterable[int]) -> Events:
        ordered = sorted(set(ids))
        return cls(ordered, f"[{','.join(map(str, ordered))}]\t{len(ordered)}\t{ordered[0]}")


# (subscription id, subscriber id, whether the alert is immediate, the events it matched) of one alert's
# matches in a run.
Found = tuple[int, int, bool, Events]


def _follower_matches(events: list[QuestionEvent]) -> Iterator[Found]:
    """The matches of those following the events' questions, who hear of every answer, correction and
    withdrawal of their question, however it is worded, and of its due date passing unanswered."""
    by_question: dict[int, list[int]] = {}
    today = timezone.localdate()
    for event in events:
        if event.kind == QuestionEvent.Kind.OVERDUE and not event.question.is_overdue(today):
            # Answered in full or withdrawn since the event was made (that news is on its way instead), or its
            # due date moved later (a date for answer came): "overdue" would not be true.
            continue
        if event.kind in FOLLOWED_KINDS:
            by_question.setdefault(event.question_id, []).append(event.id)
    if not by_question:
        return
    followers = (Subscription.objects.receiving().filter(question_id__in=by_question)
                 .values_list("id", "question_id", "subscriber_id", "frequency"))
    of_question = {question_id: Events.of(ids) for question_id, ids in by_question.items()}
    for subscription_id, question_id, subscriber_id, frequency in followers:
        yield subscription_id, subscriber_id, frequency == Subscription.Frequency.IMMEDIATE, of_question[question_id]


def _search_matches(events: list[QuestionEvent], percolator: Percolator) -> Iterator[Found]:
    """The matches of the saved searches, one alert at a time, as the percolator finds them."""
    # Each question once, however many of its events are in the batch (tabled and answered often arrive together).
    positions: dict[int, int] = {}
    documents = []
    by_position: list[list[tuple[int, int]]] = []
    today = timezone.localdate()
    for event in events:
        if event.kind in FOLLOWERS_ONLY or event.question.is_canary:
            # Searches are not told that a question was withdrawn (only its followers are): matching it would
            # only find nobody. The canary's questions are for the canary's follow alone.
            continue
        if event.kind == QuestionEvent.Kind.OVERDUE and not event.question.is_overdue(today):
            # As for followers: answered or withdrawn since, or due later now, "overdue" would not be true.
            continue
        position = positions.get(event.question_id)
        if position is None:
            position = positions[event.question_id] = len(documents)
            # Its due field as it is today, as the search page reads it today.
            documents.append(event.question.search_document(today))
            by_position.append([])
        by_position[position].append((event.id, kind_bit(event.kind)))
    for query_id, mask in percolator.match(documents).items():
        matched = [pair for position in iter_bits(mask) for pair in by_position[position]]
        # The alerts of one query differ only in the kinds of event they want: each kind's events once.
        wanted: dict[int, Events | None] = {}
        for entry in percolator.subscribers(query_id):
            if entry.wants not in wanted:
                ids = [event_id for event_id, bit in matched if entry.wants & bit]
                wanted[entry.wants] = Events.of(ids) if ids else None
            if (events_of := wanted[entry.wants]) is not None:
                yield entry.subscription_id, entry.subscriber_id, entry.immediate, events_of


@dataclass
class Recorded:
    matches: int = 0
    immediate_subscriber_ids: set[int] = field(default_factory=set)


def record_matches(events: list[QuestionEvent], percolator: Percolator, followers: bool = True) -> Recorded:
    """Find the events' matches and write them, a row per alert, as they are found: however many, only a
    chunk of them is ever held at once."""
    # Read before the writing starts: a connection busy with COPY takes no other statement.
    following = list(_follower_matches(events)) if followers else []
    found = _noted(itertools.chain(_search_matches(events, percolator), following), recorded := Recorded())
    if connection.vendor == "postgresql":
        _copy_matches(found)
    else:
        _insert_matches(found)
    return recorded


def _noted(found: Iterable[Found], recorded: Recorded) -> Iterator[Found]:
    """The alerts' matches, counted as they go by, with those to email now."""
    immediate = recorded.immediate_subscriber_ids
    for alert in found:
        recorded.matches += len(alert[3].ids)
        if alert[2]:
            immediate.add(alert[1])
        yield alert


COLUMNS = "subscription_id, events, size, first_event, created_at"


def _copy_matches(found: Iterator[Found]) -> None:
    """Stream the matches into the table with COPY, a chunk of its text at a time."""
    table = connection.ops.quote_name(Match._meta.db_table)
    stamp = timezone.now().isoformat()
    with connection.cursor() as cursor, connection.wrap_database_errors, \
            cursor.cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
        chunk: list[str] = []
        held = 0
        for subscription_id, _, _, events_of in found:
            chunk.append(f"{subscription_id}\t{events_of.text}\t{stamp}\n")
            held += len(events_of.ids)
            if held >= COPY_CHUNK:
                copy.write("".join(chunk))
                chunk, held = [], 0
        copy.write("".join(chunk))


def _insert_matches(found: Iterator[Found]) -> None:
    """The same with INSERTs, a chunk at a time, for SQLite (one writer at a time, and small)."""
    now = timezone.now()
    while batch := list(itertools.islice(found, INSERT_CHUNK)):
        Match.objects.bulk_create([Match.of(subscription_id, events_of.ids, created_at=now)
                                   for subscription_id, _, _, events_of in batch])
