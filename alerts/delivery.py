"""The delivery queue: every email is a Delivery row, written before the ESP is called, and that row is
the only record of whether and when to try it.

Each email is rendered when its row is made (subject, text, HTML, headers stored on the row), so every try
sends the same bytes and an email that cannot be made fails at once, alone.

`send_due` is the one sender. It leases a chunk of due rows (`SELECT ... FOR UPDATE SKIP LOCKED`, so
senders in any number of processes never share a row), hands their stored emails to the ESP's transport,
and records every outcome of the chunk in one statement: sent; rejected for good (an address the ESP
refuses); or due again. An email the ESP failed on its own backs off alone, doubling with jitter up to a
cap, until its give-up time, when it shows as failed. An ESP that fails as a whole (down, refusing
connections, overloaded) is waited for by every sender together: one probe at a time, and once it
answers everything waiting goes at once. A sender that dies holds its lease until it runs out; then the
next sender takes the chunk and sends it again, so a crash re-sends at most the chunk in flight and never
loses it; a stopping worker claims nothing more, and an outcome the ESP accepted is recorded through a
passing database error. Celery tasks only wake `send_due`: when deliveries are committed, and on beat's
schedule.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import multiprocessing
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from celery import current_app
from django.conf import settings
from django.core import signing
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from alerts import emails, esp, metrics
from alerts.emails import Hit, NothingToSend, compose
from alerts.models import Delivery, DigestRun, EspState, Match, ResendToken, Subscriber, Subscription
from questions.ingest import HOLDING_KEY
from questions.models import Question, QuestionEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

# The emails that carry matches; the others (confirmations, links) carry what their payload says.
# An alert email's kind is its alert's frequency (Delivery.Kind holds each of them).
ALERT_KINDS = frozenset(Subscription.Frequency.values)
# Kinds a subscriber asked for just now, which may reach an address that had unsubscribed before.
ON_REQUEST = {Delivery.Kind.CONFIRMATION, Delivery.Kind.MANAGE_LINK}


def kick(count: int = 1) -> None:
    """Wake up to DELIVERY_SENDERS senders for `count` new emails (beat wakes one every few seconds too)."""
    for _ in range(min(settings.DELIVERY_SENDERS, math.ceil(count / settings.DELIVERY_CHUNK_SIZE))):
        if not _queue("alerts.send_due"):
            break


def _queue(task: str) -> bool:
    """Queue a task by name (its module imports this one); False when the broker would not take it."""
    try:
        current_app.tasks[task].delay()
        return True
    except Exception:  # noqa: BLE001 - what is committed waits for beat's next tick instead
        log.warning("could not queue a task; beat's schedule will run it", extra={"task": task}, exc_info=True)
        return False


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: doubling up to the cap, each with jitter so
    that the emails of one outage do not all come back at once."""
    delay = min(settings.DELIVERY_BACKOFF_MAX_SECONDS, settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.75, 1.25)


@dataclass
class Lease:
    ids: list[int]
    until: dt.datetime
    tried: list[dt.datetime] = field(default_factory=list)

    def keep(self) -> bool:
        """Renew the lease. False when another sender has taken any of the rows: nothing more of the chunk
        is sent, and what is still held stays leased (not free for the taking) until its outcome is
        recorded or the lease runs out."""
        until = timezone.now() + dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        # Asked again after a database error, the rows may hold the time the lost answer had set.
        held = Delivery.objects.filter(pk__in=self.ids, leased_until__in=[self.until, *self.tried]).update(
            leased_until=until)
        self.tried.append(until)
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


def _refusal(delivery: Delivery) -> str:
    """Why this delivery must not go out, or "" when it may."""
    subscriber = delivery.subscriber
    if subscriber.suppressed_at is None:
        return ""
    if delivery.kind in ON_REQUEST and subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED:
        return ""
    return f"not sent: the address is suppressed ({subscriber.suppressed_reason})"


RECORDED = ["status", "attempts", "error", "next_attempt_at", "leased_until", "sent_at", "esp_message_id",
            "esp_status"]


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


# Set when the worker begins a warm shutdown (SIGTERM): a sender then claims nothing more and finishes
# what it holds. Made before the pool's processes are forked, so the flag the parent sets is theirs too.
_STOPPING = multiprocessing.RawValue("b", 0)


def stop_claiming() -> None:
    _STOPPING.value = 1


def stopping() -> bool:
    return bool(_STOPPING.value)


def _until_done(work: Callable[[], T], what: str) -> T:
    """Run `work`, again through a passing database error (a restart, a dropped connection), for up to half
    a lease. For what must be written once the ESP has taken emails: retry the record, never the send."""
    deadline = time.monotonic() + settings.DELIVERY_LEASE_SECONDS / 2
    for attempt in itertools.count():
        try:
            return work()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            log.warning("database error while recording emails; trying again", extra={"what": what},
                        exc_info=True)
            connection.close()
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
    raise AssertionError("unreachable")


