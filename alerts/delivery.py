"""Emails as Delivery rows: written before the ESP is called, completed after, so a crash re-sends."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from alerts.models import Delivery, Match, Subscriber, Subscription

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


def _relax_commit() -> None:
    """Don't wait for the disk when recording a send: if the database lost the record in a crash, the
    email would be sent again, never lost, and the ESP call is what takes the time."""
    if db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def send_delivery(delivery_id: int, connection=None) -> Delivery:
    """Send one pending delivery; raises SendFailed when it should be tried again later."""
    from alerts.emails import NothingToSend, compose

    with transaction.atomic():
        _relax_commit()
        delivery = Delivery.objects.select_for_update().select_related("subscriber").get(pk=delivery_id)
        if delivery.status != Delivery.Status.PENDING:
            return delivery
        refusal = _may_send(delivery)
        if refusal:
            delivery.status, delivery.error = Delivery.Status.FAILED, refusal
            delivery.save(update_fields=["status", "error"])
            log.info("email not sent delivery=%s reason=%r", delivery.pk, refusal)
            return delivery
        delivery.attempts += 1
        try:
            message = compose(delivery)
            message.connection = connection
            message.send()
        except NothingToSend as exc:
            delivery.status, delivery.error = Delivery.Status.FAILED, f"not sent: {exc}"
            delivery.save(update_fields=["attempts", "status", "error"])
            return delivery
        except Exception as exc:  # noqa: BLE001 - any failure of the ESP call is retried, then shown
            delivery.error = f"{type(exc).__name__}: {exc}"[:2000]
            if delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
                delivery.status = Delivery.Status.FAILED
            delivery.save(update_fields=["attempts", "error", "status"])
            log.warning("email failed delivery=%s attempt=%d error=%r", delivery.pk, delivery.attempts, delivery.error)
            if delivery.status == Delivery.Status.FAILED:
                return delivery
            failed = SendFailed(delivery.error)
        else:
            status = getattr(message, "anymail_status", None)
            message_id = getattr(status, "message_id", None)
            delivery.esp_message_id = "" if message_id is None else str(message_id)[:200]
            delivery.esp_status = ",".join(sorted(status.status or [])) if status else "sent"
            delivery.subject = message.subject[:300]
            delivery.status, delivery.sent_at, delivery.error = Delivery.Status.SENT, timezone.now(), ""
            delivery.save()
            Subscription.objects.filter(matches__delivery=delivery).update(last_sent_at=delivery.sent_at)
            log.info("email sent delivery=%s kind=%s subscriber=%s esp_id=%s", delivery.pk, delivery.kind,
                     delivery.subscriber_id, delivery.esp_message_id)
            return delivery
    raise failed


def retry_delay(attempts: int) -> float:
    return settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)


def stale_pending() -> list[int]:
    """Pending deliveries nobody finished (a worker died mid-send): they are sent again."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    return list(Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=cutoff)
                .values_list("pk", flat=True)[:1000])


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


def send_chunk(delivery_ids: list[int]) -> dict[int, str]:
    """Send each delivery of a chunk over one connection; those that failed are retried one by one."""
    from django.core.mail import get_connection

    results: dict[int, str] = {}
    with get_connection() as connection:
        for delivery_id in delivery_ids:
            try:
                results[delivery_id] = send_delivery(delivery_id, connection=connection).status
            except SendFailed:
                results[delivery_id] = "retry"
    return results
