from celery import shared_task

from alerts.delivery import SendFailed, enqueue, retry_delay, send_delivery, stale_pending


@shared_task(bind=True, name="alerts.send_delivery", max_retries=None, acks_late=True)
def send_delivery_task(self, delivery_id: int) -> str:
    try:
        return send_delivery(delivery_id).status
    except SendFailed as exc:
        raise self.retry(countdown=retry_delay(self.request.retries + 1), exc=exc) from exc


@shared_task(name="alerts.resend_stale")
def resend_stale_task() -> int:
    ids = stale_pending()
    enqueue(ids)
    return len(ids)