# --- Making emails: rendered once, when their row is made -------------------------------------------------


@dataclass
class Renderer:
    """What one run of making emails has loaded: each question and alert is read once, however many emails
    carry it."""

    questions: dict[int, Question] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    # (question, event key) of each correction -> (its event's id, the answer it replaced)
    corrections: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)

    def load(self, rows: list[tuple[int, int, str, str]]) -> None:
        """Read what rows of (subscription, question, event kind, event key) name and is not loaded yet."""
        # Tested one by one: a set less the keys of a large dict would copy every key each time.
        if missing := {row[0] for row in rows if row[0] not in self.subscriptions}:
            self.subscriptions.update(Subscription.objects.only(
                "query", "canonical_query", "label", "subscriber_id", "question_id").in_bulk(missing))
        if missing := {row[1] for row in rows if row[1] not in self.questions}:
            # The normalised text and stored HTML are for searching and pages, not for emails.
            heavy = [*Question.SEARCH_COLUMNS, "answer_html"]
            self.questions.update(Question.objects.defer(*heavy).in_bulk(missing))
        corrected = QuestionEvent.Kind.CORRECTED
        if missing := {(question_id, key) for _, question_id, kind, key in rows
                       if kind == corrected and (question_id, key) not in self.corrections}:
            found = QuestionEvent.objects.filter(question_id__in={q for q, _ in missing}, kind=corrected,
                                                 key__in={key for _, key in missing})
            self.corrections.update(((q, key), (pk, before)) for pk, q, key, before in found.values_list(
                "pk", "question_id", "key", "answer_before"))

    def hits(self, rows: list[tuple[int, int, str, str]]) -> list[Hit]:
        self.load(rows)
        # A question corrected twice before its email is shown changed from the answer before the first.
        first: dict[int, tuple[int, str]] = {}
        for _, question_id, _, key in rows:
            if found := self.corrections.get((question_id, key)):
                first[question_id] = min(found, first.get(question_id, found))
        return [Hit(self.subscriptions[subscription_id], self.questions[question_id],
                    "holding" if key == HOLDING_KEY else kind,
                    first[question_id][1] if kind == QuestionEvent.Kind.CORRECTED and question_id in first else "")
                for subscription_id, question_id, kind, key in rows]

    def render(self, delivery: Delivery, hits: list[Hit]) -> None:
        """Store the delivery's email on it; one that cannot be made fails at once, alone and loudly."""
        try:
            emails.store(delivery, compose(delivery, hits))
            return
        except NothingToSend as exc:
            error = f"not sent: {exc}"
        except Exception as exc:  # noqa: BLE001 - one email that cannot be made holds no other back
            log.exception("email not rendered", extra={"kind": delivery.kind, "subscriber": delivery.subscriber_id,
                                                       "delivery": delivery.pk})
            error = f"not rendered: {type(exc).__name__}: {exc}"[:2000]
        delivery.status, delivery.error, delivery.rendered_at = Delivery.Status.FAILED, error, timezone.now()
        metrics.EMAILS.labels(esp.FAILED).inc()


def queue_delivery(subscriber: Subscriber, kind: str, payload: dict | None = None) -> Delivery:
    delivery = Delivery(subscriber=subscriber, kind=kind, payload=payload or {})
    Renderer().render(delivery, [])
    delivery.save()
    transaction.on_commit(kick)
    return delivery


def render_again(deliveries: list[Delivery]) -> None:
    """Make the stored emails of existing rows anew (the operator's Resend, rows made before emails were
    stored), from the matches they carry; saved."""
    renderer = Renderer()
    # An alert paused since the email was made is left out of it, as the manage page promises.
    matches = list(Match.objects.filter(delivery__in=deliveries, subscription__paused=False).values_list(
        "delivery_id", "subscription_id", "events"))
    carried: dict[int, list] = {}
    for (delivery_id, _, _), rows in zip(matches, carried_rows(m[1:] for m in matches), strict=True):
        carried.setdefault(delivery_id, []).extend(rows)
    for delivery in deliveries:
        hits = renderer.hits(carried.get(delivery.pk, []))
        if delivery.kind in ALERT_KINDS:
            delivery.payload = {**delivery.payload, "matches": len(hits)}
        renderer.render(delivery, hits)
    Delivery.objects.bulk_update(deliveries, [*STORED, "status", "error", "payload"])


STORED = ["subject", "from_email", "to_email", "headers", "body_text", "body_html", "rendered_at"]


