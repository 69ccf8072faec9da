"""What ESPs tell us through Anymail's tracking webhooks: bounces and complaints stop all email.

Only the tracking webhook of the ESP that sends our email is served, and only with a secret (or the
ESP's signing key) configured: a webhook anyone could post to would let anyone silence any address.
"""

from __future__ import annotations

import logging
import re

import anymail.urls
from anymail.backends.base import AnymailBaseBackend
from anymail.signals import AnymailTrackingEvent
from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from alerts import metrics
from alerts.models import Delivery, Subscriber, WebhookEvent
from alerts.retention import remember_suppressed

log = logging.getLogger(__name__)

SUPPRESSING = {
    "bounced": Subscriber.Suppression.BOUNCED,  # Anymail's "bounced" is permanent; "deferred" is a soft bounce
    "complained": Subscriber.Suppression.COMPLAINED,
    "unsubscribed": Subscriber.Suppression.UNSUBSCRIBED,
}


def record_tracking_event(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    recipient = (event.recipient or "")[:254]
    metrics.WEBHOOK_EVENTS.labels(esp_name[:30], (event.event_type or "unknown")[:30]).inc()
    WebhookEvent.objects.create(esp=esp_name[:30], event_type=(event.event_type or "")[:30], recipient=recipient,
                                message_id=str(event.message_id or "")[:200],
                                description=(event.description or event.mta_response or "")[:2000])
    if event.message_id:
        Delivery.objects.filter(esp_message_id=str(event.message_id)).update(esp_status=event.event_type[:50])
    reason = SUPPRESSING.get(event.event_type)
    if reason and recipient:
        known = False
        for subscriber in Subscriber.objects.filter(email__iexact=recipient):
            subscriber.suppress(reason)
            known = True
        if not known and reason != Subscriber.Suppression.UNSUBSCRIBED:
            # An address erased after it left, or never ours: should it sign up again, it stays stopped.
            remember_suppressed(recipient, reason)
        log.info("address suppressed", extra={"esp": esp_name, "event": event.event_type,
                                              "message_id": str(event.message_id or ""), "recipient_known": known})


def configured_esp() -> str | None:
    """The Anymail ESP that sends our email (as in its webhook addresses: "postmark", "amazon_ses"), or
    None; a backend of our own built on an Anymail one counts as that ESP."""
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        # Its own requirements missing (boto3 for Amazon SES, say): known by its path all the same.
        found = re.fullmatch(r"anymail\.backends\.(\w+)\.EmailBackend", settings.EMAIL_BACKEND)
        esp = found.group(1) if found else ""
    else:
        anymail = isinstance(backend, type) and issubclass(backend, AnymailBaseBackend)
        esp = getattr(backend, "esp_name", "").lower().replace(" ", "_") if anymail else ""
    return esp if esp and esp not in {"test", "console"} else None


def webhook_secured(esp: str) -> bool:
    """A shared secret (HTTP basic auth), or the ESP's own signing key, is configured."""
    options = getattr(settings, "ANYMAIL", {}) or {}
    signing = re.compile(rf"{esp.upper()}_\w*(SIGNING|WEBHOOK_KEY)\w*")
    return bool(options.get("WEBHOOK_SECRET")) or any(signing.fullmatch(k) and v for k, v in options.items())


def _anymail_view(esp: str):
    for pattern in anymail.urls.urlpatterns:
        if str(pattern.pattern) == f"{esp}/tracking/":
            return pattern.callback
    return None


@csrf_exempt
def tracking_webhook(request: HttpRequest, esp: str) -> HttpResponse:
    view = _anymail_view(esp)
    if esp != configured_esp() or not webhook_secured(esp) or view is None:
        raise Http404("no such webhook")
    try:
        # All of a payload's events or none: a malformed one further down must leave nothing half done.
        with transaction.atomic():
            return view(request)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        # What the ESP sent cannot be read (not JSON, not an object, not UTF-8). Logged in full, as a
        # fault of ours would look the same; a database error is not caught, so the ESP retries.
        log.exception("webhook refused", extra={"esp": esp})
        return HttpResponseBadRequest("The payload cannot be read.")
