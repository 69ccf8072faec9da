"""What ESPs tell us through Anymail's tracking webhooks: bounces and complaints stop all email."""

from __future__ import annotations

import logging

from anymail.signals import AnymailTrackingEvent

from alerts.models import Delivery, Subscriber, WebhookEvent

log = logging.getLogger(__name__)

SUPPRESSING = {
    "bounced": Subscriber.Suppression.BOUNCED,  # Anymail's "bounced" is permanent; "deferred" is a soft bounce
    "complained": Subscriber.Suppression.COMPLAINED,
    "unsubscribed": Subscriber.Suppression.UNSUBSCRIBED,
}


def record_tracking_event(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    recipient = (event.recipient or "")[:254]
    WebhookEvent.objects.create(esp=esp_name[:30], event_type=(event.event_type or "")[:30], recipient=recipient,
                                message_id=str(event.message_id or "")[:200],
                                description=(event.description or event.mta_response or "")[:2000])
    if event.message_id:
        Delivery.objects.filter(esp_message_id=str(event.message_id)).update(esp_status=event.event_type[:50])
    reason = SUPPRESSING.get(event.event_type)
    if reason and recipient:
        for subscriber in Subscriber.objects.filter(email__iexact=recipient):
            subscriber.suppress(reason)
        log.info("address suppressed esp=%s event=%s recipient_known=%s", esp_name, event.event_type,
                 Subscriber.objects.filter(email__iexact=recipient).exists())
