"""What each alert of an address has been doing, for the manage page's answer to "is my alert working?":
when questions were last checked, when the alert last matched, and what became of the last email carrying it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import BooleanField, Exists, ExpressionWrapper, Max, OuterRef, Q, Subquery
from django.utils import timezone

from alerts import esp
from alerts.models import Delivery, Match, Subscriber, Subscription
from questions.models import Source

# Anymail's tracking event types, in the subscriber's words. An email reported more than once (Anymail may
# give a send several statuses, "queued,sent") is described by the first of these it has.
ESP_WORDS: dict[str, str] = {
    "bounced": "your mail server refused it (bounced)",
    "complained": "it was reported as spam",
    "rejected": "our email provider refused to send it",
    "failed": "our email provider couldn’t send it",
    "deferred": "your mail server delayed it; it is still trying",
    # Opening or clicking shows it arrived; what the reader did with it is theirs, and not repeated here.
    **{status: "delivered to your inbox" for status in esp.ARRIVED},
    "autoresponded": "delivered to your inbox, which sent an automatic reply",
    "sent": "on its way to your mail server; we haven’t heard yet that it arrived",
    "queued": "waiting to leave our email provider",
}
# Reports that mean the email did not reach the inbox, or may not have.
ESP_TROUBLE = {"bounced", "complained", "rejected", "failed", "deferred"}
NO_REPORT = "on its way to your mail server; we haven’t heard yet that it arrived"


@dataclass(frozen=True)
class Email:
    """The last email that carried an alert, or a later one not yet out."""

    at: dt.datetime
    sent: bool
    words: str
    trouble: bool


@dataclass(frozen=True)
class Follow:
    """Where a followed question stands, and so what its follow is still waiting for."""

    state: str  # "waiting", "holding", "answered", "withdrawn" or "retired"
    answered_on: dt.date | None = None
    # Corrections to the answer are sent until then; after it the follow retires itself.
    until: dt.date | None = None
    retired_at: dt.datetime | None = None
    withdrawn: bool = False


@dataclass(frozen=True)
class Activity:
    last_matched_at: dt.datetime | None
    last_email: Email | None
    # An email newer than the last one sent that has not gone out: waiting, being retried, or given up.
    unsent_email: Email | None
    # Nothing matched in QUIET_ALERT_DAYS of the alert running unchanged: perhaps its search is wrong.
    quiet: bool
    follow: Follow | None


def questions_last_checked() -> dt.datetime | None:
    """When any enabled source was last read successfully: the same moment for every alert."""
    return Source.objects.filter(enabled=True).aggregate(latest=Max("last_success_at"))["latest"]


def esp_words(esp_status: str) -> tuple[str, bool]:
    """What the ESP said about a sent email, in words, and whether it means the email may not have arrived."""
    reported = {status.strip() for status in esp_status.split(",") if status.strip()}
    for status in ESP_WORDS:
        if status in reported:
            return ESP_WORDS[status], status in ESP_TROUBLE
    return NO_REPORT, False


def _unsent_words(delivery: Delivery) -> tuple[str, bool]:
    if delivery.status == Delivery.Status.FAILED:
        return "we couldn’t send it, and have stopped trying", True
    if delivery.status == Delivery.Status.REJECTED:
        return "our email provider refused to send it to this address", True
    if delivery.attempts:
        return "we couldn’t send it yet, and will try again shortly", False
    return "waiting to be sent", False


def _email(delivery: Delivery | None) -> Email | None:
    if delivery is None:
        return None
    if delivery.status == Delivery.Status.SENT:
        words, trouble = esp_words(delivery.esp_status)
        return Email(at=delivery.sent_at or delivery.created_at, sent=True, words=words, trouble=trouble)
    words, trouble = _unsent_words(delivery)
    return Email(at=delivery.created_at, sent=False, words=words, trouble=trouble)


# What a follow's state is read from: a question's long texts are left in the database.
FOLLOW_FIELDS = ["question__is_withdrawn", "question__answer_is_holding", "question__date_answered",
                 "question__date_holding_answer", "question__date_answer_corrected"]


def follow_state(subscription: Subscription, answered: bool) -> Follow:
    """`answered`: the question has an answer (holding or not), as `Question.is_answered` says."""
    question = subscription.question
    if subscription.retired_at:
        return Follow("retired", retired_at=subscription.retired_at, withdrawn=question.is_withdrawn)
    if question.is_withdrawn:
        return Follow("withdrawn", withdrawn=True)
    if answered and not question.answer_is_holding:
        answered_on = question.date_answered
        # A correction restarts the window, as it does for retiring the follow.
        last = max(filter(None, [question.date_answered, question.date_answer_corrected]), default=None)
        until = last + dt.timedelta(days=settings.FOLLOW_WINDOW_DAYS) if last else None
        return Follow("answered", answered_on=answered_on, until=until)
    if question.answer_is_holding:
        return Follow("holding", answered_on=question.date_holding_answer or question.date_answered)
    return Follow("waiting")


def alert_activity(subscriber: Subscriber, now: dt.datetime | None = None) -> dict[int, Activity]:
    """Each alert's activity by its id, in two queries however many alerts the address has."""
    now = now or timezone.now()
    carrying = Delivery.objects.filter(matches__subscription=OuterRef("pk"))
    subscriptions = (
        subscriber.subscriptions.select_related("question")
        .only(*(field.name for field in Subscription._meta.concrete_fields), *FOLLOW_FIELDS)
        .annotate(
            answered=ExpressionWrapper(~Q(question__answer_text=""), output_field=BooleanField()),
            last_matched_at=Subquery(Match.objects.filter(subscription=OuterRef("pk")).order_by("-created_at")
                                     .values("created_at")[:1]),
            last_sent_id=Subquery(carrying.filter(status=Delivery.Status.SENT).order_by("-sent_at", "-pk")
                                  .values("pk")[:1]),
            newest_id=Subquery(carrying.order_by("-created_at", "-pk").values("pk")[:1]),
            # Only an alert that is matched can be quiet: a paused or unconfirmed one is silent by choice.
            receiving=Exists(Subscription.objects.receiving().filter(pk=OuterRef("pk"))),
        )
        .order_by()
    )
    subscriptions = list(subscriptions)
    ids = {pk for s in subscriptions for pk in (s.last_sent_id, s.newest_id) if pk}
    deliveries = {d.pk: d for d in Delivery.objects.filter(pk__in=ids).only(
        "status", "attempts", "sent_at", "created_at", "esp_status")} if ids else {}
    # Quiet time counts from an alert's last change (an edit, a pause, a resume): its search may be new since.
    quiet_since = now - dt.timedelta(days=settings.QUIET_ALERT_DAYS)
    activity = {}
    for s in subscriptions:
        newest = deliveries.get(s.newest_id)
        unsent = newest if newest is not None and newest.status != Delivery.Status.SENT else None
        quiet = (not s.is_follow and s.receiving and max(s.created_at, s.updated_at) <= quiet_since
                 and (s.last_matched_at is None or s.last_matched_at < quiet_since))
        activity[s.pk] = Activity(
            last_matched_at=s.last_matched_at, last_email=_email(deliveries.get(s.last_sent_id)),
            unsent_email=_email(unsent), quiet=quiet, follow=follow_state(s, s.answered) if s.is_follow else None,
        )
    return activity
