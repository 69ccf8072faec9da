"""Polling sources: fetch, store what arrived, and keep the source's health for the operator."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from questions import metrics
from questions.ingest import UpsertResult, upsert
from questions.models import Backfill, Source, SourceProblem
from questions.sources import NAME_LENGTH, Batch, feed, parliament
from questions.sources.http import FetchError, PoliteClient

log = logging.getLogger(__name__)
LOCK_SECONDS = 5 * 60
LOCK_NAMESPACE = 7301

# What the HTTP library's exceptions mean, in the words an operator reads on the source's page; the exception
# itself goes to the log. The first whose key is in the exception's name says it.
FAILURES = [("Timeout", "the server did not answer in time"),
            ("SSLError", "the secure connection failed (a certificate or TLS problem)"),
            ("ConnectionError", "the server could not be reached"),
            ("ChunkedEncodingError", "the response broke off part-way"),
            ("ContentDecodingError", "the response could not be decoded"),
            ("InvalidURL", "the address is not one that can be fetched"),
            ("InvalidSchema", "the address is not one that can be fetched"),
            ("MissingSchema", "the address is not one that can be fetched")]
EXCEPTION = re.compile(r"\b(?P<name>[A-Z][A-Za-z0-9]*(?:Error|Timeout|Exception|Exceeded|URL|Schema)): ")
ENDING = re.compile(r"( \(gave up after \d+ attempts\)|, and no time is left in this poll to try again)$")


@dataclass
class PollReport:
    source: str
    landed: UpsertResult | None = None
    # Problems recorded on the source (one per cause), and the items they left out.
    problems: int = 0
    items_skipped: int = 0
    error: str = ""
    warning: str = ""
    skipped: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.source}: skipped ({self.skipped})"
        parts = [f"{self.source}: {self.landed or 'nothing new'}"]
        if self.items_skipped:
            parts.append(f"{self.items_skipped} item(s) skipped")
        if self.problems:
            parts.append(f"{self.problems} problem(s), see the source's problems")
        if self.error:
            parts.append(f"error: {self.error}")
        if self.warning:
            parts.append(f"warning: {self.warning}")
        return "; ".join(parts)


def _fetch(source: Source, client: PoliteClient) -> Batch:
    if source.kind == Source.Kind.PARLIAMENT_API:
        return parliament.fetch(source, client, timezone.localdate())
    return feed.fetch(source, client)


@contextmanager
def exclusive(source: Source) -> Iterator[bool]:
    """One poll of a source at a time, so two workers never insert the same new question.

    On PostgreSQL an advisory lock, which the server drops with the connection of a worker that dies;
    elsewhere (one worker on SQLite) a cache entry that expires.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, source.pk])
            acquired = cursor.fetchone()[0]
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, source.pk])
        return
    key = f"poll-source-{source.pk}"
    acquired = cache.add(key, "1", LOCK_SECONDS)
    try:
        yield acquired
    finally:
        if acquired:
            cache.delete(key)


def poll_source(source: Source, client: PoliteClient | None = None) -> PollReport:
    with exclusive(source) as acquired:
        if not acquired:
            metrics.POLLS.labels(source.name, "skipped").inc()
            return PollReport(source.name, skipped="a poll of this source is already running")
        return _poll(source, client or PoliteClient())


def plainly(error: str) -> str:
    """A fetch's error as a sentence: "<url>: the server could not be reached (gave up after 4 attempts)",
    not the exception's name and its repr of a connection pool."""
    found = EXCEPTION.search(error)
    if not found:
        return error
    said = next((words for key, words in FAILURES if key in found["name"]), None)
    if said is None:
        return error  # not one of the request's failures: its words are the best there are
    ending = ENDING.search(error)
    return error[:found.start()] + said + (ending.group(1) if ending else "")


