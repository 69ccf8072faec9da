"""Emails as Delivery rows: written before the ESP is called, completed after, so a crash re-sends."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts.models import Delivery, Subscriber

log = logging.getLogger(__name__)

# Kinds a subscriber asked for just now, which may reach an address that had unsubscribed before.
ON_REQUEST = {Delivery.Kind.CONFIRMATION, Delivery.Kind.MANAGE_LINK}


class SendFailed(Exception):
    """The ESP refused or failed; the delivery stays pending for a retry."""


def enqueue(delivery_ids: list[int]) -> None:
    from alerts.delivery_tasks import send_delivery_task

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


def send_delivery(delivery_id: int) -> Delivery:
    """Send one pending delivery; raises SendFailed when it should be tried again later."""
    from alerts.emails import compose

    with transaction.atomic():
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
            message.send()
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
            log.info("email sent delivery=%s kind=%s subscriber=%s esp_id=%s", delivery.pk, delivery.kind,
                     delivery.subscriber_id, delivery.esp_message_id)
            return delivery
    raise failed


def retry_delay(attempts: int) -> float:
    return settings.DELIVERY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)


def stale_pending(older_than: dt.timedelta = dt.timedelta(minutes=10)) -> list[int]:
    """Pending deliveries nobody finished (a worker died mid-send): they are sent again."""
    cutoff = timezone.now() - older_than
    return list(Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=cutoff)
                .values_list("pk", flat=True)[:1000])