def resend(delivery_ids: list[int]) -> int:
    """Put deliveries not sent back in the queue, due now, with a fresh give-up window and their email made
    again (the operator's Resend, typically after fixing what made it fail). One sent is left as it is: see
    `send_again`."""
    now = timezone.now()
    with transaction.atomic():
        # A row a sender holds, or held (it may still be recording it), is left to the senders: taking it back
        # could send it twice. A link email a change of address made void stays void.
        rows = list(Delivery.objects.select_for_update().select_related("subscriber").filter(pk__in=delivery_ids)
                    .exclude(status=Delivery.Status.SENT).exclude(error=Delivery.SUPERSEDED)
                    .filter(leased_until__isnull=True))
        for delivery in rows:
            delivery.status, delivery.attempts, delivery.error = Delivery.Status.PENDING, 0, ""
            delivery.next_attempt_at, delivery.leased_until = now, None
            delivery.give_up_at = now + dt.timedelta(hours=settings.DELIVERY_GIVE_UP_HOURS)
        render_again(rows)
        Delivery.objects.bulk_update(rows, ["attempts", "next_attempt_at", "leased_until", "give_up_at"])
    transaction.on_commit(lambda: kick(len(rows)))
    return len(rows)


def send_again(delivery_ids: list[int]) -> int:
    """Queue a copy of each sent email, the same stored email to the same address (the operator's Resend of
    an email that never arrived). The first row keeps when it was sent and what it carried; the copy names it
    in its payload (`resend_of`) and carries no match, so sending it changes no alert's time of last email."""
    with transaction.atomic():
        # One sent before emails were stored, or whose text retention has blanked, has nothing to send again.
        # Nor one to an address its subscriber has left: that inbox is no longer theirs.
        sent = [d for d in Delivery.objects.select_related("subscriber").filter(
                    pk__in=delivery_ids, status=Delivery.Status.SENT, rendered_at__isnull=False).exclude(body_text="")
                if d.to_email.lower() == d.subscriber.email.lower()]
        copies = [Delivery(subscriber_id=d.subscriber_id, subscription_id=d.subscription_id, kind=d.kind,
                           payload={**d.payload, "resend_of": d.pk} | ({"matches": 0} if d.kind in ALERT_KINDS else {}),
                           **{name: getattr(d, name) for name in STORED})
                  for d in sent]
        Delivery.objects.bulk_create(copies)
    transaction.on_commit(lambda: kick(len(copies)))
    return len(copies)


RESEND_SALT = "alerts.admin.resend"


def resend_token(sent_ids: list[int], other_ids: list[int]) -> str:
    """What a Resend confirmation page carries: the emails it showed as sent, the others selected with them, and
    a mark of its own, so that the page resends exactly those, once."""
    return signing.dumps({"sent": sorted(sent_ids), "others": sorted(other_ids), "once": secrets.token_urlsafe(16)},
                         salt=RESEND_SALT, compress=True)


class ResendRefused(Exception):
    """A confirmation that resends nothing: `reason` is "used", "expired" or "invalid"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Resent:
    made_again: int  # not sent: queued to be made and tried again
    sent_again: int  # sent: queued again as new emails
    left: int


def resend_confirmed(token: str) -> Resent:
    """The operator's confirmed Resend: exactly the emails the confirmation page named, whatever else is posted
    with it, and only once per page. A token used before, altered, or older than ResendToken.MAX_AGE raises
    ResendRefused and queues nothing."""
    try:
        named = signing.loads(token, salt=RESEND_SALT, max_age=ResendToken.MAX_AGE)
    except signing.SignatureExpired:
        raise ResendRefused("expired") from None
    except signing.BadSignature:
        raise ResendRefused("invalid") from None
    with transaction.atomic():
        # Taken in the same transaction as what it queues: a second submit racing the first waits on the unique
        # mark, then finds it taken; a first that fails leaves the page usable.
        try:
            ResendToken.objects.create(once=named["once"])
        except IntegrityError:
            raise ResendRefused("used") from None
        # One shown as not sent but sent since is left: resend leaves sent rows, and it is not on the page's list
        # of emails to send again.
        made_again, sent_again = resend(named["others"]), send_again(named["sent"])
    return Resent(made_again, sent_again, len(named["sent"]) + len(named["others"]) - made_again - sent_again)


def send_now(delivery_ids: list[int]) -> int:
    """Make these pending emails due now, their attempts kept, and wake the senders: the operator's way to
    clear a backlog after an outage rather than wait for each email's next try. A row a sender holds, or
    held, is left to the senders."""
    now = timezone.now()
    # Not one whose lease merely ran out: its sender may still be recording it, and another would send it again.
    brought = Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.PENDING,
                                      leased_until__isnull=True).update(next_attempt_at=now)
    transaction.on_commit(lambda: kick(brought))
    return brought


def deliverable_matches(frequency: str, before: dt.datetime | None = None, subscriber_ids: list[int] | None = None):
    """Undelivered matches that an email of this frequency may carry: those of alerts that receive (of these
    subscribers), found since the alert was last resumed (a pause drops what came before it), and before
    `before`. For a chunk of subscribers, their alerts are read first, so that the matches are reached
    through their index whatever the planner believes of the tables' sizes."""
    alerts = Subscription.objects.receiving().filter(frequency=frequency)
    if subscriber_ids:
        # The range as well as the list: a plain range scan of the index, which a list alone may not get.
        alerts = list(alerts.filter(subscriber_id__in=subscriber_ids, subscriber_id__gte=min(subscriber_ids),
                                    subscriber_id__lte=max(subscriber_ids)).values_list("pk", flat=True))
    elif subscriber_ids is not None:
        alerts = []
    matches = Match.objects.filter(Match.SENDABLE, delivery__isnull=True, subscription__in=alerts)
    return matches if before is None else matches.filter(created_at__lt=before)


