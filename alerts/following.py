"""Follows of one question retire themselves once the question is settled."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from alerts.models import FOLLOWED_KINDS, Subscription
from questions.ingest import HOLDING_KEY
from questions.models import QuestionEvent, settled

log = logging.getLogger(__name__)


def _settling_events():
    """The events after which a question may be settled: a substantive answer, a correction or a withdrawal.
    A holding answer settles nothing, nor does the due date passing: the real answer is still to come."""
    return QuestionEvent.objects.filter(question=OuterRef("question_id"), kind__in=FOLLOWED_KINDS).exclude(
        key=HOLDING_KEY).exclude(kind=QuestionEvent.Kind.OVERDUE)


def retire_follows(now: dt.datetime | None = None) -> int:
    """Retire the follows of questions answered (not by a holding answer) or withdrawn, whose last such
    event is older than FOLLOW_WINDOW_DAYS: time enough for a correction to come and be sent. (A settled
    question whose events have been pruned is retired too.) The subscription stays, marked retired, so
    the manage page can say what became of it."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.FOLLOW_WINDOW_DAYS)
    retired = (
        Subscription.objects.filter(question__isnull=False, retired_at__isnull=True)
        .filter(settled("question__"))
        .exclude(Exists(_settling_events().filter(created_at__gt=cutoff)))
        .update(retired_at=now, updated_at=now)
    )
    if retired:
        log.info("follows retired", extra={"follows": retired})
    return retired
