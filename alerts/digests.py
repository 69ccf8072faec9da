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
# A run starts this long after its period ends: a match found just before the end, in a batch still being
# matched, is committed by then.
SETTLE = dt.timedelta(minutes=2)
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
    runs = []
    for frequency in PERIODS:
        for run in DigestRun.objects.bulk_create(missing_runs(frequency, now - SETTLE), ignore_conflicts=True):
            log.info("digest run due", extra={"frequency": frequency, "period_end": run.period_end.isoformat()})
        # One run of a frequency at a time, the oldest first: a run takes every match found before its end,
        # so a later one made first would take an earlier period's matches.
        while run := DigestRun.objects.filter(frequency=frequency, built_at__isnull=True).order_by(
                "period_end").first():
            if not _lease(run, now):
                break
            runs.append(run)
            if build:
                build(run)  # the worker that finishes it starts the next
                break
            build_run(run)
    finish_runs()
    return runs


def _lease(run: DigestRun, now: dt.datetime) -> bool:
    """Take a run nobody is making: whoever makes one renews its lease chunk by chunk. One whose makers died
    is walked again from the start."""
    until = now + dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS * 5)
    return bool(DigestRun.objects.filter(pk=run.pk, building_until__isnull=True).update(building_until=until)
                or DigestRun.objects.filter(pk=run.pk, building_until__lt=now).update(
                    building_until=until, made_up_to=0, chunks_open=0))


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
        # The latest period whose run should have been made by now, and the latest run made (there is none
        # on a new install until its first tick).
        due = last_end(frequency, now - grace)
        latest = DigestRun.objects.filter(frequency=frequency).order_by("-period_end").values_list(
            "period_end", flat=True).first()
        if latest is not None and latest < due:
            problems.append(f"the {frequency} digest due {timezone.localtime(due):%Y-%m-%d %H:%M} has not run")
    for run in DigestRun.objects.filter(finished_at__isnull=True, period_end__lt=now - grace):
        state = "not made" if run.built_at is None else "still sending"
        problems.append(f"the {run.frequency} digest due {timezone.localtime(run.period_end):%Y-%m-%d %H:%M} "
                        f"is {state}")
    return problems