def _events(ids: set[int], *fields: str) -> dict[int, tuple]:
    """These question events' fields by id, a bounded list of ids at a time; those deleted since are not there."""
    ordered = sorted(ids)
    return {pk: rest for start in range(0, len(ordered), 5_000) for pk, *rest in
            QuestionEvent.objects.filter(pk__in=ordered[start:start + 5_000]).values_list("pk", *fields)}


def carried_rows(matches: Iterable[tuple[int, list[int]]]) -> list[list[tuple[int, int, str, str]]]:
    """For each (alert, event ids) match, its rows of (alert, question, event kind, event key). An event
    deleted since it was matched (with its question) is left out, of the email and of its count."""
    matches = list(matches)
    events = _events({event_id for _, event_ids in matches for event_id in event_ids}, "question_id", "kind", "key")
    return [[(alert, *events[event_id]) for event_id in event_ids if event_id in events]
            for alert, event_ids in matches]


def _assign(matches: list[tuple[int, int]]) -> None:
    """Point each match, by its id, at its delivery: one statement for the whole chunk, whatever the
    statistics say."""
    if not matches:
        return
    table = connection.ops.quote_name(Match._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Arrays, not parameters per match: the driver would scan a statement of thousands of
            # placeholders for each chunk.
            cursor.execute(f"UPDATE {table} SET delivery_id = v.delivery "
                           f"FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, delivery) WHERE {table}.id = v.id",
                           [list(column) for column in zip(*matches, strict=True)])
            return
        # Unnamed VALUES columns are column1, column2...; batches stay under SQLite's limit on parameters.
        for start in range(0, len(matches), 5_000):
            batch = matches[start:start + 5_000]
            values = ", ".join(["(%s, %s)"] * len(batch))
            cursor.execute(f"UPDATE {table} SET delivery_id = v.column2 FROM (VALUES {values}) AS v "
                           f"WHERE {table}.id = v.column1", [n for match in batch for n in match])


def _insert(deliveries: list[Delivery]) -> None:
    """Insert new deliveries, setting their ids. On PostgreSQL with COPY, their ids taken from the sequence
    first: the emails' text is most of what a digest writes, and quoting it into an INSERT statement cost
    three times the rest of making the email."""
    if connection.vendor != "postgresql" or not deliveries:
        Delivery.objects.bulk_create(deliveries)
        return
    table = Delivery._meta.db_table
    fields = Delivery._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                       [table, len(deliveries)])
        for delivery, (pk,) in zip(deliveries, cursor.fetchall(), strict=True):
            delivery.pk = pk
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with cursor.cursor.copy(f"COPY {connection.ops.quote_name(table)} ({columns}) FROM STDIN") as copy:
            for delivery in deliveries:
                copy.write_row([json.dumps(getattr(delivery, f.attname)) if isinstance(f, models.JSONField)
                                else f.get_db_prep_save(f.pre_save(delivery, add=True), connection) for f in fields])
    for delivery in deliveries:
        delivery._state.adding, delivery._state.db = False, connection.alias