def _poll(source: Source, client: PoliteClient) -> PollReport:
    now = timezone.now()
    report = PollReport(source.name)
    try:
        batch = _fetch(source, client)
    except FetchError as exc:
        batch = Batch(error=str(exc))
    # The report (the command's output, the log) keeps the technical detail; the source's page, a sentence.
    error = plainly(batch.error)
    backfill = source.last_success_at is None
    if batch.records:
        # A source's first successful poll brings its backlog (a week of the API, all of a feed):
        # that is a backfill, and alerts nobody; from then on what is new is news.
        report.landed = upsert(batch.records, source, alert=not backfill)
        for record_id, reason in report.landed.refused:
            batch.problem(record_id, reason, cause=f"refused: {reason}")
    report.problems, report.items_skipped = len(batch.problems), batch.items_skipped
    report.error, report.warning = batch.error, batch.warning
    for cause, problem in batch.problems.items():
        if problem.others:
            # The page names a few; every item a cause hit is in the log, so that none is lost from sight.
            log.warning("items with one cause", extra={"source": source.name, "cause": cause[:200],
                                                       "items": problem.items,
                                                       "ids": [problem.record_id[:NAME_LENGTH], *problem.others]})
    with transaction.atomic():
        # A feed that stays malformed the same way is said once, not on every poll.
        said = source.problems.filter(message__startswith=batch.warning_kind or batch.warning)
        if batch.warning and not said.exists():
            SourceProblem.objects.create(source=source, message=batch.warning)
        SourceProblem.objects.bulk_create(
            SourceProblem(source=source, record_id=problem.record_id[:500], message=problem.text)
            for problem in batch.problems.values()
        )
        if batch.error:
            SourceProblem.objects.create(source=source, message=error)
        elif backfill:
            Backfill.objects.update_or_create(source=source, defaults={
                "polled_at": now, "questions": report.landed.created if report.landed else 0})
        source.last_polled_at = now
        if batch.error:
            source.last_error, source.last_error_at = error, now
            source.consecutive_failures += 1
        else:
            source.last_success_at = now
            source.consecutive_failures = 0
        if batch.cursor:
            source.cursor = batch.cursor
        if batch.etag or batch.last_modified:
            source.etag, source.last_modified = batch.etag, batch.last_modified
        # Only what the poller owns: an operator may have changed the rest while it ran.
        source.save(update_fields=["last_polled_at", "last_error", "last_error_at", "consecutive_failures",
                                   "last_success_at", "cursor", "etag", "last_modified"])
    landed = report.landed or UpsertResult()
    _count(source, batch.error, landed, report.items_skipped)
    log.info("source polled", extra={
        "source": source.name, "source_id": source.pk, "requests": batch.requests, "new": landed.created,
        "updated": landed.updated, "events": sum(landed.events.values()), "problems": report.problems,
        "items_skipped": report.items_skipped, "error": report.error, "warning": report.warning,
    })
    return report


def _count(source: Source, error: str, landed: UpsertResult, skipped: int) -> None:
    metrics.POLLS.labels(source.name, "error" if error else "ok").inc()
    metrics.QUESTIONS_STORED.labels(source.name, "new").inc(landed.created)
    metrics.QUESTIONS_STORED.labels(source.name, "updated").inc(landed.updated)
    for kind, count in landed.events.items():
        metrics.EVENTS_STORED.labels(kind).inc(count)
    metrics.ITEMS_REFUSED.labels(source.name).inc(skipped)


def sources_to_poll(name: str | None = None, only_due: bool = False) -> list[Source]:
    """The enabled sources (those due, if asked), or the one of that name, enabled or not."""
    sources = Source.objects.filter(name=name) if name else Source.objects.filter(enabled=True)
    return [source for source in sources if not only_due or source.is_due()]


def poll_safely(source: Source) -> PollReport:
    """Poll one source; whatever goes wrong is recorded on it, never raised to stop another's poll."""
    try:
        return poll_source(source)
    except Exception as exc:  # noqa: BLE001 - one broken source must not stop the others
        log.exception("source poll crashed", extra={"source": source.name, "source_id": source.pk})
        metrics.POLLS.labels(source.name, "crashed").inc()
        # The exception is in the log line above; the source's page says what it means.
        if isinstance(exc, SoftTimeLimitExceeded):
            message = ("The poll was stopped by its time limit: the source kept it waiting too long. The next poll "
                       "tries again.")
        else:
            message = ("The poll stopped on an unexpected error in this application, not the source's; the log "
                       "has its details (\"source poll crashed\"). The next poll tries again.")
        now = timezone.now()
        Source.objects.filter(pk=source.pk).update(last_polled_at=now, last_error=message, last_error_at=now,
                                                   consecutive_failures=F("consecutive_failures") + 1)
        SourceProblem.objects.create(source=source, message=message)
        return PollReport(source.name, error=message)


def poll_sources(name: str | None = None, only_due: bool = False) -> list[PollReport]:
    return [poll_safely(source) for source in sources_to_poll(name, only_due)]
