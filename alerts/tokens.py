"""Signed links: each for one purpose, expiring, and (but for unsubscribing) revocable per subscriber."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core import signing

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


class LinkError(Exception):
    """A link that cannot be used; `reason` is expired, revoked or invalid."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Link:
    subscriber: Subscriber
    data: dict


def make(subscriber: Subscriber, purpose: str, **data) -> str:
    payload = {"s": subscriber.pk, **data}
    if purpose in REVOCABLE:
        payload["v"] = subscriber.token_version
    return signing.dumps(payload, salt=f"alerts.link.{purpose}", compress=True)


def read(token: str, purpose: str) -> Link:
    try:
        payload = signing.loads(token, salt=f"alerts.link.{purpose}", max_age=MAX_AGE[purpose])
    except signing.SignatureExpired:
        raise LinkError("expired") from None
    except signing.BadSignature:
        raise LinkError("invalid") from None
    subscriber = Subscriber.objects.filter(pk=payload.get("s")).first()
    if subscriber is None:
        raise LinkError("invalid")
    if purpose in REVOCABLE and payload.get("v") != subscriber.token_version:
        raise LinkError("revoked")
    return Link(subscriber, payload)
