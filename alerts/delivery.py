"""Emails as Delivery rows: written before the ESP is called, completed after, so a crash re-sends."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from alerts.models import Delivery, Match, Subscriber, Subscription
from questions.models import Question

log = logging.getLogger(__name__)

# Kinds a subscriber asked for just now, which may reach an address that had unsubscribed before.
ON_REQUEST = {Delivery.Kind.CONFIRMATION, Delivery.Kind.MANAGE_LINK}


class SendFailed(Exception):
    """The ESP refused or failed; the delivery stays pending for a retry."""


def enqueue(delivery_ids: list[int]) -> None:
    from alerts.tasks import send_delivery_task

    for delivery_id in delivery_ids:
        send_delivery_task.delay(delivery_id)


def queue_delivery(subscriber: Subscriber, kind: str, payload: dict | None = None) -> Delivery:
    delivery = Delivery.objects.create(subscriber=subscriber, kind=kind, payload=payload or {})
    transaction.on_commit(lambda: enqueue([delivery.pk]))
    return delivery


def _may_send(delivery: Delivery) -> str:
    """Why this delivery must not go out, or "" when it may."""
    subscriber = delivery.subscriber
    if subscriber.suppressed_at is None:
        return ""
    if delivery.kind in ON_REQUEST and subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED:
        return ""
    return f"not sent: the address is suppressed ({subscriber.suppressed_reason})"


def claim(delivery_ids: list[int]) -> list[int]:
    """Take the pending deliveries nobody else is sending (or whose sender died), in one short commit.

    A claim, not a lock held through the ESP calls: each email is recorded as sent right after its
    own call, so a crash sends again at most the one email that was in flight.
    """
    now = timezone.now()
    given_up = now - dt.timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.PENDING)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=given_up))
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        Delivery.objects.filter(pk__in=ids).update(claimed_at=now)
    return ids


@contextmanager
def _relaxed_commits() -> Iterator[None]:
    """Don't wait for the disk when recording sends: if the database lost such a record in a crash,
    the email would be sent again, never lost, and the ESP call is what takes the time."""
    postgres = db_connection.vendor == "postgresql"
    if postgres:
        with db_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        if postgres and db_connection.connection is not None:
            with db_connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")


def _record(delivery: Delivery, **fields) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)


def _send_one(delivery: Delivery, matches: list[Match], connection) -> str:
    """Send one claimed delivery and record the outcome: "sent", "failed", "retry", or "taken" when
    another worker holds it now."""
    from alerts.emails import NothingToSend, compose

    # Renew the claim, or find it was taken over: a chunk that ran past DELIVERY_STALE_SECONDS must
    # not send what the sweep has since given to another worker.
    renewed = timezone.now()
    if not Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING,
                                   claimed_at=delivery.claimed_at).update(claimed_at=renewed):
        return "taken"
    delivery.claimed_at = renewed
    refusal = _may_send(delivery)
    if refusal:
        _record(delivery, status=Delivery.Status.FAILED, error=refusal, claimed_at=None)
        log.info("email not sent delivery=%s reason=%r", delivery.pk, refusal)
        return Delivery.Status.FAILED
    attempts = delivery.attempts + 1
    try:
        message = compose(delivery, matches)
        message.connection = connection
        message.send()
    except NothingToSend as exc:
        _record(delivery, status=Delivery.Status.FAILED, error=f"not sent: {exc}", attempts=attempts,
                claimed_at=None)
        return Delivery.Status.FAILED
    except Exception as exc:  # noqa: BLE001 - any failure of the ESP call is retried, then shown
        error = f"{type(exc).__name__}: {exc}"[:2000]
        gave_up = attempts >= settings.DELIVERY_MAX_ATTEMPTS
        _record(delivery, attempts=attempts, error=error, claimed_at=None,
                status=Delivery.Status.FAILED if gave_up else Delivery.Status.PENDING)
        log.warning("email failed delivery=%s attempt=%d error=%r", delivery.pk, attempts, error)
        return Delivery.Status.FAILED if gave_up else "retry"
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    _record(
        delivery, status=Delivery.Status.SENT, sent_at=timezone.now(), error="", attempts=attempts,
        subject=message.subject[:300], esp_message_id="" if message_id is None else str(message_id)[:200],
        esp_status=",".join(sorted(status.status or [])) if status else "sent",
    )
    log.info("email sent delivery=%s kind=%s subscriber=%s esp_id=%s", delivery.pk, delivery.kind,
             delivery.subscriber_id, delivery.esp_message_id)
    return Delivery.Status.SENT


def send_chunk(delivery_ids: list[int], connection=None) -> dict[int, str]:
    """Send a chunk of deliveries over one ESP connection: "sent", "failed" or "retry" for each id
    this call claimed (an id another worker holds, or already finished, is left out)."""
    from django.core.mail import get_connection

    ids = claim(delivery_ids)
    if not ids:
        return {}
    deliveries = Delivery.objects.filter(pk__in=ids).select_related("subscriber").order_by("pk")
    by_delivery: dict[int, list[Match]] = {pk: [] for pk in ids}
    heavy = [f"event__question__{f.name}" for f in Question._meta.fields if f.name.startswith("norm_")]
    # Every match of the chunk in one query; the normalised text and stored HTML are not shown in emails.
    for match in (Match.objects.filter(delivery_id__in=ids).select_related("subscription", "event__question")
                  .defer(*heavy, "event__question__answer_html")):
        by_delivery[match.delivery_id].append(match)
    results: dict[int, str] = {}
    with _relaxed_commits(), (connection or get_connection()) as esp:
        for delivery in deliveries:
            results[delivery.pk] = _send_one(delivery, by_delivery[delivery.pk], esp)
    sent = [pk for pk, outcome in results.items() if outcome == Delivery.Status.SENT]
    Subscription.objects.filter(matches__delivery_id__in=sent).update(last_sent_at=timezone.now())
    return results


def send_delivery(delivery_id: int, connection=None) -> Delivery:
    """Send one pending delivery; raises SendFailed when it should be tried again later."""
    outcome = send_chunk([delivery_id], connection).get(delivery_id)
    delivery = Delivery.objects.get(pk=delivery_id)
    if outcome == "retry":
        raise SendFailed(delivery.error)
    return delivery


def retry_delay(attempts: int) -> float:
    return settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)


def stale_pending() -> list[int]:
    """Pending deliveries nobody finished (a worker died mid-send, a task was lost): they are sent again."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    return list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=cutoff)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=cutoff))
        .values_list("pk", flat=True)[:1000]
    )