def make_deliveries(kind: str, matches, renderer: Renderer, run: DigestRun | None = None) -> list[int]:
    """One delivery per subscriber among `matches` (per alert, for an address that asked for one email per
    alert), rendered, with its matches assigned, in one transaction that wakes the senders when it
    commits. Two makers at once never take the same match."""
    separate = Subscriber.Grouping.SEPARATE
    with transaction.atomic():
        _through_indexes()
        rows = list(matches.select_for_update(skip_locked=True, of=("self",)).order_by().values_list(
            "pk", "subscription_id", "subscription__subscriber_id", "subscription__subscriber__email_grouping",
            "events"))
        carried = carried_rows(row[1:2] + row[4:] for row in rows)
        if gone := [row[0] for row, events in zip(rows, carried, strict=True) if not events]:
            # Every event of theirs was deleted (with its question): nothing left to tell.
            Match.objects.filter(pk__in=gone).delete()
            log.info("matches of deleted questions dropped", extra={"kind": kind, "matches": len(gone)})
        groups: dict[tuple[int, int | None], list[tuple]] = {}
        for row, events in zip(rows, carried, strict=True):
            if events:
                groups.setdefault((row[2], row[1] if row[3] == separate else None), []).append((row, events))
        subscribers = Subscriber.objects.in_bulk({subscriber_id for subscriber_id, _ in groups})
        renderer.load([event for events in carried for event in events])
        deliveries = []
        for (subscriber_id, subscription_id), group in sorted(groups.items(), key=lambda item: (item[0][0],
                                                                                                  item[0][1] or 0)):
            delivery = Delivery(subscriber=subscribers[subscriber_id], subscription_id=subscription_id, kind=kind,
                                run=run, payload={"matches": sum(len(events) for _, events in group)})
            renderer.render(delivery, renderer.hits([event for _, events in group for event in events]))
            deliveries.append((delivery, group))
        _insert([delivery for delivery, _ in deliveries])
        _assign([(row[0], delivery.pk) for delivery, group in deliveries for row, _ in group])
        ids = [delivery.pk for delivery, _ in deliveries]
        if run:
            # In the chunk's own transaction: a chunk whose worker died is never counted as made.
            DigestRun.objects.filter(pk=run.pk).update(chunks_open=Greatest(F("chunks_open") - 1, 0),
                                                       emails=F("emails") + len(ids))
        if ids:
            transaction.on_commit(lambda: kick(len(ids)))
    if ids:
        log.info("deliveries created", extra={"kind": kind, "emails": len(ids),
                                              "matches": sum(len(events) for events in carried)})
    return ids


# How many subscribers' emails are made in one transaction.
MAKE_CHUNK = 500


def deliver_immediate(subscriber_ids: list[int] | None = None) -> list[int]:
    """Emails for the undelivered matches of immediate alerts (of these subscribers, or of everyone)."""
    kind, renderer, ids, last = Delivery.Kind.IMMEDIATE, Renderer(), [], 0
    fresh_statistics()
    waiting = deliverable_matches(kind, subscriber_ids=subscriber_ids)
    while batch := list(waiting.filter(subscription__subscriber_id__gt=last).order_by("subscription__subscriber_id")
                        .values_list("subscription__subscriber_id", flat=True).distinct()[:MAKE_CHUNK]):
        ids += make_deliveries(kind, deliverable_matches(kind, subscriber_ids=batch), renderer)
        last = batch[-1]
    return ids


def _through_indexes() -> None:
    """For the rest of the transaction, read through indexes only. A digest run's chunk is a few hundred
    subscribers, a sender's a hundred emails; with statistics taken while the tables were small (after
    launch, after a purge) the planner would rather scan and sort every row for each chunk, and a large run
    would grow as its square."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                           "SET LOCAL enable_sort = off")


# The tables a chunk of emails is read from and written to.
PLANNED_TABLES = (Match, Subscription, Subscriber, Delivery)


def fresh_statistics() -> list[str]:
    """Analyse each table the planner believes ten times smaller than it is; returns their names. After
    launch or a purge a table's statistics can say it is empty long after it has filled again (until
    autovacuum catches up, or never where it is off), and a table believed empty is read through whichever
    of its indexes comes first: one chunk of a large digest then took 48 s instead of 10 ms."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        # Only tables ANALYZE may touch (their owner's, or a superuser's): for others it only warns.
        cursor.execute("SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
                       "WHERE c.relname = ANY(%s) AND s.n_live_tup > 10 * greatest(c.reltuples, 1000) "
                       "AND (pg_has_role(c.relowner, 'USAGE') "
                       "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))",
                       [[model._meta.db_table for model in PLANNED_TABLES]])
        stale = [name for (name,) in cursor.fetchall()]
    for name in stale:
        log.info("analysing a table whose statistics are out of date", extra={"table": name})
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # Behind a long VACUUM or a migration, emails are made with the old statistics, not held up.
                cursor.execute("SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '60s'")
                cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
        except DatabaseError:
            log.warning("could not analyse a table", extra={"table": name}, exc_info=True)
    return stale


