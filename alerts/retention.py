"""Retention and erasure: what is kept, for how long, and what is left of an address once its owner has gone.

Each kind of row has its own period (a setting). Rows are deleted in batches of RETENTION_BATCH, each in
a short transaction of its own, so that pruning never holds a lock on a table for long nor builds one
huge DELETE; a run that meets its time limit stops between batches, and the next run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Exists, F, Min, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from alerts import tokens
from alerts.models import (
    CanaryProbe,
    Delivery,
    ErasedAddress,
    Match,
    ResendToken,
    Subscriber,
    Subscription,
    WebhookEvent,
    WebhookTally,
    WebhookToken,
    address_digest,
)
from questions.models import QuestionEvent, Source, SourceProblem

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    # What was removed (or, in a dry run, would be), by kind of row.
    counts: Counter = field(default_factory=Counter)
    dry_run: bool = False
    finished: bool = True

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        done = ", ".join(f"{count} {what}" for what, count in self.counts.items() if count) or "nothing"
        return f"{verb}: {done}" + ("" if self.finished else " (out of time: the next run goes on)")


def _days(name: str, now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=getattr(settings, name))


def _in_batches(rows: QuerySet, remove: Callable[[list[int]], None], deadline: float) -> tuple[int, bool]:
    """Remove `rows` a batch of ids at a time; how many, and whether all of them went before the deadline."""
    removed = 0
    while True:
        if time.monotonic() >= deadline:
            return removed, False
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[:settings.RETENTION_BATCH])
        if not ids:
            return removed, True
        with transaction.atomic():
            # Asked again, locked: a row that changed since it was picked (a signup just now) is left alone.
            ids = list(rows.filter(pk__in=ids).select_for_update(of=("self",)).values_list("pk", flat=True))
            if ids:
                remove(ids)
        removed += len(ids)


def _problems(ids: list[int]) -> None:
    # The count of what went is kept on each source.
    for source_id, count in Counter(SourceProblem.objects.filter(pk__in=ids).values_list("source_id", flat=True)
                                    ).items():
        Source.objects.filter(pk=source_id).update(pruned_problems=F("pruned_problems") + count)
    SourceProblem.objects.filter(pk__in=ids).delete()


def _webhook_events(ids: list[int]) -> None:
    for (esp, event_type), count in Counter(WebhookEvent.objects.filter(pk__in=ids)
                                            .values_list("esp", "event_type")).items():
        tally, _ = WebhookTally.objects.get_or_create(esp=esp, event_type=event_type)
        WebhookTally.objects.filter(pk=tally.pk).update(pruned=F("pruned") + count)
    WebhookEvent.objects.filter(pk__in=ids).delete()


def _tokens(ids: list[int]) -> None:
    WebhookToken.objects.filter(pk__in=ids).delete()


def _resend_tokens(ids: list[int]) -> None:
    ResendToken.objects.filter(pk__in=ids).delete()


def _deliveries(ids: list[int]) -> None:
    # Their matches go first: the delivery's deletion would otherwise leave them undelivered, to be sent again.
    Match.objects.filter(delivery_id__in=ids).delete()
    Delivery.objects.filter(pk__in=ids).delete()


def _bodies(ids: list[int]) -> None:
    # The row stays (status, subject, when, what the ESP said) for RETAIN_EMAILS_DAYS; its text, most of its size,
    # goes sooner.
    Delivery.objects.filter(pk__in=ids).update(body_text="", body_html="")


def _matches(ids: list[int]) -> None:
    Match.objects.filter(pk__in=ids).delete()


def _events(ids: list[int]) -> None:
    QuestionEvent.objects.filter(pk__in=ids).delete()


def _subscriptions(ids: list[int]) -> None:
    Subscription.objects.filter(pk__in=ids).delete()


def _probes(ids: list[int]) -> None:
    CanaryProbe.objects.filter(pk__in=ids).delete()


def _subscribers(ids: list[int]) -> None:
    Subscriber.objects.filter(pk__in=ids).delete()


def _sessions(ids: list[str]) -> None:
    Session.objects.filter(pk__in=ids).delete()


# Sessions kept in the database (the default engine, or the cache in front of it) need their expired rows
# cleared, as `manage.py clearsessions` does; other engines expire their own.
SESSIONS_IN_DATABASE = {"django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"}


def _erase(ids: list[int]) -> None:
    """Delete the subscribers and everything of theirs, keeping a digest of each address and why it
    stopped: a digest of one that bounced or complained keeps it from ever being mailed again."""
    for email, reason in Subscriber.objects.filter(pk__in=ids).values_list("email", "suppressed_reason"):
        ErasedAddress.objects.update_or_create(digest=erased_digest(email), defaults={"reason": reason})
        # What the ESP reported is kept for its counts, without the address.
        WebhookEvent.objects.filter(recipient__iexact=email).update(recipient="")
    Subscriber.objects.filter(pk__in=ids).delete()


def _what_to_prune(now: dt.datetime) -> list[tuple[str, QuerySet, Callable[[list[int]], None]]]:
    finished = [Delivery.Status.SENT, Delivery.Status.REJECTED, Delivery.Status.FAILED]
    # An email still to go keeps the events it carries, however old, and so does a match still waiting for
    # its digest run.
    waiting = Q(delivery__isnull=True, subscription__in=Subscription.objects.receiving()) & Match.SENDABLE
    # Every event from the first of any such match on: a match is a handful of events of one run, and the
    # oldest waits for a monthly digest at most (or an email for its ESP), so what is kept needlessly is
    # bounded. Two reads, each through its own index, not one over the whole table.
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).values("pk")
    firsts = [Match.objects.filter(delivery__in=pending).aggregate(first=Min("first_event"))["first"],
              Match.objects.filter(waiting).aggregate(first=Min("first_event"))["first"]]
    carried = min((first for first in firsts if first is not None), default=None)
    matched = QuestionEvent.objects.filter(created_at__lt=_days("RETAIN_MATCHED_EVENTS_DAYS", now),
                                           matched_at__lt=_days("RETAIN_MATCHED_EVENTS_DAYS", now))
    if carried is not None:
        matched = matched.filter(pk__lt=carried)
    # Someone who asked for a confirmation lately may still use its link: not deleted, not erased.
    asked = Delivery.objects.filter(subscriber=OuterRef("pk"), kind=Delivery.Kind.CONFIRMATION,
                                    created_at__gte=now - tokens.MAX_AGE[tokens.CONFIRM])
    return [
        ("source problems", SourceProblem.objects.filter(created_at__lt=_days("RETAIN_SOURCE_PROBLEMS_DAYS", now)),
         _problems),
        ("webhook events", WebhookEvent.objects.filter(created_at__lt=_days("RETAIN_WEBHOOK_EVENTS_DAYS", now)),
         _webhook_events),
        # Past the age at which a post carrying them is refused anyway.
        ("webhook tokens", WebhookToken.objects.filter(signed_at__lt=now - WebhookToken.KEEP), _tokens),
        # Well past the age at which their confirmation pages are refused anyway (clocks differ a little).
        ("resend marks", ResendToken.objects.filter(used_at__lt=now - 2 * ResendToken.MAX_AGE), _resend_tokens),
        # Pending emails are never pruned, however old: they are the queue.
        ("emails", Delivery.objects.filter(status__in=finished, created_at__lt=_days("RETAIN_EMAILS_DAYS", now)),
         _deliveries),
        ("email texts", Delivery.objects.filter(status__in=finished,
                                                created_at__lt=_days("RETAIN_EMAIL_TEXTS_DAYS", now))
         .exclude(body_text="", body_html=""), _bodies),
        # Matched that long ago; stored that long ago too (indexed, so a batch does not scan every event).
        ("matched events", matched, _events),
        # Never confirmed: the confirmation link has long expired. An address that bounced meanwhile is
        # erased below instead, so that its digest is kept.
        ("unconfirmed subscribers", Subscriber.objects.filter(
            confirmed_at__isnull=True, created_at__lt=_days("RETAIN_UNCONFIRMED_DAYS", now))
         .exclude(suppressed_reason__in=Subscriber.NEVER_EMAIL)
         .exclude(Exists(asked.filter(created_at__gte=_days("RETAIN_UNCONFIRMED_DAYS", now)))), _subscribers),
        # Anyone can sign any address up: what its owner never confirmed goes as an unconfirmed address
        # does, whoever the address is, once its last confirmation link has run out too.
        ("unconfirmed alerts", Subscription.objects.filter(
            confirmed_at__isnull=True, created_at__lt=_days("RETAIN_UNCONFIRMED_DAYS", now),
            updated_at__lt=min(_days("RETAIN_UNCONFIRMED_DAYS", now), now - tokens.MAX_AGE[tokens.CONFIRM])),
         _subscriptions),
        ("erased addresses", Subscriber.objects.filter(suppressed_at__lt=_days("ERASE_AFTER_DAYS", now))
         .exclude(Exists(asked)), _erase),
        # A follow that ended itself stays on the manage page a while, saying so, then goes.
        ("ended follows", Subscription.objects.filter(retired_at__lt=_days("RETAIN_ENDED_FOLLOWS_DAYS", now)),
         _subscriptions),
        ("canary probes", CanaryProbe.objects.filter(started_at__lt=_days("RETAIN_CANARY_DAYS", now)), _probes),
        # A match written while its alert was being deleted (the database does not check a match's alert, see
        # Match): never sent, and gone here. It never had an email: only what waits is looked at.
        ("matches of deleted alerts", Match.objects.filter(delivery__isnull=True).filter(
            ~Exists(Subscription.objects.filter(pk=OuterRef("subscription_id")))), _matches),
        # A match waiting for an alert that will not receive it (paused, ended) goes when the events it holds
        # would have: when it could be sent, the events stay for it instead.
        ("matches never sent", Match.objects.filter(delivery__isnull=True,
                                                    created_at__lt=_days("RETAIN_MATCHED_EVENTS_DAYS", now))
         .exclude(waiting), _matches),
    ] + ([("expired sessions", Session.objects.filter(expire_date__lt=now), _sessions)]
         if settings.SESSION_ENGINE in SESSIONS_IN_DATABASE else [])


def prune(now: dt.datetime | None = None, dry_run: bool = False, seconds: float | None = None) -> PruneReport:
    """Remove what has outlived its period; with `dry_run`, only count it."""
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    deadline = time.monotonic() + (seconds if seconds is not None else settings.RETENTION_RUN_SECONDS)
    for what, rows, remove in _what_to_prune(now):
        if dry_run:
            report.counts[what] = rows.count()
            continue
        report.counts[what], finished = _in_batches(rows, remove, deadline)
        if not finished:
            report.finished = False
            break
    log.info("pruned", extra={"dry_run": dry_run, "finished": report.finished, **{
        what.replace(" ", "_"): count for what, count in report.counts.items()}})
    return report


ERASED_SALT = "alerts.erased-address"


def _keyed_digests(email: str) -> list[str]:
    """The address's digest keyed with SECRET_KEY (first: the one stored), then with each of
    SECRET_KEY_FALLBACKS, so that rotating the key forgets no address. Keyed, so that a digest read from a
    copy of the database cannot be matched against a list of addresses without the key as well."""
    text = email.strip().lower()
    return [salted_hmac(ERASED_SALT, text, secret=key, algorithm="sha256").hexdigest()
            for key in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]]


def erased_digest(email: str) -> str:
    """The digest an erased address is kept under."""
    return _keyed_digests(email)[0]


def _digests(email: str) -> list[str]:
    # Digests stored before they were keyed are plain SHA-256 and cannot be rekeyed without the address:
    # they are still recognised, and rewritten keyed when the address is met again.
    return [*_keyed_digests(email), address_digest(email)]


def _keep_digest(email: str, reason: str) -> None:
    digests = _digests(email)
    ErasedAddress.objects.filter(digest__in=digests[1:]).delete()
    ErasedAddress.objects.update_or_create(digest=digests[0], defaults={"reason": reason})


def suppressed_reason_of(email: str) -> str:
    """Why an erased address stopped receiving, or "" if it was never erased. A bounce or complaint
    outweighs an unsubscribe, should digests under both an old and a new key be held."""
    digests = _digests(email)
    found = dict(ErasedAddress.objects.filter(digest__in=digests).values_list("digest", "reason"))
    if not found:
        return ""
    reasons = set(found.values())
    reason = next(iter(reasons - {Subscriber.Suppression.UNSUBSCRIBED}), Subscriber.Suppression.UNSUBSCRIBED)
    if set(found) != {digests[0]}:
        _keep_digest(email, reason)
    return reason


def remember_suppressed(email: str, reason: str) -> None:
    """A bounce or complaint about an address we no longer hold: its digest keeps it from being mailed again."""
    _keep_digest(email, reason)


def forget_erased(email: str) -> None:
    ErasedAddress.objects.filter(digest__in=_digests(email)).delete()
