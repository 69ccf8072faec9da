"""Signed links: each for one purpose, expiring, and (but for unsubscribing) revocable per subscriber."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

from alerts.models import Subscriber

CONFIRM = "confirm"
MANAGE = "manage"
UNSUBSCRIBE = "unsubscribe"
# Sent to an address its subscriber wants their alerts moved to: opened from that inbox, it makes the move.
NEW_EMAIL = "new-email"

MAX_AGE = {
    CONFIRM: dt.timedelta(days=7),
    # Short: it hands someone's alerts to another inbox.
    NEW_EMAIL: dt.timedelta(days=1),
    MANAGE: dt.timedelta(days=90),
    # An unsubscribe link in an old email must still work: it can only ever stop mail.
    UNSUBSCRIBE: dt.timedelta(days=5 * 365),
}
# Unsubscribe links survive "sign me out of all links", for the same reason.
REVOCABLE = {CONFIRM, MANAGE, NEW_EMAIL}
# Links sent to the subscriber's own address carry a mark of that address: once the alerts have moved to
# another, a link from the old inbox says so, and an unsubscribe link (never revoked) stops nothing there.
# A change link is sent to another address, and is revoked by the move itself.
ADDRESSED = {CONFIRM, MANAGE, UNSUBSCRIBE}
ADDRESS_SALT = "alerts.link.address"


class LinkError(Exception):
    """A link for `purpose` that cannot be used; `reason` is expired, revoked, moved (its alerts went to another
    address since), gone (its subscriber is no more: merged into another address's, or deleted) or invalid."""

    def __init__(self, reason: str, purpose: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.purpose = purpose


@dataclass(frozen=True)
class Link:
    subscriber: Subscriber
    data: dict


def address_mark(email: str, key: str | None = None) -> str:
    """A short keyed hash of an address (8 bytes): enough to tell it from another, not to read it back."""
    digest = salted_hmac(ADDRESS_SALT, email.strip().lower(), secret=key, algorithm="sha256").digest()[:8]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _sent_elsewhere(payload: dict, subscriber: Subscriber) -> bool:
    """Whether the link was sent to an address other than the subscriber's now. A link made before links were
    marked was made before any address changed: it was sent elsewhere if this one has changed since. A rotated
    key (kept as a fallback) still knows its marks."""
    if "a" not in payload:
        return subscriber.email_changed_at is not None
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return not any(constant_time_compare(str(payload["a"]), address_mark(subscriber.email, key)) for key in keys)


def make(subscriber: Subscriber, purpose: str, **data) -> str:
    payload = {"s": subscriber.pk, **data}
    if purpose in REVOCABLE:
        payload["v"] = subscriber.token_version
    if purpose in ADDRESSED:
        payload["a"] = address_mark(subscriber.email)
    return signing.dumps(payload, salt=f"alerts.link.{purpose}", compress=True)


def read(token: str, purpose: str) -> Link:
    try:
        payload = signing.loads(token, salt=f"alerts.link.{purpose}", max_age=MAX_AGE[purpose])
    except signing.SignatureExpired:
        raise LinkError("expired", purpose) from None
    except signing.BadSignature:
        raise LinkError("invalid", purpose) from None
    subscriber = Subscriber.objects.filter(pk=payload.get("s")).first()
    if subscriber is None:
        raise LinkError("gone", purpose)
    if _sent_elsewhere(payload, subscriber):
        raise LinkError("moved", purpose)
    if purpose in REVOCABLE and payload.get("v") != subscriber.token_version:
        raise LinkError("revoked", purpose)
    return Link(subscriber, payload)