def _next_subscribers(run: DigestRun) -> list[int]:
    """Take the next chunk of the run's subscribers, in one short commit, so that workers making one run
    at once share it out and never make one subscriber's email twice."""
    with transaction.atomic():
        _through_indexes()
        made_up_to = DigestRun.objects.select_for_update().values_list("made_up_to", flat=True).get(pk=run.pk)
        # The next alerts of the frequency in the order of their index, read as far as needed and no
        # further, whatever the planner believes of the tables: one chunk's work does not grow with the run.
        # The last subscriber read may have more alerts after the limit: left whole for the next chunk.
        owners = list(Subscription.objects.filter(frequency=run.frequency, subscriber_id__gt=made_up_to)
                      .order_by("subscriber_id").values_list("subscriber_id", flat=True)[:MAKE_CHUNK])
        if len(owners) == MAKE_CHUNK and owners[0] != owners[-1]:
            owners = [owner for owner in owners if owner != owners[-1]]
        batch = sorted(set(owners))
        if batch:
            lease = dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS * 5)
            DigestRun.objects.filter(pk=run.pk).update(made_up_to=batch[-1], chunks_open=F("chunks_open") + 1,
                                                       building_until=timezone.now() + lease)
    return batch


def _make_chunk(run: DigestRun, batch: list[int], renderer: Renderer) -> None:
    """One chunk of a run, tried again through a passing database error. One that keeps failing is given up,
    loudly, so that it holds up neither its run nor the runs after it: its matches wait for the next run."""
    for attempt in range(3):
        try:
            make_deliveries(run.frequency, deliverable_matches(run.frequency, before=run.period_end,
                                                               subscriber_ids=batch), renderer, run)
            return
        except DatabaseError:
            log.warning("digest chunk failed; trying again", extra={"run": run.pk, "first": batch[0]}, exc_info=True)
            if not connection.in_atomic_block:
                connection.close()  # a connection the error broke is opened afresh
            if attempt < 2:
                time.sleep(1 + attempt)
    log.error("digest chunk given up; its matches wait for the next run",
              extra={"run": run.pk, "frequency": run.frequency, "subscribers": len(batch), "first": batch[0]})
    DigestRun.objects.filter(pk=run.pk).update(chunks_open=Greatest(F("chunks_open") - 1, 0))


def build_run(run: DigestRun, seconds: float | None = None) -> bool:
    """Make emails of a digest run, a chunk of subscribers at a time, for up to `seconds` (or until all are
    made); True once the run has no chunk left to take. Any number of workers may make one run at once.

    A worker that dies mid-chunk loses nothing: its chunk's transaction is undone and stays counted as
    open, so the run is not marked made; once its lease runs out, beat's tick has it walked again from the
    start, where what was made has nothing left to make."""
    deadline = None if seconds is None else time.monotonic() + seconds
    renderer = Renderer()
    fresh_statistics()
    while deadline is None or time.monotonic() < deadline:
        if not (batch := _next_subscribers(run)):
            break
        _make_chunk(run, batch, renderer)
    else:
        return False
    if DigestRun.objects.filter(pk=run.pk, built_at__isnull=True, chunks_open=0).update(
            built_at=timezone.now(), building_until=None):
        run.refresh_from_db()
        log.info("digest run made", extra={"frequency": run.frequency, "period_end": run.period_end.isoformat(),
                                           "emails": run.emails})
    return True


# --- Sending: stored emails to the ESP, chunk by chunk ---------------------------------------------------------


def _gate(name: str) -> tuple[int, bool]:
    """How many emails this sender may claim now, and whether that is the one probe of an ESP that is down:
    while it is down, senders hold back together and one at a time tries a single email."""
    state = EspState.objects.filter(esp=name).first()
    if state is None or state.down_since is None:
        return settings.DELIVERY_CHUNK_SIZE, False
    now = timezone.now()
    took = EspState.objects.filter(pk=state.pk, down_since__isnull=False, next_probe_at__lte=now).filter(
        Q(probe_until__isnull=True) | Q(probe_until__lt=now)).update(
        probe_until=now + dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS))
    return (1, True) if took else (0, False)


