"""Digest runs: when each digest frequency's periods end, and the runs that send them.

A period ends at DIGEST_HOUR local time (Europe/London by default, so the hour holds across the clock
change) on the first day of the next one: every day, every Monday, the first of every month. Beat asks
every minute for the runs that are due (`start_due_runs`): one for each period that has ended since the
frequency's last run, so a run the stack missed while it was down is made when it is back, for its own
period, before the runs after it. A run's emails carry every undelivered match found before its period
ended, however late the run is made; nothing is dropped for its age.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from alerts.models import Delivery, DigestRun, Subscription

log = logging.getLogger(__name__)

Frequency = Subscription.Frequency


@dataclass(frozen=True)
class Period:
    # The first day of the period holding a day, and the first day of the period before one that starts on it.
    first_day: Callable[[dt.date], dt.date]
    day_before: Callable[[dt.date], dt.date]


def _month_before(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


# Each digest frequency, and nothing else, says when its periods start: a new one is one entry here.
PERIODS: dict[str, Period] = {
    Frequency.DAILY: Period(lambda day: day, lambda day: day - dt.timedelta(days=1)),
    Frequency.WEEKLY: Period(lambda day: day - dt.timedelta(days=day.weekday()),
                             lambda day: day - dt.timedelta(days=7)),
    Frequency.MONTHLY: Period(lambda day: day.replace(day=1), _month_before),
}
# However long the stack was down, at most this many runs of one frequency are made when it is back; the
# oldest takes everything found before its own end, so nothing is lost, only spread over fewer emails.
CATCH_UP_MAX = 31


def _at_digest_hour(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(settings.DIGEST_HOUR)))


def last_end(frequency: str, now: dt.datetime) -> dt.datetime:
    """The end of the latest period of this frequency that has ended by `now`."""
    period = PERIODS[frequency]
    day = period.first_day(timezone.localtime(now).date())
    end = _at_digest_hour(day)
    return end if end <= now else _at_digest_hour(period.day_before(day))


def end_before(frequency: str, end: dt.datetime) -> dt.datetime:
    return _at_digest_hour(PERIODS[frequency].day_before(timezone.localtime(end).date()))


def missing_runs(frequency: str, now: dt.datetime) -> list[DigestRun]:
    """Runs for every period ended since the frequency's last run, oldest first (only the latest if there
    has never been one)."""
    last = DigestRun.objects.filter(frequency=frequency).order_by("-period_end").values_list(
        "period_end", flat=True).first()
    ends = [last_end(frequency, now)]
    while last is not None and len(ends) < CATCH_UP_MAX and end_before(frequency, ends[-1]) > last:
        ends.append(end_before(frequency, ends[-1]))
    if last is not None and ends[0] <= last:
        return []
    return [DigestRun(frequency=frequency, period_start=end_before(frequency, end), period_end=end)
            for end in reversed(ends)]


def start_due_runs(now: dt.datetime | None = None, build: Callable[[DigestRun], None] | None = None) -> list[DigestRun]:
    """Record every run now due, then have the emails made of every run not made yet, oldest period first:
    by `build` (a worker's task, which may share a run out among several workers), or here and now."""
    from alerts.delivery import build_run

    now = now or timezone.now()
    for frequency in PERIODS:
        for run in DigestRun.objects.bulk_create(missing_runs(frequency, now), ignore_conflicts=True):
            log.info("digest run due", extra={"frequency": frequency, "period_end": run.period_end.isoformat()})
    lease = dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS * 5)
    runs = []
    for run in DigestRun.objects.filter(built_at__isnull=True).order_by("period_end", "pk"):
        # Only runs nobody is making: whoever makes one renews its lease chunk by chunk. One whose makers
        # died is walked again from the start.
        new = DigestRun.objects.filter(pk=run.pk, building_until__isnull=True).update(building_until=now + lease)
        if new or DigestRun.objects.filter(pk=run.pk, building_until__lt=now).update(
                building_until=now + lease, made_up_to=0, chunks_open=0):
            runs.append(run)
    for run in runs:
        if build:
            build(run)
        else:
            build_run(run)
    finish_runs()
    return runs


def finish_runs() -> int:
    """Mark made runs none of whose emails are waiting any more."""
    waiting = Delivery.objects.filter(run=OuterRef("pk"), status=Delivery.Status.PENDING)
    return DigestRun.objects.filter(built_at__isnull=False, finished_at__isnull=True).exclude(
        Exists(waiting)).update(finished_at=timezone.now())


def late_runs(now: dt.datetime | None = None) -> list[str]:
    """What an operator should hear about: periods that ended with no run made, runs not made in time, and
    runs whose emails are still waiting long after."""
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.DIGEST_LATE_SECONDS)
    problems = []
    for frequency in PERIODS:
        end = last_end(frequency, now)
        # Only once there are runs at all: a new install has no run until its first tick.
        if (now - end > grace and DigestRun.objects.filter(frequency=frequency).exists()
                and not DigestRun.objects.filter(frequency=frequency, period_end=end).exists()):
            problems.append(f"the {frequency} digest due {timezone.localtime(end):%Y-%m-%d %H:%M} has not run")
    for run in DigestRun.objects.filter(finished_at__isnull=True, period_end__lt=now - grace):
        state = "not made" if run.built_at is None else "still sending"
        problems.append(f"the {run.frequency} digest due {timezone.localtime(run.period_end):%Y-%m-%d %H:%M} "
                        f"is {state}")
    return problems
