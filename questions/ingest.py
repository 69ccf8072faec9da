"""Upserting records into the archive, and the events that a change of state means."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from django.db import transaction
from django.utils import timezone

from questions.models import Question, QuestionEvent, Source
from questions.records import QuestionRecord

log = logging.getLogger(__name__)

RECORD_FIELDS = [f.name for f in fields(QuestionRecord) if f.name not in {"external_id", "answer_is_correction"}]
# A later record without a member (the API did not expand it) must not erase a name we already have.
KEEP_IF_MISSING = {
    "asking_member_name", "asking_member_party", "asking_member_constituency", "answering_member_name",
    "answering_member_role", "list_signature", "url",
}
UPDATE_FIELDS = RECORD_FIELDS + list(Question.SEARCH_COLUMNS)
CHUNK = 500


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    events: Counter = field(default_factory=Counter)
    # (id, reason) of each record that was not stored
    refused: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        events = ", ".join(f"{n} {kind}" for kind, n in sorted(self.events.items())) or "no events"
        return f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged; {events}"


# The key of the "answered" event of a holding answer: the substantive answer, when it comes, is news again.
HOLDING_KEY = "answered:holding"


def _answer_key(record: QuestionRecord) -> str:
    return HOLDING_KEY if record.answer_is_holding else "answered"


def _events_for(question: Question, before: dict | None, record: QuestionRecord) -> list[QuestionEvent]:
    def event(kind: str, key: str | None = None) -> QuestionEvent:
        return QuestionEvent(question=question, kind=kind, key=key or kind)

    answered = bool(record.answer_text)
    if before is None:
        found = [event("tabled")]
        if answered:
            found.append(event("answered", _answer_key(record)))
        if record.is_withdrawn:
            found.append(event("withdrawn"))
        return found
    found = []
    if answered and (not before["answer_text"] or (before["answer_is_holding"] and not record.answer_is_holding)):
        found.append(event("answered", _answer_key(record)))
    elif (
        answered
        and before["answer_text"] != record.answer_text
        and (record.answer_is_correction or (record.date_answer_corrected
                                             and record.date_answer_corrected != before["date_answer_corrected"]))
    ):
        digest = hashlib.sha1(record.answer_text.encode()).hexdigest()[:16]
        correction = event("corrected", f"corrected:{digest}")
        # The question is about to hold only the new answer: what it replaces is kept here, to show the change.
        correction.answer_before = before["answer_text"]
        found.append(correction)
    if record.is_withdrawn and not before["is_withdrawn"]:
        found.append(event("withdrawn"))
    return found


def _apply(question: Question, record: QuestionRecord) -> None:
    for name in RECORD_FIELDS:
        value = getattr(record, name)
        if name in KEEP_IF_MISSING and not value:
            continue
        setattr(question, name, value)
    question.refresh_derived()


def _owned_elsewhere(question: Question, source: Source | None) -> bool:
    """Whether `source` must leave this question alone: it came from another source, and not from another
    reader of the same official API (whose ids are the Parliament's own). An import (no source) may
    correct the official record, never a feed's own items."""
    if question.source_id is None or (source is not None and question.source_id == source.pk):
        return False
    if source is None:
        return question.source.kind == Source.Kind.FEED
    return not (source.kind == Source.Kind.PARLIAMENT_API and question.source.kind == Source.Kind.PARLIAMENT_API)


def _borrowing_a_feed_id(external_id: str, source: Source | None) -> bool:
    return external_id.startswith("feed:") and (source is None or source.kind != Source.Kind.FEED)


def upsert(records: Iterable[QuestionRecord], source: Source | None = None, alert: bool = True) -> UpsertResult:
    """Store the records in one transaction: new questions, changed questions, and their events, each once.

    With `alert` false (a backfill of old questions) the events are recorded as already matched, so
    that nobody is emailed about them.
    """
    by_id = {record.external_id: record for record in records}
    result = UpsertResult()
    with transaction.atomic():
        ids = list(by_id)
        existing: dict[str, Question] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            existing.update(
                (q.external_id, q)
                for q in Question.objects.select_for_update(of=("self",)).select_related("source")
                .filter(external_id__in=chunk)
            )
        new, changed, events = [], [], []
        for external_id, record in by_id.items():
            if _borrowing_a_feed_id(external_id, source):
                result.refused.append((external_id, "ids that start with feed: belong to feeds"))
                continue
            question = existing.get(external_id)
            if question is None:
                question = Question(external_id=external_id, source=source)
                _apply(question, record)
                new.append(question)
                events.extend(_events_for(question, None, record))
                continue
            if _owned_elsewhere(question, source):
                result.refused.append((external_id, f"the id belongs to a question from {question.source}"))
                continue
            before = {name: getattr(question, name) for name in UPDATE_FIELDS}
            _apply(question, record)
            if any(getattr(question, name) != value for name, value in before.items()):
                question.updated_at = timezone.now()
                changed.append(question)
                events.extend(_events_for(question, before, record))
            else:
                result.unchanged += 1
        Question.objects.bulk_create(new, batch_size=CHUNK)
        Question.objects.bulk_update(changed, UPDATE_FIELDS + ["updated_at"], batch_size=CHUNK)
        for event in events:
            event.question_id = event.question.pk
            if not alert:
                event.matched_at = timezone.now()
        QuestionEvent.objects.bulk_create(events, batch_size=CHUNK, ignore_conflicts=True)
    result.created, result.updated = len(new), len(changed)
    result.events.update(event.kind for event in events)
    return result
