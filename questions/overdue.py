"""The day a question's answer is due passing with no answer but a holding one: an event, once per question,
that its followers hear of (alerts.matching gives it to followers only)."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from questions.models import Question, QuestionEvent, Source

log = logging.getLogger(__name__)

# The unique (question, key) constraint makes the event once per question, however many runs see it overdue.
OVERDUE_KEY = "overdue"
# Only a due date this recent is news: the first run after an upgrade must not tell of years of old questions,
# and a question whose event was pruned long after is not told of again.
OVERDUE_WITHIN_DAYS = 7


def known_day(now: dt.datetime) -> dt.date | None:
    """The last day whose answers the archive surely holds: today where every enabled source has polled
    successfully since midnight (London), else the day the least recent of them last did; None while one has
    never polled, or is failing, or none is enabled. An answer given late on its day, or while the API was down,
    is not in the archive yet: counting from the clock alone would tell followers it never came."""
    sources = list(Source.objects.filter(enabled=True).values_list("last_success_at", "consecutive_failures"))
    if not sources or any(last is None or failures for last, failures in sources):
        return None
    return min(timezone.localdate(now), *(timezone.localdate(last) for last, _ in sources))


def newly_overdue(today: dt.date) -> QuerySet[Question]:
    """The public questions overdue today (`Question.is_overdue`), due within the last OVERDUE_WITHIN_DAYS days,
    and not yet told of."""
    told = QuestionEvent.objects.filter(question=OuterRef("pk"), key=OVERDUE_KEY)
    return (Question.objects.public().overdue(today)
            .filter(date_due__gte=today - dt.timedelta(days=OVERDUE_WITHIN_DAYS))
            .exclude(Exists(told)))


def record_overdue(today: dt.date) -> int:
    """Make the overdue event of each question `newly_overdue` today; return how many were made.

    The questions are locked as they are read, so an answer or a withdrawal stored meanwhile either came
    first, and the question is not overdue, or comes after the event. A question a poll holds is left for the
    next run, which tells of it if it is still overdue then: waiting for it could deadlock with the poll, and
    the poll may be storing its answer. Two runs at once make each event once, by the unique constraint."""
    now = timezone.now()
    with transaction.atomic():
        found = newly_overdue(today).select_for_update(skip_locked=True, of=("self",)).order_by("pk")
        ids = list(found.values_list("pk", flat=True))
        if not ids:
            return 0
        QuestionEvent.objects.bulk_create(
            [QuestionEvent(question_id=pk, kind=QuestionEvent.Kind.OVERDUE, key=OVERDUE_KEY, created_at=now)
             for pk in ids], ignore_conflicts=True)
        # A run at the same time made the others: those made here are the ones stamped with this run's moment.
        made = QuestionEvent.objects.filter(question_id__in=ids, key=OVERDUE_KEY, created_at=now).count()
    if made:
        log.info("overdue questions recorded", extra={"events": made, "today": today.isoformat()})
    return made
