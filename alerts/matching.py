"""Matching new question events against every saved search, each (saved search, event) once.

`match_events` claims a batch of unmatched events with `SELECT ... FOR UPDATE SKIP LOCKED`, runs their
questions through the percolator, writes the `Match` rows and marks the events matched in one transaction:
a second worker skips the locked events and takes the next ones, a crashed or retried run rolls back and
leaves its events for the next, and the unique (subscription, event) constraint makes a repeat a no-op.

With the saved searches split into shards, each shard matches the same events (`match_events(shard=k,
event_ids=...)`, which writes matches but marks nothing) and `mark_matched` marks them once every shard
has succeeded; `alerts.tasks` runs that as a Celery chord.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts import metrics
from alerts.models import FOLLOWED_KINDS, Match, Subscription
from alerts.percolator import Percolator, kind_bit
from questions.models import QuestionEvent
from questions.search.percolate import iter_bits

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
INSERT_CHUNK = 5000

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
    return QuestionEvent.objects.filter(id__in=event_ids, matched_at__isnull=True).update(matched_at=timezone.now())


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
            return match_events(batch_size, shard, shards, event_ids, percolator_for(shard, shards))
    with metrics.MATCH_SECONDS.time():
        result = _match(batch_size, shard, event_ids, percolator)
    metrics.MATCHES.inc(result.matches)
    return result


def _match(batch_size: int, shard: int | None, event_ids: Sequence[int] | None, percolator: Percolator) -> MatchResult:
    with transaction.atomic():
        events = _unmatched().select_related("question")
        if event_ids is not None:
            events = events.filter(id__in=event_ids)
        if shard is None:
            # Shards of one run share their events, so only a whole run holds them.
            events = events.select_for_update(skip_locked=True, of=("self",))
        events = list(events[:batch_size] if event_ids is None else events)
        result = MatchResult(events=len(events), more=event_ids is None and len(events) >= batch_size)
        if not events:
            return result
        # Followers are matched by their question, once per run: by the first shard of a sharded one.
        new = _record_matches(events, percolator, followers=not shard)
        if shard is None:
            QuestionEvent.objects.filter(id__in=[event.id for event in events]).update(matched_at=timezone.now())
    result.matches = len(new)
    result.immediate_subscriber_ids = sorted({subscriber_id for subscriber_id, immediate in new.values()
                                              if immediate})
    log.info("events matched", extra={"events": result.events, "matches": result.matches, "shard": shard})
    return result


def _follower_matches(events: list[QuestionEvent]) -> dict[tuple[int, int], tuple[int, bool]]:
    """The matches of those following the events' questions, who hear of every answer, correction and
    withdrawal of their question, however it is worded."""
    followed = [event for event in events if event.kind in FOLLOWED_KINDS]
    if not followed:
        return {}
    by_question: dict[int, list[QuestionEvent]] = {}
    for event in followed:
        by_question.setdefault(event.question_id, []).append(event)
    followers = (Subscription.objects.receiving().filter(question_id__in=by_question)
                 .values_list("id", "question_id", "subscriber_id", "frequency"))
    return {(subscription_id, event.id): (subscriber_id, frequency == Subscription.Frequency.IMMEDIATE)
            for subscription_id, question_id, subscriber_id, frequency in followers
            for event in by_question[question_id]}


def _record_matches(events: list[QuestionEvent], percolator: Percolator,
                    followers: bool = True) -> dict[tuple[int, int], tuple[int, bool]]:
    """Write the matches of the events; (subscription id, event id) -> (subscriber id, immediate) of new ones."""
    # Each question once, however many of its events are in the batch (tabled and answered often arrive together).
    positions: dict[int, int] = {}
    documents = []
    by_position: list[list[QuestionEvent]] = []
    for event in events:
        if event.kind == QuestionEvent.Kind.WITHDRAWN or event.question.is_canary:
            # Searches are not told that a question was withdrawn (only its followers are): matching it
            # would only find nobody. The canary's questions are for the canary's follow alone.
            continue
        position = positions.get(event.question_id)
        if position is None:
            position = positions[event.question_id] = len(documents)
            documents.append(event.question.search_document())
            by_position.append([])
        by_position[position].append(event)
    found: dict[tuple[int, int], tuple[int, bool]] = {}
    for query_id, mask in percolator.match(documents).items():
        subscribers = percolator.subscribers(query_id)
        for position in iter_bits(mask):
            for event in by_position[position]:
                bit = kind_bit(event.kind)
                for entry in subscribers:
                    if entry.wants & bit:
                        found[(entry.subscription_id, event.id)] = (entry.subscriber_id, entry.immediate)
    if followers:
        found.update(_follower_matches(events))
    if not found:
        return {}
    existing = set(
        Match.objects.filter(event_id__in=[event.id for event in events]).values_list("subscription_id", "event_id")
    )
    new = {key: value for key, value in found.items() if key not in existing}
    rows = [Match(subscription_id=subscription_id, event_id=event_id) for subscription_id, event_id in new]
    Match.objects.bulk_create(rows, batch_size=INSERT_CHUNK, ignore_conflicts=True)
    return new
