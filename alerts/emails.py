"""Composing each kind of email from its templates: subject, text and HTML parts, headers."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from alerts import tokens
from alerts.models import Delivery, Subscriber, Subscription


def absolute(path: str) -> str:
    return settings.SITE_URL + path


def manage_url(subscriber: Subscriber) -> str:
    return absolute(reverse("alerts:manage", args=[tokens.make(subscriber, tokens.MANAGE)]))


def unsubscribe_url(subscriber: Subscriber, subscription: Subscription | None = None) -> str:
    data = {"sub": subscription.pk} if subscription else {}
    return absolute(reverse("alerts:unsubscribe", args=[tokens.make(subscriber, tokens.UNSUBSCRIBE, **data)]))


def _message(delivery: Delivery, template: str, context: dict, subject: str, headers: dict | None = None):
    context = {"subscriber": delivery.subscriber, "site_url": settings.SITE_URL, "subject": subject, **context}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"alerts/email/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.subscriber.email],
        headers={"Auto-Submitted": "auto-generated", **(headers or {})},
    )
    message.attach_alternative(render_to_string(f"alerts/email/{template}.html", context), "text/html")
    # Anymail passes these to the ESP, so its events can be traced back to the row.
    message.metadata = {"delivery_id": str(delivery.pk)}
    message.tags = [delivery.kind]
    return message


def _confirmation(delivery: Delivery) -> EmailMultiAlternatives:
    subscriber = delivery.subscriber
    ids = delivery.payload.get("subscriptions", [])
    subscriptions = list(subscriber.subscriptions.filter(pk__in=ids))
    link = absolute(reverse("alerts:confirm", args=[tokens.make(subscriber, tokens.CONFIRM, subscriptions=ids)]))
    names = ", ".join(f"“{s.name}”" for s in subscriptions) or "your search"
    return _message(delivery, "confirmation", {"subscriptions": subscriptions, "confirm_url": link},
                    f"Confirm your written question alert for {names}")


def _manage_link(delivery: Delivery) -> EmailMultiAlternatives:
    subscriber = delivery.subscriber
    duplicate = subscriber.subscriptions.filter(pk=delivery.payload.get("duplicate") or 0).first()
    context = {"manage_url": manage_url(subscriber), "duplicate": duplicate,
               "too_many": delivery.payload.get("too_many")}
    return _message(delivery, "manage_link", context, "Your written question alerts")


COMPOSERS = {
    Delivery.Kind.CONFIRMATION: _confirmation,
    Delivery.Kind.MANAGE_LINK: _manage_link,
}


def compose(delivery: Delivery) -> EmailMultiAlternatives:
    return COMPOSERS[delivery.kind](delivery)