def _esp_failed(name: str, outage: esp.Outcome, probing: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        state, _ = EspState.objects.select_for_update().get_or_create(esp=name)
        refused_before = state.problem == esp.AUTH
        if state.down_since is None:
            state.down_since, state.failures = now, 0
            log.warning("the ESP is not answering; senders hold back and probe it",
                        extra={"esp": name, "problem": outage.problem, "error": outage.error})
        if outage.problem == esp.AUTH and not refused_before:
            # Not a passing fault: nothing goes until an operator puts the key or the account right.
            log.error("the ESP refuses our credentials or account; nothing is sent until that is put right",
                      extra={"esp": name, "error": outage.error})
        if probing or state.failures == 0:
            state.failures += 1
        delay = min(settings.ESP_PROBE_MAX_SECONDS, settings.ESP_PROBE_SECONDS * 2 ** (state.failures - 1))
        state.next_probe_at = now + dt.timedelta(seconds=delay)
        state.last_error = f"{outage.problem or esp.OTHER}: {outage.error}"
        state.save()


def _esp_answered(name: str) -> None:
    since = EspState.objects.filter(esp=name, down_since__isnull=False).values_list("down_since", flat=True).first()
    if since is None or not EspState.objects.filter(esp=name, down_since=since).update(
            down_since=None, failures=0, next_probe_at=None, probe_until=None):
        return
    log.info("the ESP is answering again; everything waiting goes now", extra={"esp": name})
    now = timezone.now()
    kick(Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now).count())
    if settings.CANARY_EMAIL and now - since > dt.timedelta(seconds=settings.ESP_DOWN_ALERT_SECONDS):
        # After an outage long enough to fail the delivery check, a probe now rather than at the canary's
        # next tick: one made late by the outage stops failing it within seconds of the recovery. Not after
        # a blip (an ESP throttling us comes and goes every few seconds): each probe is an email.
        _queue("alerts.canary")


# Not tried: the sender's lease had too little time left for another call. Due again at once, as it was.
LATER = esp.Outcome("later")


def _apply(delivery: Delivery, outcome: esp.Outcome, now: dt.datetime, held_back: bool) -> None:
    delivery.leased_until = None
    if outcome.status == LATER.status:
        delivery.next_attempt_at = now
        return
    delivery.error = outcome.error
    if outcome.status == esp.SENT:
        delivery.status, delivery.sent_at = Delivery.Status.SENT, now
        delivery.esp_message_id, delivery.esp_status = outcome.message_id, outcome.esp_status
    elif outcome.status == esp.REJECTED:
        delivery.status = Delivery.Status.REJECTED
    elif outcome.status == esp.RETRY:
        # An ESP that is down is waited for by all senders together (`_gate`): the email is due again as soon
        # as it answers. A failure of this one email (or a throttled call among calls that went) backs off
        # on its own.
        wait = 0 if outcome.outage and held_back else backoff(delivery.attempts)
        delivery.next_attempt_at = now + dt.timedelta(seconds=wait)
        if delivery.next_attempt_at > delivery.give_up_at:
            delivery.status = Delivery.Status.FAILED
            delivery.error = f"gave up after {delivery.attempts} attempts: {outcome.error}"[:2000]
    else:
        delivery.status = Delivery.Status.FAILED


def _recorded(chunk: list[Delivery], outcomes: dict[int, esp.Outcome], lease: Lease, held_back: bool,
              carried: dict[int, list[int]]) -> Counter:
    """Record the chunk's outcomes; `carried` is the alerts each delivery carries, whose time of last email
    is set by those sent."""
    now = timezone.now()
    done = [d for d in chunk if outcomes[d.pk].status != esp.TAKEN]
    for delivery in done:
        _apply(delivery, outcomes[delivery.pk], now, held_back)

    def record() -> None:
        _record(done, lease)
        if alerts := {pk for d in done if d.status == Delivery.Status.SENT for pk in carried.get(d.pk, ())}:
            # By primary key: a join over the matches would be planned from the tables' statistics.
            Subscription.objects.filter(pk__in=alerts).update(last_sent_at=now)

    _until_done(record, "outcomes")
    counts = Counter(esp.RETRY if d.status == Delivery.Status.PENDING else d.status for d in done)
    counts[esp.TAKEN] = len(chunk) - len(done)
    for outcome, count in counts.items():
        metrics.EMAILS.labels(outcome).inc(count)
    # Emails not tried for want of time are no error of anyone's.
    errors = Counter((esp.RETRY if d.status == Delivery.Status.PENDING else d.status,
                      outcomes[d.pk].problem or esp.OTHER) for d in done
                     if d.status != Delivery.Status.SENT and outcomes[d.pk].status != LATER.status)
    for (outcome, error), count in errors.items():
        metrics.ESP_ERRORS.labels(outcome, error).inc(count)
    if errors:
        log.warning("emails not sent", extra={"errors": {f"{o} {e}": n for (o, e), n in errors.items()},
                                              "deliveries": [d.pk for d in done if d.status != Delivery.Status.SENT]})
    log.info("emails sent", extra={"deliveries": [d.pk for d in chunk], "sent": counts[esp.SENT],
                                   "retry": counts[esp.RETRY], "rejected": counts[esp.REJECTED],
                                   "failed": counts[esp.FAILED], "taken": counts[esp.TAKEN]})
    return +counts