ALERT_FREQUENCY = {
    Delivery.Kind.IMMEDIATE: Subscription.Frequency.IMMEDIATE,
    Delivery.Kind.DAILY: Subscription.Frequency.DAILY,
    Delivery.Kind.WEEKLY: Subscription.Frequency.WEEKLY,
}
# Matches older than this are not sent: a paused alert resumed after a month starts afresh.
MATCH_WINDOW = dt.timedelta(days=8)


def deliverable_matches(kind: str, subscriber_ids: list[int] | None = None):
    """Undelivered matches that an email of this kind may carry: active alerts of reachable subscribers."""
    matches = Match.objects.filter(
        delivery__isnull=True,
        created_at__gte=timezone.now() - MATCH_WINDOW,
        subscription__frequency=ALERT_FREQUENCY[kind],
        subscription__paused=False,
        subscription__confirmed_at__isnull=False,
        subscription__subscriber__confirmed_at__isnull=False,
        subscription__subscriber__suppressed_at__isnull=True,
    )
    if subscriber_ids is not None:
        matches = matches.filter(subscription__subscriber_id__in=subscriber_ids)
    return matches


def create_alert_deliveries(kind: str, subscriber_ids: list[int] | None = None) -> list[int]:
    """One pending Delivery per subscriber with undelivered matches, the matches assigned to it, in one
    transaction; sending happens after commit. Two runs at once never take the same match."""
    with transaction.atomic():
        rows = list(
            deliverable_matches(kind, subscriber_ids)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "subscription__subscriber_id")
        )
        by_subscriber: dict[int, list[int]] = {}
        for match_id, subscriber_id in rows:
            by_subscriber.setdefault(subscriber_id, []).append(match_id)
        deliveries = Delivery.objects.bulk_create(
            Delivery(subscriber_id=subscriber_id, kind=kind) for subscriber_id in by_subscriber
        )
        ids = [delivery.pk for delivery in deliveries]
        # One statement: each claimed match goes to the new delivery of its subscriber.
        subscriber = Subscription.objects.filter(pk=OuterRef(OuterRef("subscription_id"))).values("subscriber_id")
        Match.objects.filter(pk__in=[match_id for match_id, _ in rows]).update(delivery=Subquery(
            Delivery.objects.filter(pk__in=ids, subscriber_id=Subquery(subscriber[:1])).values("pk")[:1]
        ))
        transaction.on_commit(lambda: enqueue_chunks(ids))
    if ids:
        log.info("deliveries created kind=%s emails=%d matches=%d", kind, len(ids), len(rows))
    return ids


def deliver_immediate(subscriber_ids: list[int] | None = None) -> list[int]:
    return create_alert_deliveries(Delivery.Kind.IMMEDIATE, subscriber_ids)


def deliver_digest(kind: str) -> list[int]:
    return create_alert_deliveries(kind)


def enqueue_chunks(delivery_ids: list[int]) -> None:
    """One task per chunk of emails, not per email: a worker sends a chunk over one ESP connection."""
    from alerts.tasks import send_chunk_task

    size = settings.DELIVERY_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        send_chunk_task.delay(delivery_ids[start:start + size])
