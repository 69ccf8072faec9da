"""The delivery queue: every email is a Delivery row, written before the ESP is called, and that row is
the only record of whether and when to try it.

`send_due` is the one sender. It leases a chunk of due rows (`SELECT ... FOR UPDATE SKIP LOCKED`, so
senders in any number of processes never share a row), composes their emails, hands them to the ESP,
and records every outcome of the chunk in one statement: sent; rejected for good (an address the ESP
refuses); or due again after a back-off that doubles, with jitter, up to a cap, until the delivery's
give-up time, when it shows as failed. A sender that dies holds its lease until it runs out; then the
next sender takes the chunk and sends it again, so a crash re-sends at most the chunk in flight and
never loses it. Celery tasks only wake `send_due`: when deliveries are committed, and on beat's schedule.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from alerts import esp, metrics
from alerts.emails import Hit, NothingToSend, compose
from alerts.models import Delivery, Match, Subscriber, Subscription
from questions.ingest import HOLDING_KEY
from questions.models import Question

log = logging.getLogger(__name__)

# Kinds a subscriber asked for just now, which may reach an address that had unsubscribed before.
ON_REQUEST = {Delivery.Kind.CONFIRMATION, Delivery.Kind.MANAGE_LINK}


def kick(count: int = 1) -> None:
    """Wake up to DELIVERY_SENDERS senders for `count` new emails (beat wakes one every few seconds too)."""
    senders = min(settings.DELIVERY_SENDERS, math.ceil(count / settings.DELIVERY_CHUNK_SIZE))
    try:
        for _ in range(senders):
            current_app.tasks["alerts.send_due"].delay()
    except Exception:  # noqa: BLE001 - the rows are committed: beat's next tick sends them
        log.warning("could not wake a sender; beat's schedule will send the emails", exc_info=True)


def queue_delivery(subscriber: Subscriber, kind: str, payload: dict | None = None) -> Delivery:
    delivery = Delivery.objects.create(subscriber=subscriber, kind=kind, payload=payload or {})
    transaction.on_commit(kick)
    return delivery


def resend(delivery_ids: list[int]) -> int:
    """Put deliveries back in the queue, due now, with a fresh give-up window (the operator's Resend)."""
    now = timezone.now()
    # A row a sender holds right now is left to it: taking it back could send it twice.
    count = (Delivery.objects.filter(pk__in=delivery_ids).filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
             .update(status=Delivery.Status.PENDING, attempts=0, error="", next_attempt_at=now, leased_until=None,
                     give_up_at=now + dt.timedelta(hours=settings.DELIVERY_GIVE_UP_HOURS)))
    transaction.on_commit(lambda: kick(count))
    return count


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: doubling up to the cap, each with jitter so
    that the emails of one outage do not all come back at once."""
    delay = min(settings.DELIVERY_BACKOFF_MAX_SECONDS, settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.75, 1.25)


@dataclass
class Lease:
    ids: list[int]
    until: dt.datetime

    def keep(self) -> bool:
        """Renew the lease. False when another sender has taken any of the rows: nothing more of the chunk
        is sent, and what is still held stays leased (not free for the taking) until its outcome is
        recorded or the lease runs out."""
        until = timezone.now() + dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        held = Delivery.objects.filter(pk__in=self.ids, leased_until=self.until).update(leased_until=until)
        self.until = until
        return held == len(self.ids)


def _lock(rows, size: int) -> list[tuple[int, int]]:
    return list(rows.select_for_update(skip_locked=True).values_list("pk", "attempts")[:size])


def claim_due(due_by: dt.datetime, size: int | None = None) -> Lease | None:
    """Lease deliveries due by `due_by` that nobody holds, in one short commit, counting the attempt.

    A row whose lease ran out lost its sender mid-send, and may be what killed it (an email too big to
    compose, say): such rows are taken one at a time, so that one poison email cannot take others down
    with it again and again. Each attempt also sets when the next may start, should this one never
    report back, so a row that keeps killing its sender is tried less and less often, and is given up
    at its give-up time."""
    now = timezone.now()
    due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=due_by).order_by(
        "next_attempt_at", "pk")
    with transaction.atomic():
        while True:
            rows = (_lock(due.filter(leased_until__lt=now), 1)
                    or _lock(due.filter(leased_until__isnull=True), size or settings.DELIVERY_CHUNK_SIZE))
            if not rows:
                return None
            abandoned = Delivery.objects.filter(pk__in=[pk for pk, _ in rows], leased_until__isnull=False,
                                                give_up_at__lt=now)
            if not abandoned.update(status=Delivery.Status.FAILED, leased_until=None,
                                    error=f"gave up after {rows[0][1]} attempts: its sender stopped while sending it"):
                break
        until = now + dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        again = now + dt.timedelta(seconds=backoff(1 + max(attempts for _, attempts in rows)))
        ids = [pk for pk, _ in rows]
        Delivery.objects.filter(pk__in=ids).update(leased_until=until, attempts=F("attempts") + 1,
                                                   next_attempt_at=again)
    return Lease(ids, until)


@dataclass
class SendRun:
    """What one run of the sender has loaded: each question and alert is read once per run, however many
    emails it appears in."""

    questions: dict[int, Question] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)

    def hits(self, delivery_ids: list[int]) -> dict[int, list[Hit]]:
        rows = list(Match.objects.filter(delivery_id__in=delivery_ids)
                    .values_list("delivery_id", "subscription_id", "event__question_id", "event__kind", "event__key"))
        if missing := {row[1] for row in rows} - self.subscriptions.keys():
            self.subscriptions.update(Subscription.objects.only(
                "query", "canonical_query", "label", "subscriber_id", "question_id").in_bulk(missing))
        if missing := {row[2] for row in rows} - self.questions.keys():
            # The normalised text and stored HTML are for searching and pages, not for emails.
            heavy = [*Question.SEARCH_COLUMNS, "answer_html"]
            self.questions.update(Question.objects.defer(*heavy).in_bulk(missing))
        hits: dict[int, list[Hit]] = {pk: [] for pk in delivery_ids}
        for delivery_id, subscription_id, question_id, kind, key in rows:
            kind = "holding" if key == HOLDING_KEY else kind
            hits[delivery_id].append(Hit(self.subscriptions[subscription_id], self.questions[question_id], kind))
        return hits


def _refusal(delivery: Delivery) -> str:
    """Why this delivery must not go out, or "" when it may."""
    subscriber = delivery.subscriber
    if subscriber.suppressed_at is None:
        return ""
    if delivery.kind in ON_REQUEST and subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED:
        return ""
    return f"not sent: the address is suppressed ({subscriber.suppressed_reason})"


RECORDED = ["status", "attempts", "error", "next_attempt_at", "leased_until", "sent_at", "subject",
            "esp_message_id", "esp_status"]


def _record(deliveries: list[Delivery], lease: Lease) -> None:
    """The chunk's outcomes as one statement run for each row (the driver sends them together), and
    only for rows still under this lease. Plain SQL: the ORM's bulk_update builds a CASE per field and
    row, which cost more than composing the emails."""
    fields = [Delivery._meta.get_field(name) for name in RECORDED]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    sql = (f"UPDATE {connection.ops.quote_name(Delivery._meta.db_table)} SET {assignments} "
           f"WHERE id = %s AND leased_until = %s")
    until = connection.ops.adapt_datetimefield_value(lease.until)
    rows = [[f.get_db_prep_save(getattr(d, f.attname), connection) for f in fields] + [d.pk, until]
            for d in deliveries]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _apply(delivery: Delivery, outcome: esp.Outcome, subject: str, now: dt.datetime) -> None:
    delivery.leased_until = None
    delivery.error = outcome.error
    if outcome.status == esp.SENT:
        delivery.status, delivery.sent_at, delivery.subject = Delivery.Status.SENT, now, subject[:300]
        delivery.esp_message_id, delivery.esp_status = outcome.message_id, outcome.esp_status
    elif outcome.status == esp.REJECTED:
        delivery.status = Delivery.Status.REJECTED
    elif outcome.status == esp.RETRY:
        delivery.next_attempt_at = now + dt.timedelta(seconds=backoff(delivery.attempts))
        if delivery.next_attempt_at > delivery.give_up_at:
            delivery.status = Delivery.Status.FAILED
            delivery.error = f"gave up after {delivery.attempts} attempts: {outcome.error}"[:2000]
    else:
        delivery.status = Delivery.Status.FAILED


@dataclass
class Chunk:
    """The leased deliveries of one chunk, composed: what is to go to the ESP, and what is decided already."""

    lease: Lease
    deliveries: list[Delivery]
    composed: list[tuple[Delivery, EmailMessage]]
    outcomes: dict[int, esp.Outcome]
    # Set while the lease is held: the ESP thread sends nothing more once it is cleared.
    held: threading.Event = field(default_factory=threading.Event)


def compose_chunk(lease: Lease, run: SendRun) -> Chunk:
    deliveries = list(Delivery.objects.filter(pk__in=lease.ids).select_related("subscriber").order_by("pk"))
    hits = run.hits(lease.ids)
    chunk = Chunk(lease, deliveries, [], {})
    for delivery in deliveries:
        if refusal := _refusal(delivery):
            chunk.outcomes[delivery.pk] = esp.Outcome(esp.FAILED, error=refusal)
            continue
        try:
            chunk.composed.append((delivery, compose(delivery, hits[delivery.pk])))
        except NothingToSend as exc:
            chunk.outcomes[delivery.pk] = esp.Outcome(esp.FAILED, error=f"not sent: {exc}")
        except Exception as exc:  # noqa: BLE001 - one email that cannot be composed holds no other back
            log.exception("email not composed", extra={"delivery": delivery.pk})
            chunk.outcomes[delivery.pk] = esp.Outcome(esp.RETRY, error=f"{type(exc).__name__}: {exc}"[:2000])
    return chunk


def _at_esp(chunk: Chunk, connection, calls: ThreadPoolExecutor) -> Future:
    """Hand the chunk to the ESP on the sender's ESP thread, with its lease fresh."""
    if chunk.lease.keep():
        chunk.held.set()
    return calls.submit(esp.send, [message for _, message in chunk.composed], connection, chunk.held.is_set)


def _answered(chunk: Chunk, call: Future) -> list[esp.Outcome]:
    """The ESP's answers, renewing the lease while they take their time: a slow ESP must not let another
    sender take the chunk and send it again."""
    while True:
        try:
            return call.result(timeout=settings.DELIVERY_LEASE_SECONDS / 3)
        except TimeoutError:
            if not chunk.lease.keep():
                chunk.held.clear()


def record_chunk(chunk: Chunk, sent: list[esp.Outcome]) -> Counter:
    """Record every outcome of the chunk at once; counts them."""
    outcomes, subjects = dict(chunk.outcomes), {}
    for (delivery, message), outcome in zip(chunk.composed, sent, strict=True):
        outcomes[delivery.pk], subjects[delivery.pk] = outcome, message.subject
    now = timezone.now()
    done = [d for d in chunk.deliveries if outcomes[d.pk].status != esp.TAKEN]
    for delivery in done:
        _apply(delivery, outcomes[delivery.pk], subjects.get(delivery.pk, ""), now)
    _record(done, chunk.lease)
    sent_ids = [d.pk for d in done if d.status == Delivery.Status.SENT]
    if sent_ids:
        Subscription.objects.filter(matches__delivery_id__in=sent_ids).update(last_sent_at=now)
    counts = Counter(esp.RETRY if d.status == Delivery.Status.PENDING else d.status for d in done)
    counts[esp.TAKEN] = len(chunk.deliveries) - len(done)
    for outcome, count in counts.items():
        metrics.EMAILS.labels(outcome).inc(count)
    for delivery in done:
        if delivery.status != Delivery.Status.SENT:
            outcome = esp.RETRY if delivery.status == Delivery.Status.PENDING else delivery.status
            metrics.ESP_ERRORS.labels(outcome, metrics.error_class(delivery.error)).inc()
            log.warning("email not sent", extra={"delivery": delivery.pk, "subscriber": delivery.subscriber_id,
                                                 "status": delivery.status, "attempts": delivery.attempts,
                                                 "error": delivery.error})
    log.info("emails sent", extra={"deliveries": [d.pk for d in chunk.deliveries], "sent": counts[esp.SENT],
                                   "retry": counts[esp.RETRY], "rejected": counts[esp.REJECTED],
                                   "failed": counts[esp.FAILED], "taken": counts[esp.TAKEN]})
    return +counts


def send_due(seconds: float | None = None) -> Counter:
    """Send what is due, chunk by chunk, until nothing due is left or `seconds` have passed.

    Only what was due when the run began: a failure rescheduled meanwhile waits for a later run. While
    one chunk is at the ESP, the next is claimed and composed, so the round trip costs no time."""
    started = timezone.now()
    deadline = time.monotonic() + (seconds if seconds is not None else settings.DELIVERY_RUN_SECONDS)
    run, counts = SendRun(), Counter()
    # One thread talks to the ESP; this one claims, composes and records, and alone uses the database.
    with get_connection() as connection, ThreadPoolExecutor(1, thread_name_prefix="esp") as calls:
        at_esp: tuple[Chunk, Future] | None = None
        while time.monotonic() < deadline and (lease := claim_due(started)):
            chunk = compose_chunk(lease, run)
            if at_esp:
                counts += record_chunk(at_esp[0], _answered(*at_esp))
            at_esp = (chunk, _at_esp(chunk, connection, calls))
        if at_esp:
            counts += record_chunk(at_esp[0], _answered(*at_esp))
    if time.monotonic() >= deadline and Delivery.objects.filter(status=Delivery.Status.PENDING,
                                                                 next_attempt_at__lte=started).exists():
        kick()  # out of time with work left: another run goes on at once rather than at beat's next tick
    return counts


ALERT_FREQUENCY = {
    Delivery.Kind.IMMEDIATE: Subscription.Frequency.IMMEDIATE,
    Delivery.Kind.DAILY: Subscription.Frequency.DAILY,
    Delivery.Kind.WEEKLY: Subscription.Frequency.WEEKLY,
}
# Matches older than this are not sent: a paused alert resumed after a month starts afresh.
MATCH_WINDOW = dt.timedelta(days=8)


def deliverable_matches(kind: str, subscriber_ids: list[int] | None = None):
    """Undelivered matches that an email of this kind may carry: those of alerts that receive."""
    receiving = Subscription.objects.receiving().filter(frequency=ALERT_FREQUENCY[kind])
    if subscriber_ids is not None:
        receiving = receiving.filter(subscriber_id__in=subscriber_ids)
    return Match.objects.filter(delivery__isnull=True, created_at__gte=timezone.now() - MATCH_WINDOW,
                                subscription__in=receiving)


def create_alert_deliveries(kind: str, subscriber_ids: list[int] | None = None) -> list[int]:
    """One pending Delivery per subscriber with undelivered matches (per alert, for an address that asked
    for one email per alert), the matches assigned to it, in one transaction that wakes the senders when
    it commits. Two runs at once never take the same match."""
    separate = Subscriber.Grouping.SEPARATE
    with transaction.atomic():
        rows = list(
            deliverable_matches(kind, subscriber_ids)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "subscription_id", "subscription__subscriber_id",
                         "subscription__subscriber__email_grouping")
        )
        combined = sorted({subscriber_id for _, _, subscriber_id, grouping in rows if grouping != separate})
        apart = sorted({(subscriber_id, subscription_id) for _, subscription_id, subscriber_id, grouping in rows
                        if grouping == separate})
        deliveries = Delivery.objects.bulk_create(
            [Delivery(subscriber_id=pk, kind=kind) for pk in combined]
            + [Delivery(subscriber_id=pk, subscription_id=subscription_id, kind=kind) for pk, subscription_id in apart]
        )
        ids = [delivery.pk for delivery in deliveries]
        new = Delivery.objects.filter(pk__in=ids)
        # One statement for each grouping: each claimed match goes to the new delivery of its subscriber,
        # or of its alert.
        subscriber = Subscription.objects.filter(pk=OuterRef(OuterRef("subscription_id"))).values("subscriber_id")
        Match.objects.filter(pk__in=[row[0] for row in rows if row[3] != separate]).update(delivery=Subquery(
            new.filter(subscription__isnull=True, subscriber_id=Subquery(subscriber[:1])).values("pk")[:1]
        ))
        Match.objects.filter(pk__in=[row[0] for row in rows if row[3] == separate]).update(delivery=Subquery(
            new.filter(subscription_id=OuterRef("subscription_id")).values("pk")[:1]
        ))
        if ids:
            transaction.on_commit(lambda: kick(len(ids)))
    if ids:
        log.info("deliveries created", extra={"kind": kind, "emails": len(ids), "matches": len(rows)})
    return ids


def deliver_immediate(subscriber_ids: list[int] | None = None) -> list[int]:
    return create_alert_deliveries(Delivery.Kind.IMMEDIATE, subscriber_ids)


def deliver_digest(kind: str) -> list[int]:
    return create_alert_deliveries(kind)
