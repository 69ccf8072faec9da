from celery import shared_task

from alerts.delivery import (
    SendFailed,
    deliver_digest,
    deliver_immediate,
    enqueue,
    retry_delay,
    send_chunk,
    send_delivery,
    stale_pending,
)
from alerts.models import Delivery


@shared_task(bind=True, name="alerts.send_delivery", max_retries=None, acks_late=True)
def send_delivery_task(self, delivery_id: int) -> str:
    try:
        return send_delivery(delivery_id).status
    except SendFailed as exc:
        raise self.retry(countdown=retry_delay(self.request.retries + 1), exc=exc) from exc


@shared_task(name="alerts.send_chunk", acks_late=True)
def send_chunk_task(delivery_ids: list[int]) -> dict:
    results = send_chunk(delivery_ids)
    retry = [delivery_id for delivery_id, status in results.items() if status == "retry"]
    for delivery_id in retry:
        send_delivery_task.apply_async((delivery_id,), countdown=retry_delay(1))
    return {"sent": sum(1 for s in results.values() if s == "sent"), "retrying": len(retry)}


@shared_task(name="alerts.deliver_immediate")
def deliver_immediate_task(subscriber_ids: list[int] | None = None) -> int:
    return len(deliver_immediate(subscriber_ids))


@shared_task(name="alerts.deliver_daily")
def deliver_daily_task() -> int:
    return len(deliver_digest(Delivery.Kind.DAILY))


@shared_task(name="alerts.deliver_weekly")
def deliver_weekly_task() -> int:
    return len(deliver_digest(Delivery.Kind.WEEKLY))


@shared_task(name="alerts.resend_stale")
def resend_stale_task() -> int:
    ids = stale_pending()
    enqueue(ids)
    return len(ids)