def _carried(chunk: list[Delivery]) -> dict[int, list[int]]:
    """The alerts each alert email of the chunk carries a match of, once per match, leaving out alerts paused
    since. Two lookups by index, not a join: one chunk's reads stay the same size however large the tables
    are and whatever the planner believes of them."""
    with transaction.atomic():
        _through_indexes()
        rows = list(Match.objects.filter(delivery_id__in=[d.pk for d in chunk if d.kind in ALERT_KINDS])
                    .values_list("delivery_id", "subscription_id", "events"))
        paused = set(Subscription.objects.filter(pk__in={alert for _, alert, _ in rows}, paused=True)
                     .values_list("pk", flat=True))
        # A question deleted since goes out of the email, which is made again without it.
        there = _events({event_id for _, _, events in rows for event_id in events})
    carried: dict[int, list[int]] = {}
    for delivery_id, alert, events in rows:
        if alert not in paused:
            carried.setdefault(delivery_id, []).extend(alert for event_id in events if event_id in there)
    return carried


def _stale(chunk: list[Delivery], carried: dict[int, list[int]]) -> list[Delivery]:
    """Rows whose stored email no longer says what they carry: made before emails were stored, or an alert
    email some of whose matches went since, or whose alert was paused (it must not be in it any more)."""
    return [d for d in chunk if d.rendered_at is None
            or (d.kind in ALERT_KINDS and len(carried.get(d.pk, ())) != d.payload.get("matches"))]


def send_chunk(lease: Lease, transport, probing: bool = False) -> tuple[Counter, bool]:
    """Send the leased deliveries' stored emails and record every outcome; says whether the ESP as a whole
    failed. A probe that met the ESP answering, whatever it answered, says it is back."""
    chunk = list(Delivery.objects.filter(pk__in=lease.ids).select_related("subscriber").order_by("pk"))
    carried = _carried(chunk)
    if stale := _stale(chunk, carried):
        render_again(stale)
    outcomes: dict[int, esp.Outcome] = {}
    ready = []
    for delivery in chunk:
        if refusal := _refusal(delivery):
            outcomes[delivery.pk] = esp.Outcome(esp.FAILED, error=refusal, problem="suppressed")
        elif delivery.status != Delivery.Status.PENDING:
            outcomes[delivery.pk] = esp.Outcome(esp.FAILED, error=delivery.error, problem="unsendable")
        else:
            ready.append(delivery)
    messages = [emails.as_message(d) for d in ready]
    # A sender that stalled past its lease (another has taken a row) sends nothing; one that is slow at the
    # ESP starts no call that could outlast the lease, past which another sender may take the rest.
    ours = _until_done(lease.keep, "lease")
    margin = dt.timedelta(seconds=min(sum(esp.request_timeout()), settings.DELIVERY_LEASE_SECONDS / 2))
    sent = transport.send(messages, lambda: ours and timezone.now() < lease.until - margin)
    if ours:
        # Still ours: what there was no time to start is not left leased, to be taken back one by one later.
        sent = [LATER if o.status == esp.TAKEN else o for o in sent]
    outcomes.update(zip([d.pk for d in ready], sent, strict=True))
    answered = any(o.status not in (esp.TAKEN, LATER.status) and not o.outage for o in sent)
    # Down only when nothing of the chunk got an answer: one that went down midway is found by the next.
    outage = None if answered else next((o for o in sent if o.outage), None)
    counts = _recorded(chunk, outcomes, lease, held_back=outage is not None, carried=carried)
    if outage:
        _until_done(lambda: _esp_failed(transport.name, outage, probing), "ESP state")
    elif answered:
        _until_done(lambda: _esp_answered(transport.name), "ESP state")
    return counts, outage is not None


def send_due(seconds: float | None = None) -> Counter:
    """Send what is due, chunk by chunk, until nothing due is left, `seconds` have passed, the ESP is down
    or the worker is stopping.

    Only what was due when the run began: a failure rescheduled meanwhile waits for a later run. Sending
    renders nothing: each email was stored when its row was made."""
    started = timezone.now()
    deadline = time.monotonic() + (seconds if seconds is not None else settings.DELIVERY_RUN_SECONDS)
    counts = Counter()
    with esp.open_transport() as transport:
        while not stopping() and time.monotonic() < deadline:
            size, probing = _gate(transport.name)
            try:
                if not (lease := claim_due(started, size) if size else None):
                    break
                sent, outage = send_chunk(lease, transport, probing)
            finally:
                if probing:  # whatever became of it, the next probe is free to go when due
                    EspState.objects.filter(esp=transport.name).update(probe_until=None)
            counts += sent
            if outage:
                break
    if time.monotonic() >= deadline and not stopping() and Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=started).exists():
        kick()  # out of time with work left: another run goes on at once rather than at beat's next tick
    return counts
